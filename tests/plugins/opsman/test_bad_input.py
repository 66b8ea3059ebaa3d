"""Bad input and unexpected answers: a clear error before anything changes on Ops Manager."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import ParamValidationError
from support import api_writes, task_context

from opsman.exceptions import OpsManagerResponseError
from opsman.hooks import OpsManagerHook
from opsman.operators import GenerateCertificateAuthorityOperator

CAS = "/api/v0/certificate_authorities"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "<html><body>Please log in</body></html>",
            r"expected JSON with HTTP 200, got text/html: 'Please log in'. Is the "
            r"connection's host really Ops Manager",
        ),
        (
            '{"certificate_authorities": [{"guid": "f7bc18f34f2a7a9403c3", "act',
            r"expected JSON with HTTP 200",
        ),
        (
            '{"certificate_authorities": [{"guid": "f7bc18f34f2a7a9403c3"}]}',
            r"the response has no 'active' field",
        ),
        ('{"certificate_authorities": [{"guid": 7, "active": true}]}', r"field 'guid' is int, expected str"),
        ('{"errors": []}', r"the response has no 'certificate_authorities' list"),
    ],
    ids=["html-page", "truncated-json", "missing-field", "wrong-type", "no-list"],
)
def test_an_unexpected_answer_stops_the_step_before_any_write(sim, body, message):
    sim.faults(status_burst={"status": 200, "body": body, "count": 1, "methods": ["GET"], "path_prefix": CAS})
    sim.clear_journal()
    with pytest.raises(OpsManagerResponseError, match=message):
        GenerateCertificateAuthorityOperator(task_id="g").execute(task_context())
    assert api_writes(sim) == []
    assert len(OpsManagerHook().list_certificate_authorities()) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"poll_interval_seconds": 0},
        {"poll_interval_seconds": "soon"},
        {"apply_changes_mode": "sometimes"},
        {"if_installation_running": "ignore"},
        {"expires_within": "3 months"},
        {"deploy_products": 5},
        {"errands": "upgrade-all"},
        {"dry_run": "maybe"},
        {"opsman_conn_id": ""},
    ],
    ids=lambda bad: next(iter(bad)),
)
def test_invalid_params_are_rejected_by_the_trigger_forms_schema(bad):
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags")).dags["opsman_ca_rotation"]
    params = copy.deepcopy(dag.params)
    params.validate()  # the defaults are valid
    for key, value in bad.items():
        with pytest.raises(ParamValidationError):
            params[key] = value
            params.validate()
