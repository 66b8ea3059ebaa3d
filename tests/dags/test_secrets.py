"""After whole rotations, no password, client secret or access token anywhere a user could read it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.state import DagRunState
from support import SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_PASSWORD, polling_fast

DAGS = Path(__file__).resolve().parents[2] / "dags"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def stored(run_id: str) -> dict[str, str]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcom = [x.value for x in session.query(XComModel).filter(XComModel.run_id == run_id)]
        rendered = [
            r.rendered_fields
            for r in session.query(RenderedTaskInstanceFields).filter(
                RenderedTaskInstanceFields.run_id == run_id
            )
        ]
    return {"XCom": json.dumps(xcom, default=str), "rendered templates": json.dumps(rendered, default=str)}


@pytest.mark.e2e
@pytest.mark.parametrize("grant", ["password", "client_credentials"])
def test_no_secret_or_token_in_logs_xcom_templates_or_journal(sim, airflow_db, monkeypatch, capfd, grant):
    if grant == "client_credentials":
        monkeypatch.setenv(
            "AIRFLOW_CONN_OPSMAN_DEFAULT",
            json.dumps(
                {
                    "conn_type": "opsman",
                    "host": sim.url,
                    "extra": {
                        "client_id": SIM_CLIENT_ID,
                        "client_secret": SIM_CLIENT_SECRET,
                        "ca_cert": sim.ca_path,
                    },
                }
            ),
        )
    dag = polling_fast(DagBag(dag_folder=str(DAGS)).dags["opsman_ca_rotation"])
    dag_run = dag.test(run_conf={"poll_interval_seconds": 1, "initial_apply_changes": False})
    assert dag_run.state == DagRunState.SUCCESS
    assert JWT.search(sim.token()), "the detector matches the tokens this Ops Manager issues"
    places = {
        "task logs": "".join(capfd.readouterr()),
        "journal": json.dumps(sim.journal()),
        **stored(dag_run.run_id),
    }
    assert (
        "Ops Manager" in places["task logs"]
        and places["XCom"] != "[]"
        and places["rendered templates"] != "[]"
    )
    for where, text in places.items():
        for secret in (SIM_PASSWORD, SIM_CLIENT_SECRET):
            assert secret not in text, f"a secret leaked into {where}"
        assert not JWT.search(text), (
            f"an access token leaked into {where}: {JWT.search(text).group(0)[:12]}..."
        )
        assert "Bearer " not in text, f"an Authorization header leaked into {where}"
