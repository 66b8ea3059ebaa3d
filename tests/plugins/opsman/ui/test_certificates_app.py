"""The Certificates page's app in-process: Airflow's authentication and DAG-level authorization, and
rows read from Airflow's database after a real expiry report run (dag.test() against the simulator).

The auth manager is Airflow's own machinery (``get_user`` resolving the ``_token`` cookie or a bearer
token, ``filter_authorized_dag_ids``) with :mod:`restricted_auth_manager`, a SimpleAuthManager that
can deny one user one DAG: SimpleAuthManager alone only knows roles that read every DAG or none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import SIM_PASSWORD, connection_json

REPO = Path(__file__).resolve().parents[4]
# Names no other test uses: the test session's database keeps other tests' runs of their foundations' DAGs.
EAST, WEST = "opsman_ca_rotation__ui_east", "opsman_ca_rotation__ui_west"


@pytest.fixture
def auth(monkeypatch, airflow_db):
    """The restricted auth manager as Airflow's; east_viewer may read only the east DAG (and the report)."""
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "restricted_auth_manager.DagListAuthManager")
    monkeypatch.setenv(
        "OPSMAN_TEST_DAG_ACCESS", json.dumps({"east_viewer": [EAST, "opsman_certificate_expiry_report"]})
    )
    api_app.purge_cached_app()
    manager = api_app.init_auth_manager()
    tokens = {
        name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role))
        for name, role in (("admin", "admin"), ("east_viewer", "viewer"))
    }
    yield tokens
    api_app.purge_cached_app()


@pytest.fixture
def two_foundations(sim, tmp_path, monkeypatch):
    entries = []
    for name in ("ui_east", "ui_west"):
        monkeypatch.setenv(f"AIRFLOW_CONN_OPSMAN_{name.upper()}", connection_json(sim))
        entries.append({"name": name, "conn_id": f"opsman_{name}", "schedule": None})
    path = tmp_path / "foundations.yaml"
    path.write_text(yaml.safe_dump({"report": {"schedule": None}, "foundations": entries}))
    monkeypatch.setenv("OPSMAN_FLEET_FILE", str(path))
    return path


@pytest.fixture
def client():
    from fastapi.testclient import TestClient

    from opsman.ui.certificates_app import create_app

    return TestClient(create_app())


def test_no_session_is_refused_and_each_user_sees_only_the_foundations_whose_dag_they_may_read(
    auth, two_foundations, client
):
    for path in ("/", "/rows"):
        assert client.get(path).status_code == 401
        assert client.get(path, cookies={"_token": "not-a-jwt"}).status_code in (401, 403)
        assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code in (401, 403)

    admin = client.get("/rows", cookies={"_token": auth["admin"]})
    assert admin.status_code == 200
    assert [r["foundation"] for r in admin.json()["rows"]] == ["ui_east", "ui_west"] and admin.json()[
        "hidden"
    ] == 0

    viewer = client.get("/rows", headers={"Authorization": f"Bearer {auth['east_viewer']}"})
    assert viewer.status_code == 200
    assert [r["foundation"] for r in viewer.json()["rows"]] == ["ui_east"] and viewer.json()["hidden"] == 1
    page = client.get("/", cookies={"_token": auth["east_viewer"]})
    assert page.status_code == 200 and 'data-foundation="ui_east"' in page.text
    assert "ui_west" not in page.text and "1 foundation(s) hidden" in page.text


def test_rows_come_from_the_expiry_reports_xcom_and_hold_nothing_secret(auth, two_foundations, client, sim):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert client.get("/rows", cookies={"_token": auth["admin"]}).json()["rows"][0]["state"] in (
        "unknown",
        "due",
        "not_due",
    )
    run = bag.dags["opsman_certificate_expiry_report"].test()
    assert run.state == DagRunState.SUCCESS

    body = client.get("/rows", cookies={"_token": auth["admin"]}).json()
    state = sim.state()
    active = next(ca for ca in state["certificate_authorities"] if ca["active"])
    soonest = min(
        (leaf for leaf in state["leaves"] if not leaf["configurable"] and not leaf["is_ca"]),
        key=lambda leaf: leaf["valid_until"],
    )
    for row in body["rows"]:
        assert row["state"] == "due", row  # a fresh simulator's nats_server expires in about 30 days
        assert row["ca_guid"] == active["guid"]
        assert row["ca_expires_at"][:10] == active["expires_at"][:10]
        assert row["soonest_leaf"]["name"] == soonest["variable_path"]  # a credhub leaf is named by its path
        assert (row["opsman_url"], row["opsman_version"]) == (sim.url, "2.9.13-build.165")
        assert row["read_from"] == {
            "dag_id": "opsman_certificate_expiry_report",
            "run_id": run.run_id,
            "task_id": f"expiry__{row['foundation']}",
        }
    text = json.dumps(body) + client.get("/", cookies={"_token": auth["admin"]}).text
    assert SIM_PASSWORD not in text and "BEGIN" not in text  # no password, no PEM


def test_airflow_loads_the_plugin_from_the_plugins_folder_with_its_app_and_navigation_entry():
    from airflow import plugins_manager
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES

    apps, _ = plugins_manager.get_fastapi_plugins()
    ours = [a for a in apps if a["url_prefix"] == "/opsman-certificates"]
    assert len(ours) == 1 and not any(ours[0]["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    assert {r.path for r in ours[0]["app"].routes} >= {"/", "/rows"}
    views, _ = plugins_manager._get_ui_plugins()
    view = next(v for v in views if v.get("url_route") == "opsman-certificates")
    assert (view["name"], view["href"], view["destination"]) == (
        "Certificates",
        "/opsman-certificates/",
        "nav",
    )


def test_without_a_fleet_file_the_page_shows_the_single_dag_on_opsman_default(
    auth, client, monkeypatch, tmp_path
):
    monkeypatch.delenv("OPSMAN_FLEET_FILE", raising=False)
    monkeypatch.setattr("opsman.fleet.DEFAULT_FLEET_FILE", tmp_path / "absent.yaml")
    body = client.get("/rows", cookies={"_token": auth["admin"]}).json()
    assert [(r["foundation"], r["conn_id"], r["dag_id"]) for r in body["rows"]] == [
        ("default", "opsman_default", "opsman_ca_rotation")
    ]
    assert body["problem"] is None and body["report_dag_id"] is None  # no fleet, no report DAG
    page = client.get("/", cookies={"_token": auth["admin"]}).text
    assert "run the foundation's DAG" in page and "opsman_certificate_expiry_report" not in page
