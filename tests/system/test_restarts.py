"""Faults only a real Airflow can produce: a worker killed mid-step, the triggerer restarted mid-wait.

Part of the fault matrix (marker ``faults``), run on the local Airflow of ``./dev airflow-up``.
Invariants come from the simulator's journal: one CA generated, no second Apply Changes for a
step, the old CA deleted once and only after the regenerated certificates were deployed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from doc_tables import mask, observe
from system_support import SENSORS, Simulator, airflow_stack

pytestmark = [pytest.mark.system, pytest.mark.faults, pytest.mark.docs]


def task_process(ti_id: str) -> int | None:
    """The PID of the process running task instance ``ti_id`` (its title is ``airflow worker -- <id>``)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"-- {ti_id}" in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"
                ):
                    return int(proc.name)
            except OSError:
                continue
    return None


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def new_ca_guid(sim: Simulator) -> str | None:
    return next((ca["guid"] for ca in sim.get("state")["certificate_authorities"] if not ca["active"]), None)


# (task, method, path prefix of its write: computed when armed, since GUIDs appear as the run goes)
KILLS = [
    ("create_new_ca.generate_ca", "POST", lambda sim, old: "/api/v0/certificate_authorities/generate"),
    (
        "activate_new_ca.activate_ca",
        "POST",
        lambda sim, old: (
            f"/api/v0/certificate_authorities/{wait_until(lambda: new_ca_guid(sim), 240, 'the new CA')}/activate"
        ),
    ),
    ("delete_old_ca.delete_ca", "DELETE", lambda sim, old: f"/api/v0/certificate_authorities/{old}"),
    ("delete_old_ca.apply_changes", "POST", lambda sim, old: "/api/v0/installations"),
]


def test_a_worker_killed_during_each_kind_of_write_step_is_retried_safely(local_airflow):
    local_airflow.reset_simulator()
    sim = Simulator(local_airflow.info)
    (old,) = sim.get("state")["certificate_authorities"]
    run_id = local_airflow.trigger(
        {"poll_interval_seconds": 1, "initial_apply_changes": False}, prefix="sigkill"
    )
    for task_id, method, prefix in KILLS:
        # Hold the step's write for 6 s inside Ops Manager, then kill the worker while it waits for the answer.
        sim.faults(
            latency={"seconds": 6, "count": 1, "methods": [method], "path_prefix": prefix(sim, old["guid"])}
        )
        ti = wait_until(
            lambda task_id=task_id: (
                (t := local_airflow.task_instances(run_id).get(task_id)) and t["state"] == "running" and t
            ),
            240,
            f"{task_id} to run",
        )
        time.sleep(2)
        pid = wait_until(lambda ti=ti: task_process(ti["id"]), 20, f"the process of {task_id}")
        os.kill(pid, signal.SIGKILL)
    assert local_airflow.wait_for_run(run_id, timeout=600) == "success"

    tis = local_airflow.task_instances(run_id)
    for task_id, _, _ in KILLS:
        assert tis[task_id]["try_number"] >= 2, f"{task_id} was not retried after the kill"
    state = sim.get("state")
    assert [ca["active"] for ca in state["certificate_authorities"]] == [True]
    assert old["guid"] in state["deleted_certificate_authorities"]
    assert len(sim.accepted("POST", "/api/v0/certificate_authorities/generate")) == 1, (
        "a second CA was generated"
    )
    assert len(sim.accepted("DELETE", "/api/v0/certificate_authorities/")) == 1
    assert len(sim.accepted("POST", "/api/v0/installations")) == 3, "a step started a second Apply Changes"
    retried = local_airflow.log_text(
        run_id, "create_new_ca.generate_ca", tis["create_new_ca.generate_ca"]["try_number"]
    )
    seen = next(
        (line for line in retried.splitlines() if "Adopting CA" in line or "new CA" in line),
        "generated on retry",
    )
    observe(
        "fault-matrix",
        8,
        [
            "worker SIGKILLed during a write step (generate, activate, delete, start Apply Changes), then retried",
            "the write held 6 s in Ops Manager, the task process killed with SIGKILL meanwhile",
            f"`{mask(seen)}`",
            "survived: each step retried once, decided from state; one CA, one delete, 3 Apply Changes",
        ],
    )


def test_the_triggerer_restarted_while_waiting_starts_no_second_apply_changes(local_airflow):
    local_airflow.reset_simulator()
    sim = Simulator(local_airflow.info)
    # An Apply Changes that runs until the test ends it on the simulator's clock, however long the
    # triggerer takes to come back on a loaded machine.
    sim.faults(apply_seconds=3600)
    run_id = local_airflow.trigger({"poll_interval_seconds": 2}, prefix="triggerer")
    sensor = SENSORS[0]
    wait_until(
        lambda: local_airflow.task_instances(run_id).get(sensor, {}).get("state") == "deferred",
        180,
        f"{sensor} to defer",
    )
    home = Path(local_airflow.info["home"])
    pid = airflow_stack.recorded(home)["triggerer"]
    os.killpg(pid, signal.SIGKILL)  # a crash: no clean shutdown of the trigger
    env = restart_env(local_airflow)
    killed_at = sim.last_seq()
    airflow_stack.start(
        home, "triggerer", [airflow_stack.venv_bin("airflow"), "triggerer", "--skip-serve-logs"], env
    )
    # The new triggerer resumed the wait: it reads the installation again (and writes nothing)...
    wait_until(
        lambda: [
            e
            for e in sim.get("journal")["entries"]
            if e["seq"] > killed_at and e["method"] == "GET" and e["path"].startswith("/api/v0/installations")
        ],
        180,
        "the restarted triggerer to read the installation",
    )
    # ...then the installation ends, and so does the rest of the rotation, at the usual pace.
    sim.faults(apply_seconds=None)
    assert sim.post("clock", {"finish_installation": True})["finished_installation"] is not None
    assert local_airflow.wait_for_run(run_id, timeout=600) == "success"
    assert len(sim.accepted("POST", "/api/v0/installations")) == 4, "one Apply Changes per step, none re-sent"
    ti = local_airflow.task_instances(run_id)[sensor]
    assert ti["state"] == "success"
    seen = next(
        (
            line
            for line in local_airflow.log_text(run_id, sensor, ti["try_number"]).splitlines()
            if "[installation" in line
        ),
        "installation log lines",
    )
    observe(
        "fault-matrix",
        9,
        [
            "triggerer killed and restarted while a sensor waits",
            "SIGKILL to the triggerer's process group, then a new triggerer",
            f"`{mask(seen)}`",
            "survived: the wait resumed with GET only; 4 Apply Changes for 4 steps",
        ],
    )


def restart_env(local_airflow) -> dict[str, str]:
    """The environment the local Airflow's components run with (as scripts/local_airflow.py builds it)."""
    home = Path(local_airflow.info["home"])
    values = airflow_stack.load_or_create_secrets(home)
    env = airflow_stack.base_env(home, int(local_airflow.url.rsplit(":", 1)[1]), values)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home.resolve()}/airflow.db",
            "AIRFLOW_CONN_OPSMAN_DEFAULT": airflow_stack.simulator_connection(
                {"url": local_airflow.info["simulator_url"], "ca_path": local_airflow.info["simulator_ca"]},
                values["simulator_password"],
            ),
        }
    )
    return env
