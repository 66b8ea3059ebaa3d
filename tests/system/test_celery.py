"""Scale-out: the rotation DAG on PostgreSQL + Redis + the CeleryExecutor with two workers
(``scripts/celery_cluster.py``), rotating several simulated foundations, and proof from the workers'
own logs that every task ran on a Celery worker.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest
from system_support import airflow_stack, missing, running_stack

pytestmark = [pytest.mark.celery, pytest.mark.system]

FOUNDATIONS = 3
WORKLOAD = re.compile(
    r"Executing workload in Celery: .*?task_id=(?P<task>[^/']+)/attempt=(?P<try>\d+)\.log.*?run_id='(?P<run>[^']+)'"
)


@pytest.fixture(scope="module")
def celery_cluster(tmp_path_factory):
    if not shutil.which("redis-server") or not shutil.which("/usr/lib/postgresql/15/bin/initdb"):
        missing("PostgreSQL 15 and redis-server from Debian are needed (./dev system-deps)")
    home = tmp_path_factory.mktemp("celery-airflow")
    port = airflow_stack.free_port()
    up_args = [
        "--port",
        str(port),
        "--workers",
        "2",
        "--foundations",
        str(FOUNDATIONS),
        "--apply-seconds",
        "1",
    ]
    with running_stack(
        "celery_cluster.py", home, up_args, "celery-cluster.json", down_timeout=180
    ) as cluster:
        yield cluster


def test_rotate_several_foundations_on_celery_workers(celery_cluster):
    started = time.monotonic()
    runs = {}
    for n in range(1, FOUNDATIONS + 1):
        conn_id = f"opsman_foundation_{n}"
        runs[conn_id] = celery_cluster.trigger(
            {"opsman_conn_id": conn_id, "poll_interval_seconds": 1}, prefix=f"f{n}"
        )
    for conn_id, run_id in runs.items():
        assert celery_cluster.wait_for_run(run_id, timeout=600) == "success", conn_id
    print(f"{FOUNDATIONS} foundations rotated in {time.monotonic() - started:.1f} s")

    # Each foundation got its own rotation: distinct CAs per run.
    reports = {c: celery_cluster.xcom(r, "summary") for c, r in runs.items()}
    new_cas = {r["new_ca_guid"] for r in reports.values()}
    assert len(new_cas) == FOUNDATIONS and all(r["old_ca_guid"] != r["new_ca_guid"] for r in reports.values())

    # Every task that ran was executed by a Celery worker, and both workers took work.
    executed: dict[str, set[tuple[str, str]]] = {}
    for log in sorted((celery_cluster.home / "logs").glob("worker*.log")):
        executed[log.stem] = {
            (m["run"], m["task"]) for m in WORKLOAD.finditer(log.read_text(errors="replace"))
        }
    on_workers = set().union(*executed.values())
    for run_id in runs.values():
        ran = {t for t, ti in celery_cluster.task_instances(run_id).items() if ti["state"] == "success"}
        assert ran and {(run_id, t) for t in ran} <= on_workers, sorted(
            ran - {t for r, t in on_workers if r == run_id}
        )
    assert set(executed) == {"worker1", "worker2"} and all(executed.values()), {
        k: len(v) for k, v in executed.items()
    }
    print("workloads per worker:", {k: len(v) for k, v in executed.items()})
