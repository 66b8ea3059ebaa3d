"""Fleet throughput: N foundations rotated at once on a real local Airflow, deferrable vs poke waits.

For each wait mode (the fleet file's ``wait_mode``) one local Airflow: api-server, scheduler,
dag-processor and triggerer, SQLite + LocalExecutor, parallelism 4 (as ``./dev airflow-up``), on a
fleet file of max(N) foundations, each its own Ops Manager simulator whose Apply Changes take
``--apply-seconds``. For each N the first N simulators are reset (a fresh, old root CA) and their
rotation DAGs triggered together; the full documented rotation runs (4 Apply Changes each).

Measured per (mode, N):
- wall time from the triggers to the end of the last run, and its ratio to N = 1 of the same mode;
- every second, from Airflow's REST API: task instances *running* (each holds one of the 4 worker
  slots), how many of them are Apply Changes waits, and waits *deferred* (in the triggerer, no slot);
  summed over time, the worker slot-seconds the waits held, per Apply Changes waited for (a deferrable
  wait holds a slot only to start, defer and finish; a poking one for the whole Apply Changes);
- from the simulators: every run rotated (one CA left, a new one, active).

    .venv/bin/python bench/fleet_throughput.py [--sizes 1,5,20] [--apply-seconds 60] [--modes deferrable,poke]
                                               [--poll 5] [--cap-seconds 1800]

A configuration still running after ``--cap-seconds`` is reported as "> cap" with the runs finished
by then, and its runs are failed through the REST API (the bench moves on; nothing is left running).
Loopback only; every process is stopped by its recorded PID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from opsman_simulator.process import SimulatorProcess

REPO = Path(__file__).resolve().parents[1]


def _script_module(name: str):
    """A module of scripts/ (not a package: its files are run as scripts), loaded without touching sys.path."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stack = _script_module("airflow_stack")

COMPONENTS = ["api-server", "scheduler", "dag-processor", "triggerer"]
STOP_ORDER = ["scheduler", "triggerer", "dag-processor", "api-server"]
WAIT_TASK_SUFFIXES = ("wait_for_apply_changes", "wait_for_running_installation")
TERMINAL = ("success", "failed")


def _time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def foundation_name(index: int) -> str:
    return f"f{index:02d}"


@dataclass
class Sample:
    running: int = 0
    running_waits: int = 0
    deferred: int = 0


@dataclass
class Result:
    mode: str
    size: int
    wall: float | None  # None: still running at the cap
    finished: int
    succeeded: int
    rotated: int
    peak: Sample = field(default_factory=Sample)
    wait_slot_seconds_per_apply: float = 0.0


class Sampler(threading.Thread):
    """Counts running and deferred task instances every second through the REST API."""

    def __init__(self, api: stack.Api) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.peak = Sample()
        self.wait_slot_seconds = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(1.0):
            try:
                body = self.api.request("GET", "/api/v2/dags/~/dagRuns/~/taskInstances?state=running&state=deferred&limit=500")
            except Exception:  # a busy API server: skip this sample rather than stop sampling
                continue
            tis = body["task_instances"]
            running = [t for t in tis if t["state"] == "running"]
            now = Sample(
                running=len(running),
                running_waits=sum(t["task_id"].endswith(WAIT_TASK_SUFFIXES) for t in running),
                deferred=sum(t["state"] == "deferred" for t in tis),
            )
            now_t = time.monotonic()
            self.wait_slot_seconds += now.running_waits * (now_t - last)
            last = now_t
            self.peak = Sample(*(max(a, b) for a, b in zip(vars(self.peak).values(), vars(now).values())))


