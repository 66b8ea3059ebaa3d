"""Helpers of the approval system and browser tests: a rotation waiting for approvals, HITL answers."""

from __future__ import annotations

import re
import time
from typing import Any

from system_support import DAG_ID, Simulator

ACTIVATE = "activate_new_ca.approve_activate_ca"
DELETE = "delete_old_ca.approve_delete_ca"
WAITING = ("awaiting_input", "deferred")  # Airflow 3.3 parks HITL tasks; 3.1 defers them to the triggerer


def start_rotation(airflow, conf: dict[str, Any], prefix: str) -> tuple[Simulator, str, int, str]:
    """A run triggered with ``conf`` (polling every second) on a simulator reset to one old CA: the
    simulator, the old CA's GUID, the journal's last entry before the run, and the run id."""
    sim = Simulator(airflow.info)
    airflow.reset_simulator()
    (old_guid,) = sim.cas()
    start = sim.last_seq()
    return sim, old_guid, start, airflow.trigger({"poll_interval_seconds": 1, **conf}, prefix=prefix)


def wait_for_task(airflow, run_id: str, task_id: str, states: tuple[str, ...], timeout: float = 180) -> str:
    """Until the task is in one of ``states``; fails early when the run ends first."""
    deadline = time.monotonic() + timeout
    while True:
        ti = airflow.task_instances(run_id).get(task_id) or {}
        if ti.get("state") in states:
            return ti["state"]
        run = airflow.api.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        assert run not in ("success", "failed"), (
            f"run {run_id} ended ({run}) before {task_id} reached {states}"
        )
        assert time.monotonic() < deadline, f"{task_id} still {ti.get('state')} after {timeout} s"
        time.sleep(1)


def wait_for_approval_request(airflow, run_id: str, task_id: str, timeout: float = 180) -> None:
    """Until the approval task waits for an answer and the scheduler has seen its worker exit.

    An answer given before the scheduler processed that exit is lost on Airflow 3.3.2: the answer
    resumes the task, the scheduler queues it, then reads the stale "success" of the parked try as a
    state mismatch and sets the task up for retry, which asks again (see README "Change control").
    A person takes longer than that second; a test must wait for the event.
    """
    wait_for_task(airflow, run_id, task_id, WAITING, timeout)
    try_number = airflow.task_instances(run_id)[task_id]["try_number"]
    seen = re.compile(
        rf"Received executor event with state \w+ for task instance TaskInstanceKey\(dag_id='{DAG_ID}', "
        rf"task_id='{re.escape(task_id)}', run_id='{re.escape(run_id)}', try_number={try_number},"
    )
    log = airflow.home / "logs" / "scheduler.log"
    deadline = time.monotonic() + timeout
    while not seen.search(log.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"the scheduler never saw {task_id} (try {try_number}) exit"
        time.sleep(0.5)


def hitl_path(run_id: str, task_id: str) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"


def answer(airflow, run_id: str, task_id: str, option: str, reason: str | None = None) -> dict[str, Any]:
    return airflow.api.request(
        "PATCH",
        hitl_path(run_id, task_id),
        {"chosen_options": [option], "params_input": {"reason": reason} if reason else {}},
    )
