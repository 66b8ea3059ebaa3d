"""One thin operator per Ops Manager CA call, plus Apply Changes.

Every operator is safe to retry and to re-run: it first reads Ops Manager's state and does only what
is left. Writes are never re-sent blindly: when a write's outcome is unknown (connection dropped,
timeout, 502/503/504) the operator re-reads the state and either adopts the effect or fails the try,
and the next try decides again from state.

Each state-changing operator pushes the XCom ``installation_watermark``: the id of the newest
installation once its change was made. The Apply Changes that follows counts only installations with
a larger id as carrying that change.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context

from opsman.exceptions import (
    OpsManagerApiError,
    OpsManagerConfigError,
    OpsManagerError,
    OpsManagerNotFoundError,
    OpsManagerTransientError,
    RotationStateError,
)
from opsman.hooks import DEFAULT_CONN_ID, OpsManagerHook
from opsman.models import (
    ApplyChangesOptions,
    CaCallResult,
    CertificateAuthority,
    CertificateChanges,
    Installation,
    InstallationStatus,
)

WATERMARK_KEY = "installation_watermark"


def format_ca_table(cas: Sequence[CertificateAuthority]) -> str:
    rows = [("GUID", "ACTIVE", "ISSUER", "CREATED", "EXPIRES")]
    for ca in cas:
        s = ca.summary()
        rows.append((ca.guid, "yes" if ca.active else "no", ca.issuer, s["created_at"] or "?", s["expires_at"] or "?"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def optional_int(value: Any, name: str) -> int | None:
    """An int from an XCom or template value; ``None``/``"None"``/``""`` mean "not given"."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OpsManagerConfigError(f"{name} must be an integer, got {value!r}") from None


