"""The shared base operator and the XCom keys the rotation's steps hand to each other.

Every operator is safe to retry and to re-run: it first reads Ops Manager's state and does only what
is left. Writes are never re-sent blindly: :meth:`OpsManagerBaseOperator.write_then_confirm` makes a
write and, when its outcome is unknown (connection dropped, timeout, 502/503/504), re-reads the state
and either adopts the effect or fails the try; the next try decides again from state.

The rotation steps take the plan of :mod:`opsman.planning` (an XCom): a step the plan marks done,
or any step in a dry run, ends *skipped* with the reason in the log, after pushing the XComs later
steps need. Each state-changing step also pushes ``installation_watermark``: the id of the newest
installation once its change was made; the Apply Changes that follows counts only newer
installations as carrying the change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow.sdk import BaseOperator, Context

from opsman.compat import AirflowSkipException
from opsman.constants import DEFAULT_CONN_ID, DEFAULT_WINDOW
from opsman.custom_ca import CustomCertificateAuthority, load_custom_ca
from opsman.exceptions import OpsManagerConfigError, OpsManagerError, OpsManagerTransientError
from opsman.models import CaCallResult, CertificateAuthority, CertificateChanges, Installation, isoformat
from opsman.planning import RotationPlan
from opsman.values import format_table, window_days

if TYPE_CHECKING:
    from opsman.hooks import OpsManagerHook

#: The newest installation id once a step's change was made (every state-changing step pushes it).
WATERMARK_KEY = "installation_watermark"
#: Manual Apply Changes: the installation id a person's Apply Changes must be newer than.
AFTER_INSTALLATION_KEY = "after_installation_id"
#: The CA the rotation moves to and the CA it replaces (pushed by the verify-new-CA step).
NEW_CA_KEY = "new_ca_guid"
OLD_CA_KEY = "old_ca_guid"
#: Template fields of every rotation step: the connection and the plan.
STEP_TEMPLATE_FIELDS: tuple[str, ...] = ("opsman_conn_id", "plan")

T = TypeVar("T")


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


class OpsManagerBaseOperator(BaseOperator):
    """Shared plumbing: the connection id, the hook, the CA listing, the watermark XCom, the plan.

    A step of the rotation procedure sets :attr:`step` and implements :meth:`run_step`; it is skipped
    when the plan says it is done, or in a dry run. Other operators (pre-flight, verification)
    implement :meth:`execute` themselves. One level below this class, never more: Airflow merges the
    DAG's Params once per ``__init__`` in an operator's class chain.

    :param plan: the plan from :class:`~opsman.operators.PlanRotationOperator` (templated for steps;
        usually its XCom). Without a plan a step always runs (it still decides from Ops Manager's state).
    """

    template_fields: Sequence[str] = ("opsman_conn_id",)
    ui_color = "#e6f1f8"
    #: The plan step this operator is (see :mod:`opsman.planning`); empty: not a step of the procedure.
    step: ClassVar[str] = ""

    def __init__(self, *, opsman_conn_id: str = DEFAULT_CONN_ID, plan: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.opsman_conn_id = opsman_conn_id
        self.plan = plan

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

    def write_then_confirm(
        self,
        call: str,
        write: Callable[[], T],
        effect: Callable[[], T | None],
        *,
        reading: str,
        unknown: tuple[type[Exception], ...] = (OpsManagerTransientError,),
    ) -> T:
        """Make a write; when it does not answer cleanly, let Ops Manager's state say whether it took effect.

        ``write`` makes the call and returns its result. When it raises one of ``unknown`` (by
        default: no answer, so the outcome is unknown), the write is not sent again: ``effect``
        re-reads the state (``reading`` names what it reads, for the log) and returns what the write
        would have returned, adopted; or None when the state shows no effect: the error stands, and
        the next try decides again from state.
        """
        try:
            return write()
        except unknown as err:
            self.log.warning(
                "%s: the outcome is unknown; reading Ops Manager's %s to find out whether it took effect (%s)",
                call,
                reading,
                err,
            )
            found = effect()
            if found is None:
                raise
            self.log.info("%s took effect after all (Ops Manager's %s show it); adopting it", call, reading)
            return found

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
