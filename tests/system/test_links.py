"""Extra links to Ops Manager's UI: built from the connection and the installation id, never raising."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from opsman import links
from opsman.links import OpsManagerCertificatesLink, OpsManagerInstallationLink

TI_KEY = SimpleNamespace(dag_id="d", task_id="g.apply_changes", run_id="r", map_index=-1)


@pytest.fixture
def connection(monkeypatch, tmp_path):
    def use(host="https://opsman.example.com:8443/", **extra):
        monkeypatch.setenv(
            "AIRFLOW_CONN_OPSMAN_LINKS",
            json.dumps(
                {"conn_type": "opsman", "host": host, "login": "admin", "password": "pw", "extra": extra}
            ),
        )

    use()
    return use


@pytest.fixture
def xcom(monkeypatch):
    values: dict[str, object] = {}

    def get_value(*, ti_key, key):
        assert ti_key is TI_KEY
        return values.get(key)

    from airflow.sdk.execution_time.xcom import XCom

    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    return values


def operator(**attrs):
    return SimpleNamespace(**{"opsman_conn_id": "opsman_links", **attrs})


def test_installation_link_from_the_return_value(connection, xcom):
    xcom["return_value"] = 7
    assert (
        OpsManagerInstallationLink().get_link(operator(), ti_key=TI_KEY)
        == "https://opsman.example.com:8443/installation_logs/7"
    )


def test_sensor_link_falls_back_to_its_installation_id(connection, xcom):
    assert (
        OpsManagerInstallationLink().get_link(operator(installation_id="12"), ti_key=TI_KEY)
        == "https://opsman.example.com:8443/installation_logs/12"
    )


def test_no_installation_points_at_the_change_log(connection, xcom):
    xcom["return_value"] = None
    assert (
        OpsManagerInstallationLink().get_link(operator(), ti_key=TI_KEY)
        == "https://opsman.example.com:8443/change_log"
    )


def test_host_without_scheme_gets_https(connection, xcom):
    connection(host="opsman.example.com")
    assert (
        OpsManagerCertificatesLink().get_link(operator(), ti_key=TI_KEY)
        == "https://opsman.example.com/certificates"
    )


@pytest.mark.parametrize(
    "op",
    [
        operator(opsman_conn_id="does_not_exist"),
        operator(opsman_conn_id="{{ params.opsman_conn_id }}"),
        SimpleNamespace(),
    ],
    ids=["unknown-connection", "unrendered", "no-conn-attribute"],
)
def test_links_never_raise(op, xcom, connection):
    assert OpsManagerInstallationLink().get_link(op, ti_key=TI_KEY) == ""
    assert OpsManagerCertificatesLink().get_link(op, ti_key=TI_KEY) == ""


def test_invalid_connection_gives_no_link(connection, xcom):
    connection(host="http://opsman.example.com")  # refused by the hook's rules without allow_http
    assert OpsManagerCertificatesLink().get_link(operator(), ti_key=TI_KEY) == ""


def test_xcom_keys_and_names():
    assert OpsManagerInstallationLink().xcom_key == "_link_OpsManagerInstallationLink"
    assert OpsManagerInstallationLink().name == "Ops Manager installation"
    assert OpsManagerCertificatesLink().name == "Ops Manager certificates"
    assert links.INSTALLATION_PATH.format(id=3) == "/installation_logs/3"
