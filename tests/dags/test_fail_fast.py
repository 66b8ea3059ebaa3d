"""Mistakes no retry can fix end the whole run at once, before any write, with the remedy in the task log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.state import DagRunState, TaskInstanceState
from support import api_writes, connection_json, polling_fast

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _http(sim) -> dict:
    return {"host": sim.url.replace("https://", "http://")}


def _wrong_password(sim) -> dict:
    return {"password": "not-the-password"}


def _missing_host(sim) -> dict:
    return {"host": "https://opsman.invalid"}


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("mistake", "remedy"),
    [
        (_http, "uses plain http, which would send credentials unencrypted; use https"),
        (
            _wrong_password,
            "Check the login/password or client_id/client_secret of connection 'opsman_default'",
        ),
        (_missing_host, "does not resolve (no such name in DNS). Check the host"),
    ],
    ids=["plain-http", "wrong-password", "missing-host"],
)
def test_the_run_fails_in_one_try_before_any_write(sim, airflow_db, monkeypatch, capfd, mistake, remedy):
    conn = json.loads(connection_json(sim))
    conn.update(mistake(sim))
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", json.dumps(conn))
    dag = polling_fast(DagBag(dag_folder=str(DAGS)).dags["opsman_ca_rotation"])
    assert dag.default_args["retries"] >= 1, "the point: the DAG has retries, and these errors skip them"
    sim.clear_journal()

    dag_run = dag.test(run_conf={"poll_interval_seconds": 1})

    # One try and no retry wait (30 s, doubling) is what makes it fail fast; the seconds it takes depend on
    # the machine's load, so they are not asserted.
    assert dag_run.state == DagRunState.FAILED
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    check = tis["preflight.check_ops_manager"]
    assert check.state == TaskInstanceState.FAILED and check.try_number == 1, "the task was retried"
    assert api_writes(sim) == []
    log = "".join(capfd.readouterr())
    assert remedy in log