class OpsManagerBaseOperator(BaseOperator):
    """Shared plumbing: the connection id, the hook, and the watermark XCom."""

    template_fields: Sequence[str] = ("opsman_conn_id",)
    ui_color = "#e6f1f8"

    def __init__(self, *, opsman_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opsman_conn_id = opsman_conn_id

    @cached_property
    def hook(self) -> OpsManagerHook:
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


def split_active(cas: Sequence[CertificateAuthority]) -> tuple[CertificateAuthority, list[CertificateAuthority]]:
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


class GenerateCertificateAuthorityOperator(OpsManagerBaseOperator):
    """Generate a new root CA (inactive) and return its GUID.

    Idempotent: when an inactive CA newer than the active one already exists (an earlier try made it),
    it adopts that CA instead of generating a second one. Any other extra CA is ambiguous: it fails
    and lists what it found.
    """

    def _existing_new_ca(self, cas: Sequence[CertificateAuthority]) -> CertificateAuthority | None:
        active, inactive = split_active(cas)
        if not inactive:
            return None
        newer = [ca for ca in inactive if is_newer(ca, active)]
        if len(inactive) == 1 and len(newer) == 1:
            return newer[0]
        raise RotationStateError(
            f"cannot decide which CA to rotate to: besides the active CA {active.guid} Ops Manager has "
            f"{len(inactive)} inactive CA(s) ({', '.join(ca.guid for ca in inactive)}), "
            f"{len(newer)} of them newer than the active one. Finish or clean up the earlier rotation "
            "(delete stray inactive CAs) and trigger again."
        )

    def execute(self, context: Context) -> str:
        existing = self._existing_new_ca(self.authorities())
        if existing is not None:
            self.log.info("Adopting CA %s, generated earlier and still inactive; not generating another", existing.guid)
            new_ca = existing
        else:
            try:
                result = self.hook.generate_certificate_authority()
            except OpsManagerTransientError:
                self.log.warning("The generate call's outcome is unknown; reading Ops Manager's CAs to find out")
                new_ca = self._existing_new_ca(self.authorities())
                if new_ca is None:
                    raise
                self.log.info("The interrupted generate call did create CA %s; adopting it", new_ca.guid)
            else:
                self.report_ca_call("generate certificate authority", result)
                assert result.authority is not None
                new_ca = result.authority
                if new_ca.active:
                    raise RotationStateError(f"Ops Manager generated CA {new_ca.guid} as active; expected inactive")
                self.log.info("Generated new CA %s (inactive), expires %s", new_ca.guid, new_ca.expires_on)
        self.push_watermark(context)
        return new_ca.guid


class VerifyCertificateAuthoritiesOperator(OpsManagerBaseOperator):
    """List the CAs, confirm the new CA is present and inactive, and return the old (active) CA's GUID.

    :param new_ca_guid: GUID of the CA generated by the previous step (templated).
    """

    template_fields: Sequence[str] = (*OpsManagerBaseOperator.template_fields, "new_ca_guid")

    def __init__(self, *, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid

    def execute(self, context: Context) -> str:
        cas = self.authorities()
        by_guid = {ca.guid: ca for ca in cas}
        new_ca = by_guid.get(self.new_ca_guid)
        if new_ca is None:
            raise RotationStateError(
                f"the new CA {self.new_ca_guid} is not on Ops Manager; someone deleted it. Trigger a new run."
            )
        others = [ca for ca in cas if ca.guid != new_ca.guid]
        if new_ca.active:
            # Reached again after activation (a re-run): the old CA is then the one other CA.
            if len(others) != 1:
                raise RotationStateError(f"new CA {new_ca.guid} is active and {len(others)} other CAs exist")
            old_ca = others[0]
            self.log.info("New CA %s is already active; the old CA is %s", new_ca.guid, old_ca.guid)
        else:
            old_ca, _ = split_active(cas)
            self.log.info("New CA %s is present and inactive; the active (old) CA is %s", new_ca.guid, old_ca.guid)
        return old_ca.guid


class ActivateCertificateAuthorityOperator(OpsManagerBaseOperator):
    """Activate the new CA (deactivating the old one). A no-op when it is already active.

    :param new_ca_guid: GUID of the CA to activate (templated).
    """

    template_fields: Sequence[str] = (*OpsManagerBaseOperator.template_fields, "new_ca_guid")

    def __init__(self, *, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid

    def _state(self) -> CertificateAuthority:
        ca = {c.guid: c for c in self.authorities()}.get(self.new_ca_guid)
        if ca is None:
            raise RotationStateError(f"CA {self.new_ca_guid} is not on Ops Manager; nothing to activate")
        return ca

    def execute(self, context: Context) -> str:
        if self._state().active:
            self.log.info("CA %s is already active; nothing to do", self.new_ca_guid)
        else:
            try:
                result = self.hook.activate_certificate_authority(self.new_ca_guid)
            except OpsManagerTransientError:
                self.log.warning("The activate call's outcome is unknown; reading Ops Manager's CAs to find out")
                if not self._state().active:
                    raise
                self.log.info("The interrupted activate call did activate CA %s", self.new_ca_guid)
            else:
                self.report_ca_call("activate certificate authority", result)
                self.log.info("Activated CA %s", self.new_ca_guid)
        self.push_watermark(context)
        return self.new_ca_guid


class RegenerateCertificatesOperator(OpsManagerBaseOperator):
    """Regenerate the non-configurable leaf certificates under the active CA.

    Ops Manager shows nothing that says whether regenerate was called, so a retry calls it again. That
    is safe: a second regenerate only re-issues the leaves once more before the next Apply Changes.

    :param new_ca_guid: GUID of the CA that must be active before regenerating (templated).
    """

    template_fields: Sequence[str] = (*OpsManagerBaseOperator.template_fields, "new_ca_guid")

    def __init__(self, *, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid

    def execute(self, context: Context) -> dict[str, int] | None:
        active, _ = split_active(self.authorities())
        if active.guid != self.new_ca_guid:
            raise RotationStateError(
                f"the active CA is {active.guid}, not the new CA {self.new_ca_guid}: regenerating now would "
                "re-issue leaves under the old CA. Activate the new CA first."
            )
        try:
            result = self.hook.regenerate_certificates()
        except OpsManagerTransientError as err:
            self.log.warning("The regenerate call's outcome is unknown (%s); calling it once more (safe to repeat)", err)
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

    template_fields: Sequence[str] = (*OpsManagerBaseOperator.template_fields, "old_ca_guid", "new_ca_guid")

    def __init__(self, *, old_ca_guid: str, new_ca_guid: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.old_ca_guid = old_ca_guid
        self.new_ca_guid = new_ca_guid

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

    def execute(self, context: Context) -> str:
        if not self._old_ca_present():
            self.log.info("CA %s is already gone; nothing to delete", self.old_ca_guid)
        else:
            try:
                result = self.hook.delete_certificate_authority(self.old_ca_guid)
            except OpsManagerNotFoundError:
                self.log.info("CA %s was deleted meanwhile; nothing to delete", self.old_ca_guid)
            except OpsManagerTransientError:
                self.log.warning("The delete call's outcome is unknown; reading Ops Manager's CAs to find out")
                if self._old_ca_present():
                    raise
                self.log.info("The interrupted delete call did delete CA %s", self.old_ca_guid)
            else:
                self.report_ca_call("delete certificate authority", result)
                self.log.info("Deleted the old CA %s", self.old_ca_guid)
        self.push_watermark(context)
        return self.old_ca_guid


class ApplyChangesOperator(OpsManagerBaseOperator):
    """Start an Apply Changes that carries the previous step's change, or attach to one that does.

    Decides from the installations list, using the previous step's watermark (the newest
    installation id once its change was made):

    - a running installation newer than the watermark: attach to it (no second Apply Changes);
    - a running installation not newer: it lacks the change; wait for it to end, then start one;
    - a succeeded installation newer than the watermark: the change is deployed, nothing to start;
    - otherwise (none, or the newest one failed): start one.

    Returns the installation id; :class:`~opsman.sensors.ApplyChangesSensor` waits for it.

    :param after_installation_id: the previous step's watermark (templated); None for "no baseline".
    :param deploy_products: ``"all"``, ``"none"`` or a list of product GUIDs (templated).
    :param errands: ``{product_guid: {"run_post_deploy": {errand: true|false|"default"}}}`` (templated).
    :param ignore_warnings: bypass ignorable verifier warnings.
    :param force_latest_variables: BOSH ``--force-latest-variables``.
    :param wait_poll_seconds: poll interval while waiting for someone else's installation to end.
    """

    template_fields: Sequence[str] = (
        *OpsManagerBaseOperator.template_fields,
        "after_installation_id",
        "deploy_products",
        "errands",
        "ignore_warnings",
        "force_latest_variables",
    )

    def __init__(
        self,
        *,
        after_installation_id: Any = None,
        deploy_products: Any = "all",
        errands: Any = None,
        ignore_warnings: Any = False,
        force_latest_variables: Any = False,
        wait_poll_seconds: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.after_installation_id = after_installation_id
        self.deploy_products = deploy_products
        self.errands = errands
        self.ignore_warnings = ignore_warnings
        self.force_latest_variables = force_latest_variables
        self.wait_poll_seconds = wait_poll_seconds

    def options(self) -> ApplyChangesOptions:
        products = self.deploy_products
        if isinstance(products, str) and products not in ("all", "none"):
            products = [p.strip() for p in products.split(",") if p.strip()]
        if not isinstance(products, str):
            if not isinstance(products, (list, tuple)) or not products or not all(isinstance(p, str) for p in products):
                raise OpsManagerConfigError(
                    f"deploy_products must be 'all', 'none' or a non-empty list of product GUIDs, got {products!r}"
                )
            products = tuple(products)
        errands = self.errands or {}
        if not isinstance(errands, dict):
            raise OpsManagerConfigError(f"errands must be a mapping of product GUID to errand settings, got {errands!r}")
        return ApplyChangesOptions(
            deploy_products=products,
            errands=errands,
            ignore_warnings=str(self.ignore_warnings).lower() == "true",
            force_latest_variables=str(self.force_latest_variables).lower() == "true",
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
                    self.log.info("Installation %d is running and carries this step's change; attaching", newest.id)
                    return newest
                self.log.info(
                    "Installation %d started before this step's change and is still running; waiting for it to "
                    "end before starting a new Apply Changes (Ops Manager runs one at a time)", newest.id
                )
                time.sleep(self.wait_poll_seconds)
                continue
            if is_ours and newest.status.is_successful:
                self.log.info("Installation %d succeeded after this step's change; nothing to start", newest.id)
                return newest
            return None

    def execute(self, context: Context) -> int:
        options = self.options()
        after = optional_int(self.after_installation_id, "after_installation_id")
        found = self._decide(after)
        if found is not None:
            return found.id
        before = self.hook.list_installations()
        newest_before = before[0].id if before else 0
        self.log.info("Starting Apply Changes: %s", options.request_body())
        try:
            installation_id = self.hook.apply_changes(options)
        except (OpsManagerTransientError, OpsManagerApiError) as err:
            if isinstance(err, OpsManagerApiError) and not isinstance(err, OpsManagerTransientError) and err.status != 409:
                raise
            # Outcome unknown, or someone else started one meanwhile: look before doing anything else.
            self.log.warning("Starting Apply Changes did not answer cleanly (%s); reading installations", err)
            after_post = self.hook.list_installations()
            if after_post and after_post[0].id > newest_before:
                installation_id = after_post[0].id
                self.log.info("Installation %d was started; attaching to it", installation_id)
            else:
                raise
        else:
            self.log.info("Started Apply Changes: installation %d", installation_id)
        return installation_id


class CheckOpsManagerOperator(OpsManagerBaseOperator):
    """Pre-flight: the credentials work, list the CAs and the last installations, record the watermark.

    Returns a JSON summary of the CAs and installations seen (no PEM, no secrets).
    """

    def execute(self, context: Context) -> dict[str, Any]:
        cas = self.authorities()
        split_active(cas)
        installations = self.hook.list_installations()
        for installation in installations[:5]:
            self.log.info("Installation %d: %s", installation.id, installation.summary())
        watermark = self.push_watermark(context, installations)
        return {
            "certificate_authorities": [ca.summary() for ca in cas],
            "installation_watermark": watermark,
            "installation_running": bool(installations and installations[0].status is InstallationStatus.RUNNING),
        }
