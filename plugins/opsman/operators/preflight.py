"""Pre-flight: the credentials and role work, the report of what expires, the plan, no foreign staged changes.

Nothing here writes to Ops Manager: these tasks refuse bad input and unsafe states before the first
write of the rotation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from opsman.compat import AirflowFailException
from opsman.constants import CREDENTIAL_ROLES, DEFAULT_WINDOW, WRITE_ROLES
from opsman.exceptions import OpsManagerConfigError
from opsman.models import InstallationStatus, isoformat
from opsman.operators.base import STEP_TEMPLATE_FIELDS, OpsManagerBaseOperator
from opsman.planning import NOT_STARTED, plan_rotation
from opsman.values import as_flag, format_table, window_days

#: The BOSH Director's product type: its staged changes are the rotation's own once it started.
DIRECTOR_PRODUCT_TYPE = "p-bosh"


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

    template_fields: Sequence[str] = (*STEP_TEMPLATE_FIELDS, "allow_pending_changes")

    def __init__(self, *, allow_pending_changes: Any = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