class Bench:
    def __init__(self, work: Path, sims: list[SimulatorProcess], password: str, poll: int) -> None:
        self.work, self.sims, self.password, self.poll = work, sims, password, poll

    def connection(self, sim: SimulatorProcess) -> str:
        return json.dumps({"conn_type": "opsman", "host": sim.url, "login": "admin", "password": self.password,
                           "extra": {"ca_cert": str(sim.ca_path)}})

    def fleet_file(self, mode: str) -> Path:
        path = self.work / f"fleet-{mode}.yaml"
        path.write_text(yaml.safe_dump({
            "report": {"schedule": None},
            "foundations": [
                {"name": foundation_name(i), "conn_id": f"opsman_{foundation_name(i)}", "schedule": None,
                 "poll_interval_seconds": self.poll, "wait_mode": mode}
                for i in range(len(self.sims))
            ],
        }))
        return path

    def start_airflow(self, mode: str) -> tuple[Path, stack.Api]:
        home = self.work / f"airflow-{mode}"
        home.mkdir()
        port = stack.free_port()
        values = stack.load_or_create_secrets(home)
        stack.write_passwords_file(home, values["admin_password"])
        env = stack.base_env(home, port, values)
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "OPSMAN_FLEET_FILE": str(self.fleet_file(mode)),
            # The installation log lines of 20 foundations would only fill the task logs' disk.
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "opsman.sensors=WARNING opsman.triggers=WARNING",
        })
        for i, sim in enumerate(self.sims):
            env[f"AIRFLOW_CONN_OPSMAN_{foundation_name(i).upper()}"] = self.connection(sim)
        stack.prepare_database(home, env)
        stack.start_components(home, port, env)
        api = stack.Api(f"http://127.0.0.1:{port}", "admin", values["admin_password"])
        try:
            for i in range(len(self.sims)):
                stack.wait_ready(api, home, COMPONENTS, timeout=300, dag_id=f"opsman_ca_rotation__{foundation_name(i)}")
        except Exception:
            stack.stop(home, STOP_ORDER)
            raise
        return home, api

    def run(self, api: stack.Api, mode: str, size: int, cap: float) -> Result:
        old = []
        for sim in self.sims[:size]:
            sim.reset()
            old.append(sim.state()["certificate_authorities"][0]["guid"])
        sampler = Sampler(api)
        sampler.start()
        started = time.time()
        runs = {}
        for i in range(size):
            dag_id = f"opsman_ca_rotation__{foundation_name(i)}"
            body = {"logical_date": dt.datetime.now(dt.timezone.utc).isoformat(), "conf": {}}
            runs[dag_id] = api.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]
        states: dict[str, dict] = {}
        while time.time() - started < cap:
            states = {d: api.request("GET", f"/api/v2/dags/{d}/dagRuns/{r}") for d, r in runs.items()}
            if all(s["state"] in TERMINAL for s in states.values()):
                break
            time.sleep(2)
        sampler.stopped.set()
        sampler.join()
        done = [s for s in states.values() if s["state"] in TERMINAL]
        if len(done) < size:
            for dag_id, run_id in runs.items():
                if states[dag_id]["state"] not in TERMINAL:
                    api.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})
            time.sleep(5)  # let the killed tasks' processes go before the next configuration
        rotated = 0
        for sim, old_guid in zip(self.sims[:size], old):
            cas = sim.state()["certificate_authorities"]
            rotated += len(cas) == 1 and cas[0]["active"] and cas[0]["guid"] != old_guid
        wall = max(_time(s["end_date"]) for s in done) - started if len(done) == size else None
        applies = 4 * size  # the documented rotation: four Apply Changes per foundation
        return Result(mode, size, wall, len(done), sum(s["state"] == "success" for s in done), rotated, sampler.peak,
                      sampler.wait_slot_seconds / applies)


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\nFleet throughput: LocalExecutor parallelism 4, SQLite, Apply Changes {args.apply_seconds:g} s each "
          f"(4 per rotation), poll {args.poll} s, {os.cpu_count()} CPUs")
    header = (f"{'wait mode':<11} {'N':>3} {'wall s':>8} {'x N=1':>6} {'rotated':>8} "
              f"{'peak slots in use':>18} {'peak held by waits':>19} {'peak deferred':>14} {'wait slot-s per Apply Changes':>30}")
    print(header)
    print("-" * len(header))
    single = {r.mode: r.wall for r in results if r.size == 1}
    for r in results:
        wall = f"{r.wall:.0f}" if r.wall is not None else f">{args.cap_seconds:.0f}"
        ratio = f"{r.wall / single[r.mode]:.2f}" if r.wall is not None and single.get(r.mode) else "-"
        print(f"{r.mode:<11} {r.size:>3} {wall:>8} {ratio:>6} {f'{r.rotated}/{r.size}':>8} "
              f"{r.peak.running:>18} {r.peak.running_waits:>19} {r.peak.deferred:>14} {r.wait_slot_seconds_per_apply:>30.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,20", help="numbers of foundations rotated at once (default 1,5,20)")
    parser.add_argument("--modes", default="deferrable,poke", help="wait modes to compare (deferrable, reschedule, poke)")
    parser.add_argument("--apply-seconds", type=float, default=60.0, help="length of each simulated Apply Changes")
    parser.add_argument("--poll", type=int, default=5, help="poll_interval_seconds of every foundation")
    parser.add_argument("--cap-seconds", type=float, default=1800.0, help="give up on one configuration after this")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    password = "bench-" + os.urandom(8).hex()
    sims: list[SimulatorProcess] = []
    results: list[Result] = []
    try:
        for i in range(max(sizes)):
            sims.append(SimulatorProcess(work / f"sim-{foundation_name(i)}", apply_seconds=args.apply_seconds,
                                         password=password).start())
        bench = Bench(work, sims, password, args.poll)
        for mode in modes:
            home, api = bench.start_airflow(mode)
            try:
                for size in sizes:
                    result = bench.run(api, mode, size, args.cap_seconds)
                    results.append(result)
                    print(json.dumps({**vars(result), "peak": vars(result.peak)}), flush=True)
            finally:
                stack.stop(home, STOP_ORDER)
    finally:
        for sim in sims:
            sim.stop()
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps([{**vars(r), "peak": vars(r.peak)} for r in results], indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.rotated == r.size for r in results if r.wall is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
