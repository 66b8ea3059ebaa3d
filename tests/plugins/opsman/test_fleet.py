"""The fleet file: parsing, defaults, and one clear error per problem (no Airflow DB, no network)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from opsman.expiry import assess_expiry
from opsman.fleet import DEFAULT_SETTINGS, FleetFileError, load_fleet, parse_fleet
from opsman.models import CertificateAuthority, DeployedCertificate

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "include" / "foundations.example.yaml"


def write(tmp_path, document) -> Path:
    path = tmp_path / "foundations.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def one(**fields) -> dict:
    return {"foundations": [{"name": "prod", "conn_id": "opsman_prod", **fields}]}


class TestValidFleet:
    def test_the_shipped_example_is_valid(self, monkeypatch):
        monkeypatch.delenv("OPSMAN_FLEET_FILE", raising=False)
        fleet = load_fleet(EXAMPLE)
        assert [f.name for f in fleet.foundations] == ["prod_east", "prod_west", "sandbox"]
        east, _, sandbox = fleet.foundations
        assert east.dag_id == "opsman_ca_rotation__prod_east" and east.pool == "opsman_prod_east"
        assert east.schedule == "0 6 * * 1-4" and east.expires_within == "3m"
        assert east.apply_changes["deploy_products"] == "all"  # from defaults, merged key by key
        assert "p-redis" in east.apply_changes["errands"]
        assert len(east.on_failure) == 1 and len(east.on_success) == 1
        assert sandbox.expires_within == "6m" and sandbox.schedule == "@daily"
        assert sandbox.apply_changes == {"deploy_products": "none", "initial_apply_changes": False}
        assert sandbox.settings == {
            **DEFAULT_SETTINGS,
            "opsman_conn_id": "opsman_sandbox",
            "expires_within": "6m",
            "deploy_products": "none",
            "initial_apply_changes": False,
        }

    def test_minimal_entry_gets_the_defaults(self, tmp_path):
        (f,) = load_fleet(write(tmp_path, one())).foundations
        assert (f.schedule, f.expires_within, f.poll_interval_seconds, f.apply_changes) == (
            "@daily",
            "3m",
            30,
            {},
        )
        assert f.settings == {**DEFAULT_SETTINGS, "opsman_conn_id": "opsman_prod"}
        assert (f.if_installation_running, f.custom_ca_conn_id) == ("wait", None)

    def test_every_setting_can_be_given(self, tmp_path):
        (f,) = load_fleet(
            write(
                tmp_path,
                one(
                    expires_within="6w",
                    poll_interval_seconds=5,
                    if_installation_running="fail",
                    custom_ca_conn_id="my_ca",
                    approve_before=["activate_ca", "delete_ca"],
                    approval_timeout_minutes=90,
                    apply_changes={
                        "deploy_products": ["cf"],
                        "errands": {"cf": {}},
                        "recreate_vms": True,
                        "force_latest_variables": True,
                        "ignore_warnings": True,
                        "mode": "manual",
                        "initial": False,
                    },
                ),
            )
        ).foundations
        assert f.settings == {
            "opsman_conn_id": "opsman_prod",
            "expires_within": "6w",
            "poll_interval_seconds": 5,
            "if_installation_running": "fail",
            "custom_ca_conn_id": "my_ca",
            "approve_before": ["activate_ca", "delete_ca"],
            "approval_timeout_minutes": 90,
            "deploy_products": ["cf"],
            "errands": {"cf": {}},
            "recreate_vms": True,
            "force_latest_variables": True,
            "ignore_warnings": True,
            "apply_changes_mode": "manual",
            "initial_apply_changes": False,
        }

    def test_null_schedule_means_manual_only(self, tmp_path):
        assert load_fleet(write(tmp_path, one(schedule=None))).foundations[0].schedule is None

    def test_no_fleet_file_means_no_fleet(self, tmp_path, monkeypatch):
        monkeypatch.delenv("OPSMAN_FLEET_FILE", raising=False)
        monkeypatch.setattr("opsman.fleet.DEFAULT_FLEET_FILE", tmp_path / "absent.yaml")
        assert load_fleet() is None

    def test_env_var_naming_a_missing_file_is_an_error(self, tmp_path, monkeypatch):
        monkeypatch.setenv("OPSMAN_FLEET_FILE", str(tmp_path / "absent.yaml"))
        with pytest.raises(FleetFileError, match="absent.yaml: fleet file not found"):
            load_fleet()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            one(expires_within="3 months"),
            r"foundation 'prod', field 'expires_within': must be a number and d, w, m or y",
        ),
        (one(expires_within="2y"), r"foundation 'prod', field 'expires_within': 2y is more than a year"),
        (
            one(schedule="every day"),
            r"foundation 'prod', field 'schedule': 'every day' is not a cron expression",
        ),
        (one(schedule="61 * * * *"), r"field 'schedule'"),
        (one(poll_interval_seconds=0), r"foundation 'prod', field 'poll_interval_seconds'"),
        (one(colour="blue"), r"foundation 'prod', field 'colour': unknown field"),
        (
            one(wait_mode="sleep"),
            r"foundation 'prod', field 'wait_mode': must be one of deferrable, reschedule, poke",
        ),
        (
            one(if_installation_running="queue"),
            r"foundation 'prod', field 'if_installation_running': must be wait or fail",
        ),
        (
            one(custom_ca_conn_id="my ca"),
            r"foundation 'prod', field 'custom_ca_conn_id': must be an Airflow connection id",
        ),
        (
            one(apply_changes={"mode": "auto"}),
            r"foundation 'prod', field 'apply_changes.mode': must be api or manual",
        ),
        (
            one(apply_changes={"recreate_vms": "yes"}),
            r"field 'apply_changes.recreate_vms': must be true or false",
        ),
        (
            one(notifiers={"on_failure": [{"class": "no.such.Notifier"}]}),
            r"foundation 'prod', field 'notifiers.on_failure\[1\]': cannot import 'no.such.Notifier'",
        ),
        (
            one(notifiers={"on_failure": [{"class": "opsman.fleet.Fleet"}]}),
            r"is not a subclass of airflow.sdk.BaseNotifier",
        ),
        (
            one(
                notifiers={
                    "on_success": [{"class": "recording_notifier.RecordingNotifier", "kwargs": {"nope": 1}}]
                }
            ),
            r"field 'notifiers.on_success\[1\]': 'recording_notifier.RecordingNotifier' does not accept kwargs \['nope'\]",
        ),
        ({"foundations": [{"name": "Prod East", "conn_id": "c"}]}, r"foundation 'Prod East', field 'name'"),
        ({"foundations": [{"conn_id": "c"}]}, r"foundation '#1', field 'name'"),
        (
            {"foundations": [{"name": "a", "conn_id": "c"}, {"name": "a", "conn_id": "d"}]},
            r"foundation 'a', field 'name': duplicate",
        ),
        (
            {"foundations": [{"name": "a", "conn_id": "c"}, {"name": "b", "conn_id": "c"}]},
            r"foundation 'b', field 'conn_id': connection 'c' is already foundation 'a'",
        ),
        ({"foundations": []}, r"field 'foundations': must be a non-empty list"),
        ({"foundation": []}, r"field 'foundation': unknown top-level field"),
        (
            {"defaults": {"conn_id": "x"}, "foundations": [{"name": "a", "conn_id": "c"}]},
            r"field 'defaults': name and conn_id",
        ),
        ({"report": {"schedule": "often"}, **one()}, r"field 'report.schedule'"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_an_invalid_fleet_file_gives_one_error_naming_file_foundation_and_field(tmp_path, document, message):
    path = write(tmp_path, document)
    with pytest.raises(FleetFileError, match=message) as err:
        load_fleet(path)
    assert str(err.value).startswith(f"{path}: ")


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "foundations: [\n")
    with pytest.raises(FleetFileError, match=f"{path}: not valid YAML"):
        load_fleet(path)


def test_a_default_that_is_invalid_is_reported_on_the_first_foundation(tmp_path):
    with pytest.raises(FleetFileError, match="foundation 'a', field 'expires_within'"):
        parse_fleet(
            {"defaults": {"expires_within": "soon"}, "foundations": [{"name": "a", "conn_id": "c"}]},
            tmp_path / "f.yaml",
        )


NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def ca(guid, active, expires_in_days):
    expires = (NOW + dt.timedelta(days=expires_in_days)).isoformat().replace("+00:00", "Z")
    return CertificateAuthority(
        guid=guid, issuer="Pivotal", created_on="", expires_on=expires, active=active, cert_pem=""
    )


def leaf(name, days, configurable=False, is_ca=False, procedure=None):
    return DeployedCertificate(
        issuer="Pivotal",
        valid_from=None,
        valid_until=NOW + dt.timedelta(days=days),
        configurable=configurable,
        location="credhub",
        variable_path=name,
        is_ca=is_ca,
        rotation_procedure_name=procedure,
    )


class TestAssessExpiry:
    def test_a_young_ca_with_nothing_expiring_is_not_due(self):
        report = assess_expiry([ca("a", True, 1400)], [], now=NOW, expires_within="3m")
        assert report["due"] is False and report["reasons"] == [] and report["days_left"] == 1400

    def test_the_active_ca_inside_the_window_is_due(self):
        report = assess_expiry([ca("a", True, 60)], [], now=NOW, expires_within="3m")
        assert report["due"] and "the active root CA a expires" in report["reasons"][0]

    def test_a_rotated_leaf_inside_the_window_is_due_but_configurable_and_services_ca_are_only_reported(self):
        expiring = [
            leaf("/nats", 30),
            leaf("router", 20, configurable=True, procedure="Configurable Procedure"),
            leaf("/services/tls_ca", 10, is_ca=True, procedure="Services TLS CA Procedure"),
        ]
        report = assess_expiry([ca("a", True, 1400)], expiring, now=NOW, expires_within="3m")
        assert report["due"] and len(report["reasons"]) == 1 and "/nats" in report["reasons"][0]
        assert set(report["expiring_by_procedure"]) == {
            "Configurable Procedure",
            "Services TLS CA Procedure",
            "Non-configurable leaf certificates (rotated with the root CA)",
        }
        only_others = assess_expiry([ca("a", True, 1400)], expiring[1:], now=NOW, expires_within="3m")
        assert only_others["due"] is False

    def test_a_half_done_rotation_is_due(self):
        report = assess_expiry(
            [ca("old", True, 200), ca("new", False, 1460)], [], now=NOW, expires_within="3m"
        )
        assert report["due"] and "not finished" in report["reasons"][0]
