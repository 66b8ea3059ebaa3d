"""Least-privilege users: a read-only user is refused before any write, a restricted one rotates and verifies."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from airflow.sdk.exceptions import AirflowFailException
from support import SIM_PASSWORD, SIM_USER, api_writes, connection_json, task_context, wait_for_installation

from opsman.hooks import OpsManagerHook
from opsman.models import ApplyChangesOptions
from opsman.operators import CheckOpsManagerOperator, VerifyRotationOperator, _key_identifier
from opsman_simulator.process import SimulatorProcess

CONTROL = ("control-bot", "c-" + SIM_PASSWORD)
VIEWER = ("viewer-bot", "v-" + SIM_PASSWORD)


@pytest.fixture(scope="module")
def roles_sim(tmp_path_factory):
    sim = SimulatorProcess(
        tmp_path_factory.mktemp("sim-roles"), apply_seconds=0.5, username=SIM_USER, password=SIM_PASSWORD,
        extra_args=(f"--extra-user={CONTROL[0]}:{CONTROL[1]}:restricted_control",
                    f"--extra-user={VIEWER[0]}:{VIEWER[1]}:read_only"),
    )
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def rsim(roles_sim, monkeypatch):
    roles_sim.reset()
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(roles_sim))
    return roles_sim


def login_as(monkeypatch, sim, user: tuple[str, str]) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(sim, login=user[0], password=user[1]))


def rotate(sim) -> tuple[str, str]:
    """The documented rotation through the hook, as an admin; returns (new CA guid, old CA key id)."""
    hook = OpsManagerHook()
    (old,) = hook.list_certificate_authorities()

    def apply() -> None:
        assert wait_for_installation(sim, hook, hook.apply_changes(ApplyChangesOptions())).is_successful

    new = hook.generate_certificate_authority().authority
    apply()
    hook.activate_certificate_authority(new.guid)
    hook.regenerate_certificates()
    apply()
    hook.delete_certificate_authority(old.guid)
    apply()
    return new.guid, old.subject_key_identifier


class TestPreflight:
    def test_a_read_only_user_is_refused_before_any_write_naming_the_role_needed(self, rsim, monkeypatch):
        login_as(monkeypatch, rsim, VIEWER)
        rsim.clear_journal()
        with pytest.raises(AirflowFailException) as err:
            CheckOpsManagerOperator(task_id="check").execute(task_context())
        message = str(err.value)
        assert "has only opsman.full_view" in message and "Restricted Control (opsman.restricted_control) is enough" in message
        assert api_writes(rsim) == []

    def test_a_read_only_user_may_dry_run(self, rsim, monkeypatch):
        login_as(monkeypatch, rsim, VIEWER)
        result = CheckOpsManagerOperator(task_id="check", dry_run=True).execute(task_context())
        assert result["role"] == "view"

    def test_a_restricted_user_passes_and_is_told_how_verification_changes(self, rsim, monkeypatch):
        login_as(monkeypatch, rsim, CONTROL)
        assert CheckOpsManagerOperator(task_id="check").execute(task_context())["role"] == "restricted_control"

    def test_the_admin_is_full(self, rsim):
        assert CheckOpsManagerOperator(task_id="check").execute(task_context())["role"] == "full"

    def test_a_write_refused_anyway_fails_at_once_naming_the_role(self, rsim, monkeypatch):
        login_as(monkeypatch, rsim, VIEWER)
        with pytest.raises(AirflowFailException, match="HTTP 403.*Restricted Control \\(opsman.restricted_control\\) is enough"):
            OpsManagerHook().generate_certificate_authority()


class TestVerification:
    def test_a_restricted_user_verifies_by_issue_time_and_says_why(self, rsim, monkeypatch):
        new_guid, old_key = rotate(rsim)
        login_as(monkeypatch, rsim, CONTROL)
        rsim.clear_journal()
        report = VerifyRotationOperator(task_id="v", new_ca_guid=new_guid, old_ca_key_id=old_key).execute(task_context())
        assert report["problems"] == []
        rows = {r["certificate"]: r for r in report["certificates"]}
        ops_manager = [r for r in rows.values() if r["location"] == "ops_manager"]
        assert ops_manager and all(r["checked_by"] == "issue time (PEM read refused: HTTP 403)" for r in ops_manager)
        assert all(r["signed_by"] == "new CA" for r in rows.values())
        assert report["checked_by"] == {"key identifier": 0, "issue time": len(rows)}
        refused = [e for e in rsim.journal() if "/credentials/" in e["path"]]
        assert [e["status"] for e in refused] == [403], "after one refusal it stops asking"

    def test_the_admin_verifies_by_key_identifier(self, rsim):
        new_guid, old_key = rotate(rsim)
        report = VerifyRotationOperator(task_id="v", new_ca_guid=new_guid, old_ca_key_id=old_key).execute(task_context())
        assert report["checked_by"]["key identifier"] == 2 and report["problems"] == []

    def test_a_missing_pem_404_is_checked_by_issue_time(self, rsim):
        new_guid, old_key = rotate(rsim)
        rsim.faults(status_burst={"status": 404, "count": 1, "methods": ["GET"], "path_prefix": "/api/v0/deployed/products/",
                                  "body": json.dumps({"errors": ["Credential not found"]})})
        report = VerifyRotationOperator(task_id="v", new_ca_guid=new_guid, old_ca_key_id=old_key).execute(task_context())
        how = sorted(r["checked_by"] for r in report["certificates"] if r["location"] == "ops_manager")
        assert how == ["issue time (PEM not found: HTTP 404)", "key identifier"]
        assert report["checked_by"]["key identifier"] == 1 and report["problems"] == []

    def test_it_still_fails_without_retries_when_certificates_chain_to_the_old_ca(self, rsim, monkeypatch):
        hook = OpsManagerHook()
        (old,) = hook.list_certificate_authorities()
        new = hook.generate_certificate_authority().authority  # generated, never rotated to
        login_as(monkeypatch, rsim, CONTROL)
        with pytest.raises(AirflowFailException) as err:
            VerifyRotationOperator(task_id="v", new_ca_guid=new.guid, old_ca_key_id=old.subject_key_identifier).execute(
                task_context())
        message = str(err.value)
        assert "expected exactly one CA" in message and "do not chain to the new CA" in message
        state = rsim.state()
        assert any(_key_identifier(leaf["cert_pem"], x509.AuthorityKeyIdentifier)
                   == old.subject_key_identifier for leaf in state["leaves"]), "the check agrees with the state"
