"""The certificate-authority steps: generate (or upload) the new CA, confirm it, activate it,
regenerate the leaf certificates under it, delete the old CA.

Each step decides from the CAs on Ops Manager (see :mod:`opsman.verdicts`) what is left to do, and
makes its write through :meth:`~opsman.operators.base.OpsManagerBaseOperator.write_then_confirm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from opsman.constants import DEFAULT_WINDOW
from opsman.custom_ca import CustomCertificateAuthority
from opsman.exceptions import OpsManagerNotFoundError, OpsManagerTransientError, RotationStateError
from opsman.links import OpsManagerCertificatesLink
from opsman.models import CertificateAuthority
from opsman.operators.base import (
    NEW_CA_KEY,
    OLD_CA_KEY,
    STEP_TEMPLATE_FIELDS,
    WATERMARK_KEY,
    OpsManagerBaseOperator,
)
from opsman.planning import ACTIVATE, DELETE, GENERATE, REGENERATE, VERIFY, RotationPlan
from opsman.verdicts import listed_ca, made_new_ca, old_ca_beside, old_ca_to_delete, split_active

#: What a CA step reads to confirm a write whose answer was lost.
CAS = "CAs"


class GenerateCertificateAuthorityOperator(OpsManagerBaseOperator):
    """Generate a new root CA (inactive), or upload the one of ``custom_ca_conn_id``; return its GUID.

    Idempotent: when an inactive CA newer than the active one already exists (an earlier try made it),
    or, for an upload, an inactive CA with the same certificate, it adopts that CA instead of making
    a second one. Any other extra CA is ambiguous: it fails and lists what it found.

    :param custom_ca_conn_id: connection holding ``certificate_pem``/``private_key_pem`` of a CA to
        upload instead of generating one (templated). See :mod:`opsman.custom_ca`.
    :param expires_within: the uploaded CA must outlive this window (templated).
    """

    step = GENERATE
    template_fields: Sequence[str] = (*STEP_TEMPLATE_FIELDS, "custom_ca_conn_id", "expires_within")

    def __init__(
        self, *, custom_ca_conn_id: Any = None, expires_within: str = DEFAULT_WINDOW, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.custom_ca_conn_id = custom_ca_conn_id
        self.expires_within = expires_within

    def intent(self) -> str:
        if self.custom_ca_conn_id:
            return f"upload the CA of connection '{self.custom_ca_conn_id}' (inactive)"
        return "generate a new root CA (inactive)"

    def carry_over(self, context: Context, plan: RotationPlan) -> Any:
        if GENERATE in plan.watermarks:
            context["ti"].xcom_push(key=WATERMARK_KEY, value=plan.watermarks[GENERATE])
        return plan.new_ca_guid

    def _refuse_a_stale_plan(self, cas: Sequence[CertificateAuthority]) -> None:
        """A cleared or late try must not start a second rotation: the active CA must still be the one
        this run planned to replace (found by tests/properties: generate cleared after the rotation ended)."""
        plan = self.rotation_plan
        if plan is None or plan.old_ca_guid is None:
            return
        active, _ = split_active(cas)
        if active.guid != plan.old_ca_guid:
            raise RotationStateError(
                f"the active CA is {active.guid}, not {plan.old_ca_guid}, the CA this run planned to replace: the "
                "rotation moved on after this run was planned. Trigger a new run; it plans from Ops Manager's state."
            )

    def _make_ca(self, call: str, uploaded: CustomCertificateAuthority | None) -> CertificateAuthority:
        if uploaded is not None:
            result = self.hook.create_certificate_authority(uploaded.cert_pem, uploaded.private_key_pem)
        else:
            result = self.hook.generate_certificate_authority()
        self.report_ca_call(call, result)
        assert result.authority is not None
        new_ca = result.authority
        if new_ca.active:
            raise RotationStateError(f"Ops Manager made CA {new_ca.guid} active at once; expected inactive")
        self.log.info("%s: new CA %s (inactive), expires %s", call, new_ca.guid, new_ca.expires_on)
        return new_ca

    def run_step(self, context: Context) -> str:
        uploaded = self.custom_ca(self.custom_ca_conn_id, self.expires_within)
        fingerprint = uploaded.fingerprint if uploaded else None
        cas = self.authorities()
        new_ca = made_new_ca(cas, fingerprint)
        if new_ca is not None:
            self.log.info("Adopting CA %s, made earlier and still inactive; not making another", new_ca.guid)
        else:
            self._refuse_a_stale_plan(cas)
            call = "create certificate authority" if uploaded else "generate certificate authority"
            new_ca = self.write_then_confirm(
                call,
                lambda: self._make_ca(call, uploaded),
                lambda: made_new_ca(self.authorities(), fingerprint),
                reading=CAS,
            )
        self.push_watermark(context)
        return new_ca.guid


class VerifyCertificateAuthoritiesOperator(OpsManagerBaseOperator):
    """List the CAs and confirm the new CA is present (inactive, or active on a retry after activation).

    Returns ``{"new_ca_guid": ..., "old_ca_guid": ...}``, each GUID also an XCom of that name
    (``multiple_outputs``): the old CA is the one this rotation replaces, and later deletes.

    :param new_ca_guid: GUID of the CA generated by the previous step (templated).
    """

    step = VERIFY
    operator_extra_links = (OpsManagerCertificatesLink(),)
    template_fields: Sequence[str] = (*STEP_TEMPLATE_FIELDS, "new_ca_guid")

    def __init__(self, *, new_ca_guid: str, **kwargs: Any) -> None:
        # multiple_outputs: Airflow pushes each GUID under its name; ``output[OLD_CA_KEY]`` of a run
        # with no old CA left (a plan past deletion) is then None rather than a missing XCom.
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid

    def intent(self) -> str:
        return f"confirm that the new CA {self.new_ca_guid or '(not generated yet)'} is listed and inactive"

    def carry_over(self, context: Context, plan: RotationPlan) -> Any:
        guids = {NEW_CA_KEY: plan.new_ca_guid, OLD_CA_KEY: plan.old_ca_guid}
        for key, guid in guids.items():  # a skipped task's return value is not split by Airflow
            if guid is not None:
                context["ti"].xcom_push(key=key, value=guid)
        return guids

    def run_step(self, context: Context) -> dict[str, str]:
        cas = self.authorities()
        new_ca = listed_ca(cas, self.new_ca_guid)
        if new_ca is None:
            raise RotationStateError(
                f"the new CA {self.new_ca_guid} is not on Ops Manager; someone deleted it. Trigger a new run."
            )
        old_ca = old_ca_beside(cas, new_ca)
        if new_ca.active:
            self.log.info("New CA %s is already active; the old CA is %s", new_ca.guid, old_ca.guid)
        else:
            self.log.info(
                "New CA %s is present and inactive; the active (old) CA is %s", new_ca.guid, old_ca.guid
            )
        return {NEW_CA_KEY: new_ca.guid, OLD_CA_KEY: old_ca.guid}


class ActivateCertificateAuthorityOperator(OpsManagerBaseOperator):
    """Activate the new CA (deactivating the old one). A no-op when it is already active.

    :param new_ca_guid: GUID of the CA to activate (templated).
    """

    step = ACTIVATE
    template_fields: Sequence[str] = (*STEP_TEMPLATE_FIELDS, "new_ca_guid")

    def __init__(self, *, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid

    def intent(self) -> str:
        return f"activate the new CA {self.new_ca_guid or '(not generated yet)'}"

    def _new_ca_is_active(self) -> bool:
        ca = listed_ca(self.authorities(), self.new_ca_guid)
        if ca is None:
            raise RotationStateError(f"CA {self.new_ca_guid} is not on Ops Manager; nothing to activate")
        return ca.active

    def _activate(self, call: str) -> str:
        self.report_ca_call(call, self.hook.activate_certificate_authority(self.new_ca_guid))
        self.log.info("Activated CA %s", self.new_ca_guid)
        return self.new_ca_guid

    def run_step(self, context: Context) -> str:
        if self._new_ca_is_active():
            self.log.info("CA %s is already active; nothing to do", self.new_ca_guid)
        else:
            call = "activate certificate authority"
            self.write_then_confirm(
                call,
                lambda: self._activate(call),
                lambda: self.new_ca_guid if self._new_ca_is_active() else None,
                reading=CAS,
            )
        self.push_watermark(context)
        return self.new_ca_guid


class RegenerateCertificatesOperator(OpsManagerBaseOperator):
    """Regenerate the non-configurable leaf certificates under the active CA.

    Ops Manager shows nothing that says whether regenerate was called, so a retry calls it again. That
    is safe: a second regenerate only re-issues the leaves once more before the next Apply Changes.

    :param new_ca_guid: GUID of the CA that must be active before regenerating (templated).
    """

    step = REGENERATE
    template_fields: Sequence[str] = (*STEP_TEMPLATE_FIELDS, "new_ca_guid")

    def __init__(self, *, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid

    def intent(self) -> str:
        return "regenerate the non-configurable leaf certificates under the new CA"

    def run_step(self, context: Context) -> dict[str, int] | None:
        active, _ = split_active(self.authorities())
        if active.guid != self.new_ca_guid:
            raise RotationStateError(
                f"the active CA is {active.guid}, not the new CA {self.new_ca_guid}: regenerating now would "
                "re-issue leaves under the old CA. Activate the new CA first."
            )
        try:
            result = self.hook.regenerate_certificates()
        except OpsManagerTransientError as err:
            # No state to confirm from (see the class docstring): repeating is the safe way to know.
            self.log.warning(
                "The regenerate call's outcome is unknown (%s); calling it once more (safe to repeat)", err
            )
            result = self.hook.regenerate_certificates()
        self.report_ca_call("regenerate certificates", result)
        self.log.info("Regenerated the non-configurable leaf certificates under CA %s", active.guid)
        self.push_watermark(context)
        return result.changes.counts() if result.changes else None


class DeleteCertificateAuthorityOperator(OpsManagerBaseOperator):
    """Delete the old CA. Refuses the active CA and the new CA; a no-op when the old CA is gone.

    :param old_ca_guid: GUID of the CA to delete (templated).
    :param new_ca_guid: GUID of the CA that must stay, and be active (templated).
    """

    step = DELETE
    template_fields: Sequence[str] = (*STEP_TEMPLATE_FIELDS, "old_ca_guid", "new_ca_guid")

    def __init__(self, *, old_ca_guid: str, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.old_ca_guid = old_ca_guid
        self.new_ca_guid = new_ca_guid

    def intent(self) -> str:
        return f"delete the old CA {self.old_ca_guid}"

    def carry_over(self, context: Context, plan: RotationPlan) -> Any:
        if DELETE in plan.watermarks:
            context["ti"].xcom_push(key=WATERMARK_KEY, value=plan.watermarks[DELETE])
        return plan.old_ca_guid

    def _old_ca_present(self) -> bool:
        return old_ca_to_delete(self.authorities(), self.old_ca_guid, self.new_ca_guid) is not None

    def _delete(self, call: str) -> str:
        try:
            result = self.hook.delete_certificate_authority(self.old_ca_guid)
        except OpsManagerNotFoundError:
            self.log.info("CA %s was deleted meanwhile; nothing to delete", self.old_ca_guid)
        else:
            self.report_ca_call(call, result)
            self.log.info("Deleted the old CA %s", self.old_ca_guid)
        return self.old_ca_guid

    def run_step(self, context: Context) -> str:
        if not self._old_ca_present():
            self.log.info("CA %s is already gone; nothing to delete", self.old_ca_guid)
        else:
            call = "delete certificate authority"
            self.write_then_confirm(
                call,
                lambda: self._delete(call),
                lambda: None if self._old_ca_present() else self.old_ca_guid,
                reading=CAS,
            )
        self.push_watermark(context)
        return self.old_ca_guid
