"""Thin operators: one per Ops Manager CA call, Apply Changes, and the pre-flight and verification checks.

Every operator is safe to retry and to re-run: it first reads Ops Manager's state and does only what
is left. Writes are never re-sent blindly: when a write's outcome is unknown (connection dropped,
timeout, 502/503/504) the operator re-reads the state and either adopts the effect or fails the try,
and the next try decides again from state.

The rotation steps take the plan of :mod:`opsman.planning` (an XCom): a step the plan marks done,
or any step in a dry run, ends *skipped* with the reason in the log, after pushing the XComs later
steps need. Each state-changing step also pushes ``installation_watermark``: the id of the newest
installation once its change was made; the Apply Changes that follows counts only newer
installations as carrying the change.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, Context
from cryptography import x509

from opsman.compat import AirflowFailException, AirflowSkipException
from opsman.constants import (
    CREDENTIAL_ROLES,
    DEFAULT_CONN_ID,
    DEFAULT_WINDOW,
    WRITE_ROLES,
)
from opsman.custom_ca import CustomCertificateAuthority, load_custom_ca
from opsman.exceptions import (
    OpsManagerApiError,
    OpsManagerConfigError,
    OpsManagerError,
    OpsManagerNotFoundError,
    OpsManagerPermissionError,
    OpsManagerTransientError,
    RotationStateError,
)
from opsman.links import OpsManagerCertificatesLink, OpsManagerInstallationLink
from opsman.models import (
    ApplyChangesOptions,
    CaCallResult,
    CertificateAuthority,
    CertificateChanges,
    Installation,
    InstallationStatus,
    isoformat,
)
from opsman.planning import (
    ACTIVATE,
    DELETE,
    GENERATE,
    NOT_STARTED,
    REGENERATE,
    VERIFY,
    RotationPlan,
    plan_rotation,
)
from opsman.values import as_flag, format_table, optional_int, window_days

if TYPE_CHECKING:
    from opsman.hooks import OpsManagerHook

WATERMARK_KEY = "installation_watermark"
AFTER_INSTALLATION_KEY = "after_installation_id"
APPLY_MODES = ("api", "manual")
DIRECTOR_PRODUCT_TYPE = "p-bosh"


def format_ca_table(cas: Sequence[CertificateAuthority]) -> str:
    return format_table(
        ("GUID", "ACTIVE", "ISSUER", "CREATED", "EXPIRES"),
        [
            (
                ca.guid,
                "yes" if ca.active else "no",
                ca.issuer,
                isoformat(ca.created_at),
                isoformat(ca.expires_at),
            )
            for ca in cas
        ],
    )


def split_active(
    cas: Sequence[CertificateAuthority],
) -> tuple[CertificateAuthority, list[CertificateAuthority]]:
    active = [ca for ca in cas if ca.active]
    if len(active) != 1:
        raise RotationStateError(
            f"Ops Manager lists {len(active)} active certificate authorities; exactly one is expected. "
            "Check the Certificate Authorities in Ops Manager before rotating."
        )
    return active[0], [ca for ca in cas if not ca.active]


def is_newer(candidate: CertificateAuthority, than: CertificateAuthority) -> bool:
    a, b = candidate.created_at, than.created_at
    if a is None or b is None:
        raise RotationStateError(
            f"cannot tell whether CA {candidate.guid} is newer than CA {than.guid}: neither their certificates "
            "nor created_on give a creation time"
        )
    return a > b


class OpsManagerBaseOperator(BaseOperator):
    """Shared plumbing: the connection id, the hook, the CA listing and the watermark XCom."""

    template_fields: Sequence[str] = ("opsman_conn_id",)
    ui_color = "#e6f1f8"

    def __init__(self, *, opsman_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opsman_conn_id = opsman_conn_id

    @cached_property
    def hook(self) -> OpsManagerHook:
        from opsman.hooks import (
            OpsManagerHook,
        )  # when a task runs: parsing the DAG file does not need it (see constants)

        return OpsManagerHook(opsman_conn_id=self.opsman_conn_id)

    def authorities(self) -> list[CertificateAuthority]:
        cas = self.hook.list_certificate_authorities()
        self.log.info("Certificate authorities on Ops Manager:\n%s", format_ca_table(cas))
        return cas

    def push_watermark(self, context: Context, installations: Sequence[Installation] | None = None) -> int:
        if installations is None:
            installations = self.hook.list_installations()
        watermark = installations[0].id if installations else 0
        context["ti"].xcom_push(key=WATERMARK_KEY, value=watermark)
        return watermark

    def custom_ca(
        self, conn_id: Any, expires_within: str = DEFAULT_WINDOW
    ) -> CustomCertificateAuthority | None:
        """The CA to upload instead of generating one, validated; None when none is configured."""
        if not conn_id:
            return None
        return load_custom_ca(
            str(conn_id), now=dt.datetime.now(dt.UTC), window_days=window_days(expires_within)
        )

    def report_ca_call(self, what: str, result: CaCallResult) -> None:
        """Log a CA call's warnings and certificate lists; fail on certificates Ops Manager could not update."""
        self.log.info("%s: HTTP %d", what, result.status)
        for warning in result.warnings:
            self.log.warning("%s: Ops Manager warns: %s", what, warning)
        changes = result.changes
        if changes is None:
            return
        self.log.info("%s: certificates %s", what, changes.counts())
        for name in ("regenerated", "updated", "excluded"):
            for item in getattr(changes, name):
                self.log.info("%s: %s %s", what, name, CertificateChanges.describe(item))
        if changes.failed:
            names = ", ".join(CertificateChanges.describe(i) for i in changes.failed)
            raise OpsManagerError(
                f"{what}: Ops Manager could not update {len(changes.failed)} certificate(s): {names}. "
                "Fix them (see the Ops Manager certificates page) before continuing the rotation."
            )


