"""Each operator's normal, retry and refusal paths, against the simulator."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from support import api_writes, journal_calls, run_to_event, task_context, wait_for_installation

import opsman.operators.apply_changes as apply_changes_module
from opsman.compat import AirflowFailException, TaskDeferred
from opsman.exceptions import OpsManagerConfigError, OpsManagerTransientError, RotationStateError
from opsman.hooks import OpsManagerHook
from opsman.models import ApplyChangesOptions, InstallationStatus
from opsman.operators import (
    AFTER_INSTALLATION_KEY,
    WATERMARK_KEY,
    ActivateCertificateAuthorityOperator,
    ApplyChangesOperator,
    CheckOpsManagerOperator,
    DeleteCertificateAuthorityOperator,
    GenerateCertificateAuthorityOperator,
    PendingChangesCheckOperator,
    RegenerateCertificatesOperator,
    VerifyCertificateAuthoritiesOperator,
    VerifyRotationOperator,
)
from opsman.sensors import ApplyChangesSensor

GENERATE = "/api/v0/certificate_authorities/generate"


def generate(task_id="generate_ca"):
    context = task_context()
    guid = GenerateCertificateAuthorityOperator(task_id=task_id).execute(context)
    return guid, context["ti"].xcoms


def cas(hook=None):
    return {ca.guid: ca.active for ca in (hook or OpsManagerHook()).list_certificate_authorities()}


def activated_rotation():
    """State after generate + activate: returns (old_guid, new_guid)."""
    (old_guid,) = cas()
    new_guid, _ = generate()
    ActivateCertificateAuthorityOperator(task_id="activate", new_ca_guid=new_guid).execute(task_context())
    return old_guid, new_guid


class TestCheckOpsManager:
    def test_reports_cas_and_pushes_the_watermark(self, sim):
        context = task_context()
        result = CheckOpsManagerOperator(task_id="check").execute(context)
        newest = OpsManagerHook().list_installations()[0].id
        assert context["ti"].xcoms == {WATERMARK_KEY: newest}
        assert result["installation_watermark"] == newest
        assert [ca["active"] for ca in result["certificate_authorities"]] == [True]
        assert "cert_pem" not in result["certificate_authorities"][0]


class TestGenerate:
    def test_generates_an_inactive_ca_and_a_retry_adopts_it(self, sim):
        (old_guid,) = cas()
        sim.clear_journal()
        first, xcoms = generate()
        again, _ = generate()
        assert first == again and first != old_guid
        assert cas() == {old_guid: True, first: False}
        assert len(journal_calls(sim, "POST", GENERATE)) == 1
        assert xcoms[WATERMARK_KEY] == OpsManagerHook().list_installations()[0].id

    def test_a_generate_whose_answer_was_lost_is_adopted_from_state(self, sim):
        sim.faults(drop_next={"count": 1, "methods": ["POST"], "path_prefix": GENERATE, "when": "after"})
        guid, _ = generate()
        assert guid in cas() and len(cas()) == 2
        assert len(journal_calls(sim, "POST", GENERATE)) == 1

    def test_a_generate_dropped_before_ops_manager_saw_it_fails_the_try_then_generates(self, sim):
        sim.faults(drop_next={"count": 1, "methods": ["POST"], "path_prefix": GENERATE, "when": "before"})
        with pytest.raises(OpsManagerTransientError, match="may or may not have reached"):
            generate()
        assert len(cas()) == 1
        guid, _ = generate()
        assert guid in cas() and len(cas()) == 2

    def test_a_503_on_generate_is_not_resent_and_the_next_try_generates(self, sim):
        sim.faults(status_burst={"status": 503, "count": 1, "methods": ["POST"], "path_prefix": GENERATE})
        with pytest.raises(OpsManagerTransientError):
            generate()
        assert len(cas()) == 1, "the 503 came from in front of Ops Manager: nothing was generated"
        guid, _ = generate()
        assert len(cas()) == 2 and guid in cas()

    def test_two_stray_inactive_cas_are_ambiguous(self, sim):
        hook = OpsManagerHook()
        hook.generate_certificate_authority()
        hook.generate_certificate_authority()
        sim.clear_journal()
        with pytest.raises(RotationStateError, match="2 inactive CA"):
            generate()
        assert api_writes(sim) == []

    def test_an_older_inactive_ca_is_not_adopted(self, sim):
        old_guid, new_guid = activated_rotation()  # old CA is now inactive and older than the active one
        with pytest.raises(RotationStateError, match="0 of them newer"):
            generate()
        assert cas() == {old_guid: False, new_guid: True}


class TestVerify:
    def _verify(self, new_guid):
        operator = VerifyCertificateAuthoritiesOperator(task_id="v", new_ca_guid=new_guid)
        assert operator.multiple_outputs, "each GUID is an XCom of its own name"
        return operator.execute(task_context())

    def test_returns_the_old_active_ca(self, sim):
        (old_guid,) = cas()
        new_guid, _ = generate()
        assert self._verify(new_guid) == {"new_ca_guid": new_guid, "old_ca_guid": old_guid}

    def test_after_activation_the_old_ca_is_the_other_one(self, sim):
        old_guid, new_guid = activated_rotation()
        assert self._verify(new_guid) == {"new_ca_guid": new_guid, "old_ca_guid": old_guid}

    def test_a_missing_new_ca_fails(self, sim):
        with pytest.raises(RotationStateError, match="is not on Ops Manager"):
            VerifyCertificateAuthoritiesOperator(task_id="v", new_ca_guid="0123456789abcdef0123").execute(
                task_context()
            )


class TestActivate:
    def test_activates_once_and_a_retry_is_a_no_op(self, sim):
        (old_guid,) = cas()
        new_guid, _ = generate()
        sim.clear_journal()
        for _ in range(2):
            ActivateCertificateAuthorityOperator(task_id="a", new_ca_guid=new_guid).execute(task_context())
        assert cas() == {old_guid: False, new_guid: True}
        assert len(journal_calls(sim, "POST", f"/api/v0/certificate_authorities/{new_guid}/activate")) == 1

    def test_a_dropped_activate_response_is_reconciled_from_state(self, sim):
        new_guid, _ = generate()
        sim.faults(
            drop_next={
                "count": 1,
                "methods": ["POST"],
                "path_prefix": "/api/v0/certificate_authorities/",
                "when": "after",
            }
        )
        ActivateCertificateAuthorityOperator(task_id="a", new_ca_guid=new_guid).execute(task_context())
        assert cas()[new_guid] is True


class TestRegenerate:
    def test_refuses_while_the_old_ca_is_active(self, sim):
        new_guid, _ = generate()
        sim.clear_journal()
        with pytest.raises(RotationStateError, match="Activate the new CA first"):
            RegenerateCertificatesOperator(task_id="r", new_ca_guid=new_guid).execute(task_context())
        assert api_writes(sim) == []

    def test_regenerates_under_the_new_ca(self, sim):
        _, new_guid = activated_rotation()
        context = task_context()
        RegenerateCertificatesOperator(task_id="r", new_ca_guid=new_guid).execute(context)
        assert len(journal_calls(sim, "POST", "/api/v0/certificate_authorities/active/regenerate")) == 1
        assert WATERMARK_KEY in context["ti"].xcoms


class TestDelete:
    def test_deletes_the_old_ca_and_a_retry_is_a_no_op(self, sim):
        old_guid, new_guid = activated_rotation()
        for _ in range(2):
            DeleteCertificateAuthorityOperator(
                task_id="d", old_ca_guid=old_guid, new_ca_guid=new_guid
            ).execute(task_context())
        assert cas() == {new_guid: True}
        assert len(journal_calls(sim, "DELETE")) == 1

    @pytest.mark.parametrize("case", ["old-is-active", "new-not-active", "old-is-new"])
    def test_refuses_to_delete_the_active_or_the_new_ca(self, sim, case):
        (old_guid,) = cas()
        new_guid, _ = generate()
        if case == "old-is-active":
            ActivateCertificateAuthorityOperator(task_id="a", new_ca_guid=new_guid).execute(task_context())
            old_guid, new_guid = new_guid, old_guid  # asked to delete the now-active CA
        target, keep = (new_guid, new_guid) if case == "old-is-new" else (old_guid, new_guid)
        sim.clear_journal()
        with pytest.raises(RotationStateError, match="refusing to delete"):
            DeleteCertificateAuthorityOperator(task_id="d", old_ca_guid=target, new_ca_guid=keep).execute(
                task_context()
            )
        assert journal_calls(sim, "DELETE") == []
        assert len(cas()) == 2


class TestApplyChanges:
    def _apply(self, after, **kwargs):
        return ApplyChangesOperator(
            task_id="apply", after_installation_id=after, wait_poll_seconds=0.2, **kwargs
        ).execute(task_context())

    def test_starts_one_then_a_retry_attaches_to_it(self, sim):
        hook = OpsManagerHook()
        watermark = hook.list_installations()[0].id
        sim.clear_journal()
        first = self._apply(watermark)
        again = self._apply(watermark)
        assert first == again and first > watermark
        assert len(journal_calls(sim, "POST", "/api/v0/installations")) == 1

    def test_a_succeeded_installation_after_the_watermark_is_not_repeated(self, sim):
        hook = OpsManagerHook()
        watermark = hook.list_installations()[0].id
        first = self._apply(watermark)
        assert wait_for_installation(sim, hook, first) is InstallationStatus.SUCCEEDED
        sim.clear_journal()
        assert self._apply(watermark) == first
        assert api_writes(sim) == []

    def test_a_failed_installation_is_followed_by_a_new_one(self, sim):
        hook = OpsManagerHook()
        watermark = hook.list_installations()[0].id
        sim.faults(fail_next_installs=1)
        failed = self._apply(watermark)
        assert wait_for_installation(sim, hook, failed) is InstallationStatus.FAILED
        second = self._apply(watermark)
        assert second > failed

    @pytest.mark.parametrize("deferrable", [True, False], ids=["triggerer", "worker"])
    def test_waits_out_an_installation_that_predates_the_step(self, sim, monkeypatch, deferrable):
        hook = OpsManagerHook()
        sim.faults(apply_seconds=3600)  # it runs until the simulator's clock ends it, below
        someone_elses = hook.apply_changes(ApplyChangesOptions())
        watermark = hook.list_installations()[0].id  # the step's change came after it started
        sim.clear_journal()
        context = task_context()
        operator = ApplyChangesOperator(
            task_id="apply", after_installation_id=watermark, wait_poll_seconds=0.2, deferrable=deferrable
        )
        if deferrable:
            with pytest.raises(TaskDeferred) as deferred:
                operator.execute(context)
            trigger = deferred.value.trigger
            # The triggerer waits, following only the end of someone else's installation.
            assert (trigger.installation_id, trigger.follow_log) == (someone_elses, False)
            assert api_writes(sim) == [], "nothing started while someone else's installation runs"
            sim.finish_installation()
            mine = operator.execute_complete(context, run_to_event(trigger))
        else:
            # The worker polls; each poll's pause is where someone else's installation ends.
            monkeypatch.setattr(
                apply_changes_module, "time", SimpleNamespace(sleep=lambda _: sim.finish_installation())
            )
            mine = operator.execute(context)
        assert mine > someone_elses
        installs = {i.id: i for i in hook.list_installations()}
        assert installs[someone_elses].finished_at <= installs[mine].started_at

    def test_options_reach_the_request(self, sim):
        hook = OpsManagerHook()
        guid = hook.list_staged_products()[0].guid
        installation_id = self._apply(None, deploy_products=[guid], ignore_warnings=True)
        record = next(i for i in sim.state()["installations"] if i["id"] == installation_id)
        assert record["request"]["deploy_products"] == [guid]
        assert record["request"]["ignore_warnings"] in (True, "true")

    @pytest.mark.parametrize("products", [[], [1, 2], {"a": 1}])
    def test_bad_deploy_products_are_refused_before_any_call(self, sim, products):
        sim.clear_journal()
        with pytest.raises(OpsManagerConfigError, match="deploy_products"):
            self._apply(None, deploy_products=products)
        assert sim.journal() == []


class TestPreflight:
    def test_a_running_installation_fails_the_run_when_asked(self, sim):
        sim.faults(apply_seconds=30)
        running = OpsManagerHook().apply_changes(ApplyChangesOptions())
        sim.clear_journal()
        with pytest.raises(AirflowFailException) as err:
            CheckOpsManagerOperator(task_id="check", if_installation_running="fail").execute(task_context())
        assert f"installation {running} (started" in str(
            err.value
        ) and "Trigger again when it has finished" in str(err.value)
        assert api_writes(sim) == []

    def test_a_running_installation_is_handed_to_the_waiting_sensor(self, sim):
        sim.faults(apply_seconds=30)
        running = OpsManagerHook().apply_changes(ApplyChangesOptions())
        result = CheckOpsManagerOperator(task_id="check").execute(task_context())
        assert result["running_installation_id"] == running

    def test_reports_certificates_expiring_within_the_window(self, sim):
        soon = CheckOpsManagerOperator(task_id="check", expires_within="3m").execute(task_context())
        later = CheckOpsManagerOperator(task_id="check", expires_within="1w").execute(task_context())
        assert "/p-bosh/director/nats_server_tls" in soon["expiring_certificates"]
        assert "/p-bosh/director/nats_server_tls" not in later["expiring_certificates"]

    def test_a_bad_window_is_refused(self, sim):
        with pytest.raises(OpsManagerConfigError, match="expiry window '3 months'"):
            CheckOpsManagerOperator(task_id="check", expires_within="3 months").execute(task_context())


def plan_json(stage="not_started"):
    return {"stage": stage, "old_ca_guid": None, "new_ca_guid": None}


class TestPendingChanges:
    def _check(self, plan=None, allow=False):
        return PendingChangesCheckOperator(
            task_id="p", plan=plan or plan_json(), allow_pending_changes=allow
        ).execute(task_context())

    def test_no_changes_pass(self, sim):
        assert self._check() == []

    def test_someone_elses_staged_change_is_refused_with_what_to_do(self, sim):
        cf = next(p for p in OpsManagerHook().list_staged_products() if p.type == "cf")
        sim.faults(stage_pending_change={"product_guid": cf.guid, "action": "update"})
        with pytest.raises(AirflowFailException) as err:
            self._check()
        assert str(err.value) == (
            f"Ops Manager has staged changes that an Apply Changes of this rotation would deploy: {cf.guid} (cf: update). "
            "Apply or revert them in Ops Manager first, or trigger with allow_pending_changes=true to deploy them too."
        )
        assert self._check(allow=True) == [{"guid": cf.guid, "action": "update"}]

    def test_director_changes_are_the_rotations_own_once_it_started(self, sim):
        director = next(p for p in OpsManagerHook().list_staged_products() if p.type == "p-bosh")
        sim.faults(stage_pending_change={"product_guid": director.guid, "action": "update"})
        with pytest.raises(AirflowFailException):
            self._check(plan_json("not_started"))
        assert self._check(plan_json("generated")) == [{"guid": director.guid, "action": "update"}]


class TestApplyChangesOptions:
    def _apply(self, **kwargs):
        return ApplyChangesOperator(task_id="apply", wait_poll_seconds=0.2, **kwargs).execute(task_context())

    def _request(self, sim, installation_id):
        return next(i for i in sim.state()["installations"] if i["id"] == installation_id)

    def test_product_names_become_guids_in_products_and_errands(self, sim):
        cf = next(p for p in OpsManagerHook().list_staged_products() if p.type == "cf")
        installation_id = self._apply(
            deploy_products=["cf"],
            errands={"cf": {"run_post_deploy": {"smoke-tests": True}}},
            force_latest_variables=True,
        )
        request = self._request(sim, installation_id)["request"]
        assert request["deploy_products"] == [cf.guid]
        assert request["errands"] == {cf.guid: {"run_post_deploy": {"smoke-tests": True}}}
        assert request["force_latest_variables"] is True

    def test_unknown_products_are_refused_before_any_write(self, sim):
        sim.clear_journal()
        with pytest.raises(OpsManagerConfigError, match="unknown product.*p-redis"):
            self._apply(errands={"p-redis": {"run_post_deploy": {"upgrade-all-service-instances": True}}})
        assert api_writes(sim) == []

    def test_recreate_vms_sets_the_director_flags_first(self, sim):
        sim.clear_journal()
        installation_id = self._apply(recreate_vms=True)
        writes = [(e["method"], e["path"]) for e in api_writes(sim)]
        assert writes == [("PUT", "/api/v0/staged/director/properties"), ("POST", "/api/v0/installations")]
        assert self._request(sim, installation_id)["recreate_vms"] == {
            "bosh_recreate_on_next_deploy": True,
            "bosh_director_recreate_on_next_deploy": True,
        }


class TestManualMode:
    def test_waits_for_a_person_to_click_apply_changes(self, sim):
        hook = OpsManagerHook()
        watermark = hook.list_installations()[0].id
        context = task_context()
        started = ApplyChangesOperator(
            task_id="apply", after_installation_id=watermark, apply_changes_mode="manual"
        ).execute(context)
        assert started is None and context["ti"].xcoms[AFTER_INSTALLATION_KEY] == watermark
        assert api_writes(sim) == []

        person = threading.Timer(1.0, lambda: hook.apply_changes(ApplyChangesOptions()))
        person.start()
        try:
            waited = ApplyChangesSensor(
                task_id="wait",
                installation_id=None,
                after_installation_id=watermark,
                poll_interval_seconds=0.2,
                deferrable=False,
            ).execute(task_context())
        finally:
            person.join()
        assert waited == hook.list_installations()[0].id > watermark
        assert hook.get_installation_status(waited) is InstallationStatus.SUCCEEDED


class TestVerifyRotation:
    def _verify(self, new_guid, old_key=None):
        return VerifyRotationOperator(task_id="v", new_ca_guid=new_guid, old_ca_key_id=old_key).execute(
            task_context()
        )

    def test_a_complete_rotation_is_proven(self, sim):
        hook = OpsManagerHook()
        old_guid, new_guid = activated_rotation()
        old_key = next(
            ca for ca in hook.list_certificate_authorities() if ca.guid == old_guid
        ).subject_key_identifier
        RegenerateCertificatesOperator(task_id="r", new_ca_guid=new_guid).execute(task_context())
        wait_for_installation(sim, hook, hook.apply_changes(ApplyChangesOptions()))
        hook.delete_certificate_authority(old_guid)
        wait_for_installation(sim, hook, hook.apply_changes(ApplyChangesOptions()))
        report = self._verify(new_guid, old_key)
        assert report["problems"] == []
        assert {r["signed_by"] for r in report["certificates"]} == {"new CA"}
        assert {r["checked_by"] for r in report["certificates"]} == {
            "key identifier",
            "issue time (CredHub: no PEM in the Ops Manager API)",
        }
        assert any(
            e["certificate"].endswith(".properties.networking_poe_ssl_certs") for e in report["excluded"]
        )
        assert any(e["certificate"] == "/services/tls_ca" for e in report["excluded"])

    def test_a_leaf_still_signed_by_the_old_ca_fails_verification(self, sim):
        hook = OpsManagerHook()
        old_guid, new_guid = activated_rotation()
        old_key = next(
            ca for ca in hook.list_certificate_authorities() if ca.guid == old_guid
        ).subject_key_identifier
        hook.delete_certificate_authority(
            old_guid
        )  # regenerate skipped: the leaves still chain to the old CA
        with pytest.raises(AirflowFailException) as err:
            self._verify(new_guid, old_key)
        message = str(err.value)
        assert (
            message.startswith("Rotation verification failed: ") and "do not chain to the new CA" in message
        )
        assert ".properties.director_ssl" in message and "/p-bosh/director/nats_server_tls" in message
