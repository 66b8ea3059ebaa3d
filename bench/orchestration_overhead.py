"""Orchestration overhead: one rotation under ``airflow dags test`` vs the same calls from a plain script.

Both run against fresh simulators with the same Apply Changes duration and the same 1 s poll
interval. The plain script makes the documented calls with the hook and nothing else (no
pre-flight, plan or verification); the difference is what Airflow and our safety checks cost.

    .venv/bin/python bench/orchestration_overhead.py [--apply-seconds 3] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOME = tempfile.mkdtemp(prefix="bench-airflow-")
os.environ.update({
    "AIRFLOW_HOME": HOME,
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
})

from opsman_simulator.process import SimulatorProcess  # noqa: E402

PASSWORD = "bench-" + os.urandom(6).hex()
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def wire(sim: SimulatorProcess) -> None:
    os.environ["AIRFLOW_CONN_OPSMAN_DEFAULT"] = json.dumps(
        {"conn_type": "opsman", "host": sim.url, "login": "admin", "password": PASSWORD, "extra": {"ca_cert": sim.ca_path}}
    )


def plain_script() -> None:
    """The documented procedure as a plain script would call it (what an operator's curl loop does)."""
    from opsman.hooks import OpsManagerHook
    from opsman.models import ApplyChangesOptions

    hook = OpsManagerHook()

    def apply_and_wait() -> None:
        installation_id = hook.apply_changes(ApplyChangesOptions())
        while not hook.get_installation_status(installation_id).is_terminal:
            time.sleep(1)

    (old,) = hook.list_certificate_authorities()
    apply_and_wait()
    new = hook.generate_certificate_authority().authority
    hook.list_certificate_authorities()
    apply_and_wait()
    hook.activate_certificate_authority(new.guid)
    hook.regenerate_certificates()
    apply_and_wait()
    hook.delete_certificate_authority(old.guid)
    apply_and_wait()


def dags_test() -> None:
    subprocess.run([AIRFLOW, "dags", "test", "opsman_ca_rotation", "--conf", json.dumps({"poll_interval_seconds": 1})],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(fn, apply_seconds: float) -> float:
    with tempfile.TemporaryDirectory() as state, SimulatorProcess(state, apply_seconds=apply_seconds, password=PASSWORD) as sim:
        wire(sim)
        started = time.monotonic()
        fn()
        elapsed = time.monotonic() - started
        cas = sim.state()["certificate_authorities"]
        assert len(cas) == 1 and cas[0]["active"] and sim.state()["deleted_certificate_authorities"], "not rotated"
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apply-seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plain, dag = [], []
    for _ in range(args.runs):  # interleaved, so both see the same machine load
        plain.append(timed(plain_script, args.apply_seconds))
        dag.append(timed(dags_test, args.apply_seconds))
    p, d = statistics.median(plain), statistics.median(dag)
    print(f"One rotation, 4 Apply Changes of {args.apply_seconds:.0f} s each, poll 1 s; median of {args.runs} run(s); "
          f"{os.cpu_count()} cores")
    print()
    print("| how | wall time | overhead |")
    print("|---|---|---|")
    print(f"| plain script (the documented calls only) | {p:.1f} s | baseline |")
    print(f"| `airflow dags test opsman_ca_rotation` (pre-flight, plan, verify, 19 tasks) | {d:.1f} s | +{d - p:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