class RotationStepOperator(OpsManagerBaseOperator):
    """A step of the rotation procedure: skipped when the plan says it is done, or in a dry run.

    :param plan: the plan from :class:`PlanRotationOperator` (templated; usually its XCom). Without a
        plan the step always runs (it still decides from Ops Manager's state).
    """

    step: ClassVar[str] = ""
    template_fields: Sequence[str] = (*OpsManagerBaseOperator.template_fields, "plan")

    def __init__(self, *, plan: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    @property
    def rotation_plan(self) -> RotationPlan | None:
        if self.plan is None:
            return None
        if isinstance(self.plan, RotationPlan):
            return self.plan
        if not isinstance(self.plan, dict):
            raise OpsManagerConfigError(f"plan must be the plan task's XCom (a mapping), got {self.plan!r}")
        return RotationPlan.from_json(self.plan)

    def carry_over(self, context: Context, plan: RotationPlan) -> Any:
        """XComs a skipped step still provides to later steps; the return value becomes its own XCom."""
        return None

    def intent(self) -> str:
        """What the step would do, for the dry-run log."""
        return f"run {self.step}"

    def execute(self, context: Context) -> Any:
        plan = self.rotation_plan
        if plan is not None and (plan.dry_run or plan.is_done(self.step)):
            value = self.carry_over(context, plan)
            if value is not None:
                context["ti"].xcom_push(key="return_value", value=value)
            reason = (
                f"already done: {plan.done[self.step]}"
                if plan.is_done(self.step)
                else f"dry run: would {self.intent()}"
            )
            self.log.info("Skipping %s (%s)", self.step, reason)
            raise AirflowSkipException(reason)
        return self.run_step(context)

    def run_step(self, context: Context) -> Any:
        raise NotImplementedError


class CheckOpsManagerOperator(OpsManagerBaseOperator):
    """Pre-flight: the credentials work; report the CAs and the certificates expiring within a window;
    apply the running-installation policy; record the watermark.

    :param expires_within: window for the expiring-certificates report, e.g. ``3m`` (templated).
    :param if_installation_running: ``wait`` (a later sensor waits for it) or ``fail`` (templated).
    """

    template_fields: Sequence[str] = (
        *OpsManagerBaseOperator.template_fields,
        "expires_within",
        "if_installation_running",
        "custom_ca_conn_id",
        "dry_run",
    )

    def __init__(
        self,
        *,
        expires_within: str = DEFAULT_WINDOW,
        if_installation_running: str = "wait",
        custom_ca_conn_id: Any = None,
        dry_run: Any = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.expires_within = expires_within
        self.if_installation_running = if_installation_running
        self.custom_ca_conn_id = custom_ca_conn_id
        self.dry_run = dry_run

    def check_role(self) -> str:
        """Refuse a role that may not write, before any write; say what a restricted role changes.

        The token's groups (its ``scope``) tell the role without a write. When they name no Ops
        Manager group, nothing can be told in advance: a missing permission then fails the first
        write with HTTP 403, not retried, naming the role needed.
        """
        scopes = self.hook.granted_scopes()
        groups = sorted(s for s in scopes or () if s.startswith("opsman."))
        if not groups:
            self.log.info(
                "The token names no Ops Manager role; a missing permission would fail the first write (HTTP 403)"
            )
            return "unknown"
        if not set(groups) & set(WRITE_ROLES):
            message = (
                f"the connection's UAA user or client has only {', '.join(groups)}, which may not change Ops Manager. "
                "A rotation needs a control role: Restricted Control (opsman.restricted_control) is enough; Full "
                "Control (opsman.full_control) or Administrator (opsman.admin) also work. Grant one in Ops Manager "
                "(or use another connection), then trigger again"
            )
            if as_flag(self.dry_run, "dry_run"):
                self.log.warning("Dry run continues (it only reads), but a real run would fail: %s", message)
                return "view"
            raise AirflowFailException(message)
        if not set(groups) & set(CREDENTIAL_ROLES):
            self.log.info(
                "Role %s may not read credentials: verification checks Ops Manager certificates by issue time "
                "instead of by their PEM",
                ", ".join(groups),
            )
            return "restricted_control"
        return "full"

    def execute(self, context: Context) -> dict[str, Any]:
        if self.if_installation_running not in ("wait", "fail"):
            raise OpsManagerConfigError(
                f"if_installation_running must be wait or fail, got {self.if_installation_running!r}"
            )
        window_days(self.expires_within)
        # Bad input is refused before the first call to Ops Manager.
        uploaded = self.custom_ca(self.custom_ca_conn_id, self.expires_within)
        if uploaded is not None:
            self.log.info(
                "Rotating to the CA of connection '%s' (SHA-256 %s)",
                self.custom_ca_conn_id,
                uploaded.fingerprint,
            )
        cas = self.authorities()
        role = self.check_role()
        expiring = self.hook.list_deployed_certificates(expires_within=self.expires_within)
        now = dt.datetime.now(dt.UTC)
        soon = [
            ca
            for ca in cas
            if ca.expires_at and ca.expires_at <= now + dt.timedelta(days=window_days(self.expires_within))
        ]
        self.log.info(
            "Certificates expiring within %s: %d deployed, %d CA(s)%s",
            self.expires_within,
            len(expiring),
            len(soon),
            (
                "\n"
                + format_table(
                    ("CERTIFICATE", "LOCATION", "VALID UNTIL", "PROCEDURE"),
                    [
                        (c.name, c.location, isoformat(c.valid_until), c.rotation_procedure_name)
                        for c in expiring
                    ],
                )
            )
            if expiring
            else "",
        )
        installations = self.hook.list_installations()
        running = (
            installations[0]
            if installations and installations[0].status is InstallationStatus.RUNNING
            else None
        )
        if running is not None:
            if self.if_installation_running == "fail":
                raise AirflowFailException(
                    f"installation {running.id} (started {isoformat(running.started_at)}) is running on Ops Manager; "
                    "this run was told not to wait (if_installation_running=fail). Trigger again when it has finished."
                )
            self.log.info(
                "Installation %d is running; the next task waits for it before the rotation starts",
                running.id,
            )
        watermark = self.push_watermark(context, installations)
        return {
            "certificate_authorities": [ca.summary() for ca in cas],
            "expiring_certificates": [c.name for c in expiring],
            "installation_watermark": watermark,
            "running_installation_id": running.id if running else None,
            "role": role,
        }


class PlanRotationOperator(OpsManagerBaseOperator):
    """Read the CAs and installations and decide which steps remain (see :mod:`opsman.planning`).

    :param recent_rotation_days: a single active CA younger than this is the end of a rotation,
        which this run only finishes (templated).
    :param initial_apply_changes: run the procedure's first Apply Changes (templated).
    :param dry_run: plan and log only; every step is skipped (templated).
    """

    template_fields: Sequence[str] = (
        *OpsManagerBaseOperator.template_fields,
        "recent_rotation_days",
        "initial_apply_changes",
        "dry_run",
        "custom_ca_conn_id",
        "expires_within",
    )

    def __init__(
        self,
        *,
        recent_rotation_days: Any = 7,
        initial_apply_changes: Any = True,
        dry_run: Any = False,
        custom_ca_conn_id: Any = None,
        expires_within: str = DEFAULT_WINDOW,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recent_rotation_days = recent_rotation_days
        self.initial_apply_changes = initial_apply_changes
        self.dry_run = dry_run
        self.custom_ca_conn_id = custom_ca_conn_id
        self.expires_within = expires_within

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            recent_days = float(self.recent_rotation_days)
        except (TypeError, ValueError):
            raise OpsManagerConfigError(
                f"recent_rotation_days must be a number, got {self.recent_rotation_days!r}"
            ) from None
        uploaded = self.custom_ca(self.custom_ca_conn_id, self.expires_within)
        plan = plan_rotation(
            self.authorities(),
            self.hook.list_installations(),
            now=dt.datetime.now(dt.UTC),
            recent_rotation_days=recent_days,
            initial_apply_changes=as_flag(self.initial_apply_changes, "initial_apply_changes"),
            target_fingerprint=uploaded.fingerprint if uploaded else None,
        )
        plan.dry_run = as_flag(self.dry_run, "dry_run")
        self.log.info("%s%s", "DRY RUN, nothing will change. " if plan.dry_run else "", plan.describe())
        return plan.to_json()


class PendingChangesCheckOperator(OpsManagerBaseOperator):
    """Refuse to start when products have staged changes an Apply Changes would deploy.

    Before the rotation starts, any staged change is someone else's. Once it has started, the
    BOSH Director's changes are taken as the rotation's own; other products' are still refused.
    Ops Manager does not say who staged a change, so ``allow_pending_changes`` is the escape hatch.

    :param plan: the rotation plan (templated).
    :param allow_pending_changes: deploy other staged changes too (templated).
    """

    template_fields: Sequence[str] = (
        *OpsManagerBaseOperator.template_fields,
        "plan",
        "allow_pending_changes",
    )

    def __init__(self, *, plan: Any = None, allow_pending_changes: Any = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.allow_pending_changes = allow_pending_changes

    def execute(self, context: Context) -> list[dict[str, str]]:
        changes = [c for c in self.hook.list_pending_changes() if c.is_change]
        if not changes:
            self.log.info("No staged changes besides the rotation's")
            return []
        types = {p.guid: p.type for p in self.hook.list_staged_products()}
        started = bool(self.plan) and self.plan.get("stage") != NOT_STARTED
        foreign = [c for c in changes if not (started and types.get(c.guid) == DIRECTOR_PRODUCT_TYPE)]
        listing = ", ".join(f"{c.guid} ({types.get(c.guid, '?')}: {c.action})" for c in changes)
        if foreign and not as_flag(self.allow_pending_changes, "allow_pending_changes"):
            raise AirflowFailException(
                f"Ops Manager has staged changes that an Apply Changes of this rotation would deploy: {listing}. "
                "Apply or revert them in Ops Manager first, or trigger with allow_pending_changes=true to deploy them too."
            )
        self.log.warning("Staged changes that this rotation's Apply Changes will deploy: %s", listing)
        return [{"guid": c.guid, "action": c.action} for c in changes]


class GenerateCertificateAuthorityOperator(RotationStepOperator):
    """Generate a new root CA (inactive), or upload the one of ``custom_ca_conn_id``; return its GUID.

    Idempotent: when an inactive CA newer than the active one already exists (an earlier try made it),
    or, for an upload, an inactive CA with the same certificate, it adopts that CA instead of making
    a second one. Any other extra CA is ambiguous: it fails and lists what it found.

    :param custom_ca_conn_id: connection holding ``certificate_pem``/``private_key_pem`` of a CA to
        upload instead of generating one (templated). See :mod:`opsman.custom_ca`.
    :param expires_within: the uploaded CA must outlive this window (templated).
    """

    step = GENERATE
    template_fields: Sequence[str] = (
        *RotationStepOperator.template_fields,
        "custom_ca_conn_id",
        "expires_within",
    )

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

    def _existing_new_ca(
        self, cas: Sequence[CertificateAuthority], uploaded: CustomCertificateAuthority | None = None
    ) -> CertificateAuthority | None:
        active, inactive = split_active(cas)
        if not inactive:
            return None
        if uploaded is not None:
            same = [ca for ca in inactive if ca.fingerprint == uploaded.fingerprint]
            if len(inactive) == 1 and same:
                return same[0]
            raise RotationStateError(
                f"besides the active CA {active.guid} Ops Manager has inactive CA(s) "
                f"{', '.join(ca.guid for ca in inactive)} that are not the CA to upload. Clean up first."
            )
        newer = [ca for ca in inactive if is_newer(ca, active)]
        if len(inactive) == 1 and len(newer) == 1:
            return newer[0]
        raise RotationStateError(
            f"cannot decide which CA to rotate to: besides the active CA {active.guid} Ops Manager has "
            f"{len(inactive)} inactive CA(s) ({', '.join(ca.guid for ca in inactive)}), "
            f"{len(newer)} of them newer than the active one. Finish or clean up the earlier rotation "
            "(delete stray inactive CAs) and trigger again."
        )

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

    def run_step(self, context: Context) -> str:
        uploaded = self.custom_ca(self.custom_ca_conn_id, self.expires_within)
        cas = self.authorities()
        existing = self._existing_new_ca(cas, uploaded)
        if existing is not None:
            self.log.info(
                "Adopting CA %s, made earlier and still inactive; not making another", existing.guid
            )
            new_ca = existing
        else:
            self._refuse_a_stale_plan(cas)
            try:
                if uploaded is not None:
                    result = self.hook.create_certificate_authority(
                        uploaded.cert_pem, uploaded.private_key_pem
                    )
                else:
                    result = self.hook.generate_certificate_authority()
            except OpsManagerTransientError:
                self.log.warning("The call's outcome is unknown; reading Ops Manager's CAs to find out")
                new_ca = self._existing_new_ca(self.authorities(), uploaded)
                if new_ca is None:
                    raise
                self.log.info("The interrupted generate call did create CA %s; adopting it", new_ca.guid)
            else:
                what = "create certificate authority" if uploaded else "generate certificate authority"
                self.report_ca_call(what, result)
                assert result.authority is not None
                new_ca = result.authority
                if new_ca.active:
                    raise RotationStateError(
                        f"Ops Manager made CA {new_ca.guid} active at once; expected inactive"
                    )
                self.log.info("%s: new CA %s (inactive), expires %s", what, new_ca.guid, new_ca.expires_on)
        self.push_watermark(context)
        return new_ca.guid


class VerifyCertificateAuthoritiesOperator(RotationStepOperator):
    """List the CAs, confirm the new CA is present and inactive, and return the old (active) CA's GUID.

    :param new_ca_guid: GUID of the CA generated by the previous step (templated).
    """

    step = VERIFY
    operator_extra_links = (OpsManagerCertificatesLink(),)
    template_fields: Sequence[str] = (*RotationStepOperator.template_fields, "new_ca_guid")

    def __init__(self, *, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid

    def intent(self) -> str:
        return f"confirm that the new CA {self.new_ca_guid or '(not generated yet)'} is listed and inactive"

    def carry_over(self, context: Context, plan: RotationPlan) -> Any:
        return plan.old_ca_guid

    def run_step(self, context: Context) -> str:
        cas = self.authorities()
        new_ca = {ca.guid: ca for ca in cas}.get(self.new_ca_guid)
        if new_ca is None:
            raise RotationStateError(
                f"the new CA {self.new_ca_guid} is not on Ops Manager; someone deleted it. Trigger a new run."
            )
        others = [ca for ca in cas if ca.guid != new_ca.guid]
        if new_ca.active:
            # Reached again after activation (a retry): the old CA is then the one other CA.
            if len(others) != 1:
                raise RotationStateError(f"new CA {new_ca.guid} is active and {len(others)} other CAs exist")
            old_ca = others[0]
            self.log.info("New CA %s is already active; the old CA is %s", new_ca.guid, old_ca.guid)
        else:
            old_ca, _ = split_active(cas)
            self.log.info(
                "New CA %s is present and inactive; the active (old) CA is %s", new_ca.guid, old_ca.guid
            )
        return old_ca.guid


class ActivateCertificateAuthorityOperator(RotationStepOperator):
    """Activate the new CA (deactivating the old one). A no-op when it is already active.

    :param new_ca_guid: GUID of the CA to activate (templated).
    """

    step = ACTIVATE
    template_fields: Sequence[str] = (*RotationStepOperator.template_fields, "new_ca_guid")

    def __init__(self, *, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid

    def intent(self) -> str:
        return f"activate the new CA {self.new_ca_guid or '(not generated yet)'}"

    def _state(self) -> CertificateAuthority:
        ca = {c.guid: c for c in self.authorities()}.get(self.new_ca_guid)
        if ca is None:
            raise RotationStateError(f"CA {self.new_ca_guid} is not on Ops Manager; nothing to activate")
        return ca

    def run_step(self, context: Context) -> str:
        if self._state().active:
            self.log.info("CA %s is already active; nothing to do", self.new_ca_guid)
        else:
            try:
                result = self.hook.activate_certificate_authority(self.new_ca_guid)
            except OpsManagerTransientError:
                self.log.warning(
                    "The activate call's outcome is unknown; reading Ops Manager's CAs to find out"
                )
                if not self._state().active:
                    raise
                self.log.info("The interrupted activate call did activate CA %s", self.new_ca_guid)
            else:
                self.report_ca_call("activate certificate authority", result)
                self.log.info("Activated CA %s", self.new_ca_guid)
        self.push_watermark(context)
        return self.new_ca_guid


class RegenerateCertificatesOperator(RotationStepOperator):
    """Regenerate the non-configurable leaf certificates under the active CA.

    Ops Manager shows nothing that says whether regenerate was called, so a retry calls it again. That
    is safe: a second regenerate only re-issues the leaves once more before the next Apply Changes.

    :param new_ca_guid: GUID of the CA that must be active before regenerating (templated).
    """

    step = REGENERATE
    template_fields: Sequence[str] = (*RotationStepOperator.template_fields, "new_ca_guid")

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
            self.log.warning(
                "The regenerate call's outcome is unknown (%s); calling it once more (safe to repeat)", err
            )
            result = self.hook.regenerate_certificates()
        self.report_ca_call("regenerate certificates", result)
        self.log.info("Regenerated the non-configurable leaf certificates under CA %s", active.guid)
        self.push_watermark(context)
        return result.changes.counts() if result.changes else None


class DeleteCertificateAuthorityOperator(RotationStepOperator):
    """Delete the old CA. Refuses the active CA and the new CA; a no-op when the old CA is gone.

    :param old_ca_guid: GUID of the CA to delete (templated).
    :param new_ca_guid: GUID of the CA that must stay, and be active (templated).
    """

    step = DELETE
    template_fields: Sequence[str] = (*RotationStepOperator.template_fields, "old_ca_guid", "new_ca_guid")

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
        cas = {ca.guid: ca for ca in self.authorities()}
        if self.old_ca_guid == self.new_ca_guid:
            raise RotationStateError(f"refusing to delete CA {self.old_ca_guid}: it is the new CA")
        new_ca = cas.get(self.new_ca_guid)
        if new_ca is None or not new_ca.active:
            raise RotationStateError(
                f"refusing to delete CA {self.old_ca_guid}: the new CA {self.new_ca_guid} is "
                f"{'missing' if new_ca is None else 'not active'}, so the old CA may still be needed"
            )
        old_ca = cas.get(self.old_ca_guid)
        if old_ca is not None and old_ca.active:
            raise RotationStateError(f"refusing to delete CA {self.old_ca_guid}: it is the active CA")
        return old_ca is not None

    def run_step(self, context: Context) -> str:
        if not self._old_ca_present():
            self.log.info("CA %s is already gone; nothing to delete", self.old_ca_guid)
        else:
            try:
                result = self.hook.delete_certificate_authority(self.old_ca_guid)
            except OpsManagerNotFoundError:
                self.log.info("CA %s was deleted meanwhile; nothing to delete", self.old_ca_guid)
            except OpsManagerTransientError:
                self.log.warning(
                    "The delete call's outcome is unknown; reading Ops Manager's CAs to find out"
                )
                if self._old_ca_present():
                    raise
                self.log.info("The interrupted delete call did delete CA %s", self.old_ca_guid)
            else:
                self.report_ca_call("delete certificate authority", result)
                self.log.info("Deleted the old CA %s", self.old_ca_guid)
        self.push_watermark(context)
        return self.old_ca_guid


class ApplyChangesOperator(RotationStepOperator):
    """Start an Apply Changes that carries the previous step's change, or attach to one that does.

    Decides from the installations list, using the previous step's watermark (the newest
    installation id once its change was made):

    - a running installation newer than the watermark: attach to it (no second Apply Changes);
    - a running installation not newer: it lacks the change; wait for it to end, then start one;
    - a succeeded installation newer than the watermark: the change is deployed, nothing to start;
    - otherwise (none, or the newest one failed): start one.

    In ``manual`` mode it starts nothing: the sensor waits for a person to click Apply Changes.
    Returns the installation id (``None`` in manual mode); :class:`~opsman.sensors.ApplyChangesSensor` waits for it.

    :param step: the plan step this Apply Changes is (e.g. ``apply_new_ca``).
    :param after_installation_id: the previous step's watermark (templated); None for "no baseline".
    :param deploy_products: ``"all"``, ``"none"`` or a list of product GUIDs or names (templated).
    :param errands: ``{product guid or name: {"run_post_deploy": {errand: true|false|"default"}}}`` (templated).
    :param recreate_vms: recreate every VM during this Apply Changes (templated).
    :param ignore_warnings: bypass ignorable verifier warnings (templated).
    :param force_latest_variables: BOSH ``--force-latest-variables`` (templated).
    :param apply_changes_mode: ``api`` (start it) or ``manual`` (a person clicks Apply Changes) (templated).
    :param wait_poll_seconds: poll interval while waiting for someone else's installation to end (templated).
    """

    operator_extra_links = (OpsManagerInstallationLink(),)
    template_fields: Sequence[str] = (
        *RotationStepOperator.template_fields,
        "after_installation_id",
        "deploy_products",
        "errands",
        "recreate_vms",
        "ignore_warnings",
        "force_latest_variables",
        "apply_changes_mode",
        "wait_poll_seconds",
    )

    def __init__(
        self,
        *,
        step: str = "apply_changes",
        after_installation_id: Any = None,
        deploy_products: Any = "all",
        errands: Any = None,
        recreate_vms: Any = False,
        ignore_warnings: Any = False,
        force_latest_variables: Any = False,
        apply_changes_mode: Any = "api",
        wait_poll_seconds: Any = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.after_installation_id = after_installation_id
        self.deploy_products = deploy_products
        self.errands = errands
        self.recreate_vms = recreate_vms
        self.ignore_warnings = ignore_warnings
        self.force_latest_variables = force_latest_variables
        self.apply_changes_mode = apply_changes_mode
        self.wait_poll_seconds = wait_poll_seconds

    def intent(self) -> str:
        return f"start an Apply Changes (deploy_products={self.deploy_products!r}, errands={self.errands or {}!r})"

    def _product_guids(self) -> dict[str, str]:
        """Product name (type) or GUID → GUID; deployed GUIDs win over staged ones, as in om."""
        known: dict[str, str] = {}
        for product in [*self.hook.list_staged_products(), *self.hook.list_deployed_products()]:
            known[product.type] = product.guid
            known[product.guid] = product.guid
        return known

    def options(self) -> ApplyChangesOptions:
        products = self.deploy_products
        if isinstance(products, str) and products not in ("all", "none"):
            products = [p.strip() for p in products.split(",") if p.strip()]
        if not isinstance(products, str):
            if (
                not isinstance(products, (list, tuple))
                or not products
                or not all(isinstance(p, str) for p in products)
            ):
                raise OpsManagerConfigError(
                    f"deploy_products must be 'all', 'none' or a non-empty list of product GUIDs or names, got {products!r}"
                )
        errands = self.errands or {}
        if not isinstance(errands, dict) or not all(isinstance(v, dict) for v in errands.values()):
            raise OpsManagerConfigError(
                f"errands must map a product GUID or name to {{'run_post_deploy': {{errand: true|false|'default'}}}}, got {errands!r}"
            )
        if not isinstance(products, str) or errands:
            known = self._product_guids()
            unknown = [
                p for p in ([] if isinstance(products, str) else products) + list(errands) if p not in known
            ]
            if unknown:
                raise OpsManagerConfigError(
                    f"unknown product(s) {', '.join(unknown)}: Ops Manager has {', '.join(sorted(set(known)))}"
                )
            if not isinstance(products, str):
                products = tuple(known[p] for p in products)
            errands = {known[p]: v for p, v in errands.items()}
        return ApplyChangesOptions(
            deploy_products=products,
            errands=errands,
            ignore_warnings=as_flag(self.ignore_warnings, "ignore_warnings"),
            force_latest_variables=as_flag(self.force_latest_variables, "force_latest_variables"),
        )

    def _decide(self, after: int | None) -> Installation | None:
        """The installation that satisfies this step, waiting out one that cannot; None: start one."""
        while True:
            installations = self.hook.list_installations()
            if not installations:
                return None
            newest = installations[0]
            is_ours = after is not None and newest.id > after
            if newest.status is InstallationStatus.RUNNING:
                if is_ours:
                    self.log.info(
                        "Installation %d is running and carries this step's change; attaching", newest.id
                    )
                    return newest
                self.log.info(
                    "Installation %d started before this step's change and is still running; waiting for it to "
                    "end before starting a new Apply Changes (Ops Manager runs one at a time)",
                    newest.id,
                )
                time.sleep(float(self.wait_poll_seconds))
                continue
            if is_ours and newest.status.is_successful:
                self.log.info(
                    "Installation %d succeeded after this step's change; nothing to start", newest.id
                )
                return newest
            return None

    def run_step(self, context: Context) -> int | None:
        if self.apply_changes_mode not in APPLY_MODES:
            raise OpsManagerConfigError(
                f"apply_changes_mode must be api or manual, got {self.apply_changes_mode!r}"
            )
        after = optional_int(self.after_installation_id, "after_installation_id")
        if self.apply_changes_mode == "manual":
            context["ti"].xcom_push(key=AFTER_INSTALLATION_KEY, value=after or 0)
            self.log.info(
                "Manual mode: click Apply Changes in Ops Manager now. The next task waits for an installation "
                "newer than %s to start and succeed.",
                after or 0,
            )
            return None
        options = self.options()
        found = self._decide(after)
        if found is not None:
            return found.id
        if as_flag(self.recreate_vms, "recreate_vms"):
            self.hook.set_recreate_vms_on_next_deploy()
            self.log.info("Set the director to recreate all VMs during this Apply Changes")
        before = self.hook.list_installations()
        newest_before = before[0].id if before else 0
        self.log.info("Starting Apply Changes: %s", options.request_body())
        try:
            installation_id = self.hook.apply_changes(options)
        except OpsManagerApiError as err:
            # Outcome unknown, or refused because someone started one meanwhile. No source confirms
            # what Ops Manager answers then (409? 422 with errors?), so any refusal is checked against
            # the installations: a newer one carries this step's change, and we attach to it.
            self.log.warning("Starting Apply Changes did not answer cleanly (%s); reading installations", err)
            after_post = self.hook.list_installations()
            if not (after_post and after_post[0].id > newest_before):
                raise
            installation_id = after_post[0].id
            self.log.info("Installation %d was started; attaching to it", installation_id)
        else:
            self.log.info("Started Apply Changes: installation %d", installation_id)
        return installation_id


def _key_identifier(pem: str, extension: type) -> str | None:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        value = cert.extensions.get_extension_for_class(extension).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    return (value.key_identifier if extension is x509.AuthorityKeyIdentifier else value.digest).hex()


def _refusal(err: OpsManagerApiError) -> str:
    return (
        f"PEM read refused: HTTP {err.status}" if err.status == 403 else f"PEM not found: HTTP {err.status}"
    )


class VerifyRotationOperator(OpsManagerBaseOperator):
    """Prove the rotation: one CA left, the new one, active and not expiring soon; every rotated leaf
    chains to it and none to the old CA.

    Leaves whose PEM the Ops Manager API serves (``location: ops_manager``) are checked by key
    identifiers: the leaf's authority key identifier against the CAs' subject key identifiers.
    CredHub leaves have no PEM in the Ops Manager API, and a restricted role may not read PEMs (403),
    nor does every Ops Manager serve every reference (404): those are checked by issue time (issued
    after the new CA was made); each row says how it was checked and why, and ``checked_by`` counts both. Certificates with their own procedure (CAs such as the Services TLS CA,
    configurable ones) are listed as excluded.

    :param new_ca_guid: the CA the rotation moved to (templated).
    :param old_ca_key_id: the old CA's subject key identifier, hex (templated).
    :param expires_within: the new CA must not expire within this window (templated).
    """

    operator_extra_links = (OpsManagerCertificatesLink(),)
    template_fields: Sequence[str] = (
        *OpsManagerBaseOperator.template_fields,
        "new_ca_guid",
        "old_ca_key_id",
        "expires_within",
        "dry_run",
    )

    def __init__(
        self,
        *,
        new_ca_guid: Any,
        old_ca_key_id: Any = None,
        expires_within: str = DEFAULT_WINDOW,
        dry_run: Any = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid
        self.old_ca_key_id = old_ca_key_id
        self.expires_within = expires_within
        self.dry_run = dry_run

    def _pem(self, cert: Any, refused: str | None) -> tuple[str | None, str]:
        """The certificate's PEM, or None and why not (a restricted role's 403, a 404): then its issue time decides."""
        if refused is not None:
            return None, refused
        try:
            return self.hook.get_deployed_certificate_pem(cert.product_guid, cert.property_reference), ""
        except (OpsManagerPermissionError, OpsManagerNotFoundError) as err:
            self.log.info("Cannot read the PEM of %s (%s); checking it by issue time", cert.name, err)
            return None, _refusal(err)

    def execute(self, context: Context) -> dict[str, Any]:
        if as_flag(self.dry_run, "dry_run"):
            raise AirflowSkipException("dry run: nothing was rotated, nothing to verify")
        problems: list[str] = []
        cas = self.authorities()
        new_ca = next((ca for ca in cas if ca.guid == self.new_ca_guid), None)
        if [ca.guid for ca in cas] != [self.new_ca_guid]:
            problems.append(
                f"expected exactly one CA, the new {self.new_ca_guid}; found {', '.join(ca.guid for ca in cas)}"
            )
        if new_ca is not None and not new_ca.active:
            problems.append(f"the new CA {new_ca.guid} is not active")
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(days=window_days(self.expires_within))
        if new_ca is not None and new_ca.expires_at is not None and new_ca.expires_at <= deadline:
            problems.append(
                f"the new CA expires {isoformat(new_ca.expires_at)}, within {self.expires_within}"
            )
        new_key = new_ca.subject_key_identifier if new_ca else None

        rows, excluded = [], []
        refused: str | None = None  # after one 403 every credential read of this role is refused: stop asking
        for cert in self.hook.list_deployed_certificates():
            if cert.configurable or cert.is_ca:
                excluded.append(
                    {
                        "certificate": cert.name,
                        "procedure": cert.rotation_procedure_name
                        or (
                            "configurable: rotate in the Ops Manager UI"
                            if cert.configurable
                            else "a CA with its own procedure"
                        ),
                    }
                )
                continue
            pem, why_not = None, "CredHub: no PEM in the Ops Manager API"
            if cert.location == "ops_manager" and cert.product_guid and cert.property_reference:
                pem, why_not = self._pem(cert, refused)
                if pem is None and why_not.startswith("PEM read refused"):
                    refused = why_not
            if pem is not None:
                aki = _key_identifier(pem, x509.AuthorityKeyIdentifier)
                if aki is not None and aki == new_key:
                    verdict, how = "new CA", "key identifier"
                elif aki is not None and aki == self.old_ca_key_id:
                    verdict, how = "OLD CA", "key identifier"
                else:
                    verdict, how = "unknown issuer", "key identifier"
            else:
                made = new_ca.created_at if new_ca else None
                issued_after = cert.valid_from is not None and made is not None and cert.valid_from >= made
                verdict, how = ("new CA" if issued_after else "OLD CA"), f"issue time ({why_not})"
            rows.append(
                {
                    "certificate": cert.name,
                    "location": cert.location,
                    "valid_until": isoformat(cert.valid_until),
                    "signed_by": verdict,
                    "checked_by": how,
                }
            )
        stale = [r["certificate"] for r in rows if r["signed_by"] != "new CA"]
        if stale:
            problems.append(
                f"{len(stale)} deployed certificate(s) do not chain to the new CA: {', '.join(stale)}"
            )
        self.log.info(
            "Deployed certificates after the rotation:\n%s",
            format_table(
                ("CERTIFICATE", "LOCATION", "VALID UNTIL", "SIGNED BY", "CHECKED BY"),
                [list(r.values()) for r in rows],
            ),
        )
        for item in excluded:
            self.log.info(
                "Excluded, needs its own procedure: %s (%s)", item["certificate"], item["procedure"]
            )
        checked = {
            "key identifier": sum(r["checked_by"] == "key identifier" for r in rows),
            "issue time": sum(r["checked_by"].startswith("issue time") for r in rows),
        }
        self.log.info(
            "Checked %d certificate(s) by key identifier and %d by issue time",
            checked["key identifier"],
            checked["issue time"],
        )
        report = {
            "new_ca": new_ca.summary() if new_ca else None,
            "certificates": rows,
            "excluded": excluded,
            "checked_by": checked,
            "problems": problems,
        }
        if problems:
            raise AirflowFailException("Rotation verification failed: " + "; ".join(problems))
        self.log.info(
            "Verified: CA %s is the only CA, active, and signs all %d rotated certificates",
            self.new_ca_guid,
            len(rows),
        )
        return report
