"""Per-foundation serialization on a real scheduler (dag.test() ignores pools).

A local Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor with 4 slots) on a
fleet of one foundation: its rotation DAG and the expiry report DAG are triggered together, and the
report again whenever it finishes, while the rotation runs. Both want the same Ops Manager; with
parallelism 4 only the one-slot pool keeps them apart (the report's task waits, about 35 s here: the
rotation's tasks have the higher priority weight). Proof: the simulator never saw two API requests
in flight (``max_concurrent_requests``), and no two task instances of pool ``opsman_east`` ran at
overlapping times (deferred waits included).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import airflow_stack as stack
import pytest
import yaml
from support import SIM_PASSWORD, SIM_USER, connection_json

from opsman_simulator.process import SimulatorProcess

REPO = Path(__file__).resolve().parents[2]

ROTATION, REPORT = "opsman_ca_rotation__east", "opsman_certificate_expiry_report"
COMPONENTS = ["api-server", "scheduler", "dag-processor", "triggerer"]
STOP_ORDER = ["scheduler", "triggerer", "dag-processor", "api-server"]


def _time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.system
def test_a_rotation_and_the_report_never_call_one_ops_manager_at_once(tmp_path, monkeypatch):
    sim = SimulatorProcess(tmp_path / "sim", apply_seconds=2.0, username=SIM_USER, password=SIM_PASSWORD).start()
    home = tmp_path / "airflow"
    home.mkdir()
    try:
        fleet = tmp_path / "foundations.yaml"
        fleet.write_text(yaml.safe_dump({
            "report": {"schedule": None},
            "foundations": [{"name": "east", "conn_id": "opsman_east", "schedule": None,
                             "poll_interval_seconds": 1, "apply_changes": {"initial": False}}],
        }))
        monkeypatch.setenv("OPSMAN_FLEET_FILE", str(fleet))
        port = stack.free_port()
        values = stack.load_or_create_secrets(home)
        stack.write_passwords_file(home, values["admin_password"])
        env = stack.base_env(home, port, values)
        env.update({"AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                    "AIRFLOW_CONN_OPSMAN_EAST": connection_json(sim)})
        airflow = stack.venv_bin("airflow")
        subprocess.run([airflow, "db", "migrate"], env=env, cwd=home, check=True, capture_output=True)
        pools = subprocess.run([sys.executable, str(REPO / "scripts" / "create_pools.py")], env=env, check=True,
                               capture_output=True, text=True)
        assert "opsman_east" in pools.stdout
        stack.start_components(home, port, env)
        api = stack.Api(f"http://127.0.0.1:{port}", "admin", values["admin_password"])
        stack.wait_ready(api, home, COMPONENTS, timeout=240, dag_id=ROTATION)
        stack.wait_ready(api, home, COMPONENTS, timeout=60, dag_id=REPORT)
        sim.clear_journal()

        def trigger(dag_id: str, conf: dict) -> str:
            now = dt.datetime.now(dt.timezone.utc).isoformat()
            return api.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": now, "conf": conf})["dag_run_id"]

        def state(dag_id: str, run_id: str) -> str:
            return api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

        rotation = trigger(ROTATION, {})  # the poll interval is the fleet file's
        reports = [trigger(REPORT, {})]
        deadline = time.monotonic() + 420
        while state(ROTATION, rotation) not in ("success", "failed"):
            assert time.monotonic() < deadline, "the rotation did not finish in 7 minutes"
            if state(REPORT, reports[-1]) in ("success", "failed"):
                reports.append(trigger(REPORT, {}))
            time.sleep(2)
        while state(REPORT, reports[-1]) not in ("success", "failed"):
            assert time.monotonic() < deadline
            time.sleep(2)

        assert state(ROTATION, rotation) == "success"
        assert [state(REPORT, r) for r in reports] == ["success"] * len(reports)
        # The first report run was running (its task waiting for the pool) while the rotation ran:
        # without the pool, LocalExecutor's 4 slots would have run them side by side.
        rotation_run = api.request("GET", f"/api/v2/dags/{ROTATION}/dagRuns/{rotation}")
        first_report = api.request("GET", f"/api/v2/dags/{REPORT}/dagRuns/{reports[0]}")
        assert _time(first_report["start_date"]) < _time(rotation_run["end_date"]) - 10
        tis = []
        for dag_id, runs in ((ROTATION, [rotation]), (REPORT, reports)):
            for run in runs:
                tis += api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances")["task_instances"]
        in_pool = sorted((_time(t["start_date"]), _time(t["end_date"]), t["dag_id"], t["task_id"])
                         for t in tis if t["pool"] == "opsman_east" and t["start_date"] and t["end_date"])
        assert {t[2] for t in in_pool} == {ROTATION, REPORT}
        overlaps = [(a[2:], b[2:]) for a, b in zip(in_pool, in_pool[1:]) if b[0] < a[1]]
        assert overlaps == [], f"task instances of pool opsman_east overlapped: {overlaps}"
        state_after = sim.state()
        assert state_after["max_concurrent_requests"] <= 1, "two API calls were in flight at once"
        report_task = next(t for t in in_pool if t[3] == "expiry__east")
        print(json.dumps({"report_runs": len(reports), "tasks_in_pool": len(in_pool),
                          "report_run_started_s_before_rotation_ended": round(_time(rotation_run["end_date"]) - _time(first_report["start_date"]), 1),
                          "report_task_started_s_after_its_run": round(report_task[0] - _time(first_report["start_date"]), 1),
                          "max_concurrent_requests": state_after["max_concurrent_requests"]}))
    finally:
        stack.stop(home, STOP_ORDER)
        sim.stop()
