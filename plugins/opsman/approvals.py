"""Change control: a person approves a rotation step in Airflow before it runs, and the run records who.

``approve_before`` (a Param of ``opsman_ca_rotation``, a fleet-file setting of a foundation's DAG;
one rule, :data:`opsman.values.ApproveBefore`) names steps of :data:`APPROVABLE_STEPS`. Right
before each such step the DAG has a human-in-the-loop task (:class:`StepApprovalOperator`, Airflow's
``ApprovalOperator`` from the standard provider) whose body says what the step will do, on which
foundation, to which CAs (GUIDs and expiry) and what the plan found.

- Approve: the step runs. Who approved, and when, is the approval task's XCom, in its log, in the
  ``summary`` and in the Asset event (:class:`opsman.reports.RotationSummaryOperator`).
- Reject: every later task except ``summary`` is skipped, so nothing else is written to Ops Manager;
  the reason and the person are in the log, and ``summary`` says where the rotation stopped and how
  to resume (trigger again: the plan starts from Ops Manager's state).
- No answer within ``approval_timeout_minutes``: a rejection (the request's default option is
  Reject), never an approval.
- A dry run and a step the plan marks done ask for nothing: the approval task ends skipped with the
  reason in its log, and the step skips itself as it always does. A step not named asks for nothing
  either; its approval task (there is one per step in ``opsman_ca_rotation``, whose Param is known
  only per run) just succeeds.

Human-in-the-loop tasks need Airflow 3.1 or later and its standard provider; the supported range
(Airflow >= 3.1.0, providers-standard >= 1.8.0, see pyproject.toml) always has them.
Should they be missing all the same, a non-empty ``approve_before`` is refused with
:data:`HITL_MISSING` rather than ignored.

The DAG file and the summary import this module only where approvals can be asked for: importing
the standard provider's human-in-the-loop module is parse cost a fleet without approvals does not pay.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context
from pydantic import TypeAdapter, ValidationError

from opsman.compat import AirflowFailException, AirflowSkipException, human_in_the_loop_missing
from opsman.constants import APPROVABLE_STEPS, DEFAULT_APPROVAL_TIMEOUT_MINUTES
from opsman.exceptions import OpsManagerConfigError
from opsman.fleet_schema import RULES
from opsman.models import isoformat
from opsman.planning import (
    ACTIVATE,
    APPLY_DELETE,
    APPLY_LEAVES,
    APPLY_NEW_CA,
    DELETE,
    GENERATE,
    INITIAL_APPLY,
    REGENERATE,
    STEPS,
    RotationPlan,
)
from opsman.values import ApprovalTimeoutMinutes, ApproveBefore

HITL_MISSING = human_in_the_loop_missing()
if HITL_MISSING:
    ApprovalOperator = HITLOperator = None  # type: ignore[assignment,misc]
else:
    from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

APPROVED, REJECTED = "approved", "rejected"
SUMMARY_TASK_ID = "summary"

#: What each step does, for the approval body. {new} and {old} are CA GUIDs.
WHAT_HAPPENS = {
    INITIAL_APPLY: "Start an **Apply Changes**, so the rotation starts from a deployed state.",
    GENERATE: "**Create a new root CA** on Ops Manager ({how}). It stays inactive: nothing uses it yet.",
    APPLY_NEW_CA: "Start an **Apply Changes** that adds the new CA `{new}` to every trust store "
    "(the old CA `{old}` stays active).",
    ACTIVATE: "**Activate the new CA** `{new}`; the old CA `{old}` becomes inactive. Certificates "
    "issued from now on are signed by the new CA.",
    REGENERATE: "**Regenerate the non-configurable leaf certificates** under the new CA `{new}` "
    "(deployed by the next Apply Changes).",
    APPLY_LEAVES: "Start an **Apply Changes** that deploys the regenerated certificates (signed by `{new}`).",
    DELETE: "**Delete the old CA** `{old}` from Ops Manager. This cannot be undone.",
    APPLY_DELETE: "Start an **Apply Changes** that removes the old CA `{old}` from every trust store.",
}


#: The rules the trigger form and the fleet file share (opsman.values), for run-time values.
STEPS_RULE = TypeAdapter(ApproveBefore)
TIMEOUT_RULE = TypeAdapter(ApprovalTimeoutMinutes)


def check_steps(value: Any, where: str) -> list[str]:
    """``approve_before`` as run-time data (a rendered Param: null when nothing is selected), checked by
    the rule the form and the fleet file share; :class:`OpsManagerConfigError` says what is allowed."""
    if value is None:
        return []
    try:
        steps = STEPS_RULE.validate_python(value)
    except ValidationError:
        raise OpsManagerConfigError(
            f"{where}: approve_before {RULES['approve_before']}; got {value!r}"
        ) from None
    if steps and HITL_MISSING:
        raise OpsManagerConfigError(f"{where}: {HITL_MISSING}")
    return steps


def _ca_line(guid: str | None, cas: dict[str, dict[str, Any]], role: str) -> str:
    if not guid:
        return f"- {role}: not generated yet"
    ca = cas.get(guid) or {}
    state = "active" if ca.get("active") else "inactive" if ca else "state unknown"
    return (
        f"- {role}: `{guid}` ({state}, expires {ca.get('expires_at') or ca.get('expires_on') or 'unknown'})"
    )


def approval_body(
    *,
    step: str,
    foundation: str,
    plan: RotationPlan,
    certificate_authorities: Iterable[dict[str, Any]],
    new_ca_guid: str | None,
    custom_ca_conn_id: str | None = None,
    timeout: timedelta | None = None,
) -> str:
    """The Markdown shown on the approval page: what will happen, where, to which CAs, and the plan."""
    cas = {ca["guid"]: ca for ca in certificate_authorities}
    new = new_ca_guid or plan.new_ca_guid
    how = (
        f"uploads the CA of connection `{custom_ca_conn_id}`"
        if custom_ca_conn_id
        else "Ops Manager generates it"
    )
    what = WHAT_HAPPENS[step].format(new=new or "(not generated yet)", old=plan.old_ca_guid or "-", how=how)
    done = [f"- done: `{s}` ({plan.done[s]})" for s in STEPS if s in plan.done]
    to_do = ", ".join(f"`{s}`" for s in STEPS if s not in plan.done)
    plan_lines = "\n".join([*done, f"- to do: {to_do or 'nothing'}"])
    wait = (
        f"No answer within {_duration(timeout)} counts as **Reject**."
        if timeout
        else "No answer never counts as approval."
    )
    return (
        f"### Approve `{step}` on {foundation}?\n\n"
        f"{what}\n\n"
        f"**Certificate authorities**\n\n"
        f"{_ca_line(plan.old_ca_guid, cas, 'old CA')}\n"
        f"{_ca_line(new, cas, 'new CA')}\n\n"
        f"**What the plan found** at the start of this run (stage `{plan.stage}`)\n\n"
        f"{plan_lines}\n\n"
        f"**Approve** runs this step. **Reject** stops the rotation here: nothing else is written to "
        f"Ops Manager, and triggering the DAG again later resumes from Ops Manager's state. {wait}"
    )


def _duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def timeout_kwargs(minutes: Any) -> dict[str, Any]:
    """How long a person has to answer, as this provider version takes it: ``response_timeout`` on
    newer providers; older ones (1.8, Airflow 3.1) read ``execution_timeout``. 0 or None: no limit."""
    if minutes is None:
        return {}
    try:
        minutes = TIMEOUT_RULE.validate_python(minutes, strict=True)
    except ValidationError:
        raise OpsManagerConfigError(
            f"approval_timeout_minutes {RULES['approval_timeout_minutes']}; got {minutes!r}"
        ) from None
    if not minutes:
        return {}
    value = timedelta(minutes=minutes)
    if HITLOperator is not None and "response_timeout" in inspect.signature(HITLOperator.__init__).parameters:
        return {"response_timeout": value}
    return {"execution_timeout": value}


def approval_record(step: str, task_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe record of one answer (the approval task's XCom)."""
    chosen = (event.get("chosen_options") or [None])[0]
    user = event.get("responded_by_user") or None
    at = event.get("responded_at")
    timed_out = bool(event.get("timedout")) or (user is None and chosen is not None)
    reason = (event.get("params_input") or {}).get("reason") or None
    if timed_out:
        reason = "no answer before the approval timed out"
    return {
        "step": step,
        "task_id": task_id,
        "decision": APPROVED if chosen == "Approve" and not timed_out else REJECTED,
        "by": {"id": str(user["id"]), "name": user["name"]} if user else None,
        "at": isoformat(at) if hasattr(at, "isoformat") else at,
        "timed_out": timed_out,
        "reason": reason,
    }


def describe(record: dict[str, Any]) -> str:
    who = (
        f"{record['by']['name']} (id {record['by']['id']})"
        if record["by"]
        else "nobody (timed out)"
        if record["timed_out"]
        else "unknown"
    )
    text = f"{record['step']}: {record['decision']} by {who} at {record['at']}"
    return text + (f"; reason: {record['reason']}" if record["reason"] else "")


def resume_hint(record: dict[str, Any]) -> str:
    return (
        f"Stopped before step {record['step']} ({record['task_id']}): {describe(record)}. Nothing after it was "
        "written to Ops Manager. To resume, trigger the DAG again when the change may go ahead: it plans "
        f"from Ops Manager's state and asks for approval of {record['step']} again."
    )


def answers(xcoms: Iterable[Any]) -> list[dict[str, Any]]:
    """The answers among the approval tasks' XComs (a task that asked nothing has none), in their order."""
    return [r for r in xcoms if isinstance(r, dict) and "decision" in r]


if ApprovalOperator is not None:

    class StepApprovalOperator(ApprovalOperator):
        """Ask a person to approve ``step`` before it runs (see the module docstring).

        :param step: one of :data:`APPROVABLE_STEPS`.
        :param approve_before: the steps that need approval (templated: a Param, or the fleet file's list).
        :param plan: the plan task's XCom (templated).
        :param preflight: the pre-flight check's XCom (templated): the CAs with their expiry.
        :param new_ca_guid: the generate step's XCom (templated; None before it ran).
        :param foundation: the foundation's name, for the body (a fleet DAG); else the connection says.
        :param timeout_minutes: minutes a person has to answer (templated); no answer is a rejection.
        """

        template_fields: Sequence[str] = (
            *ApprovalOperator.template_fields,
            "approve_before",
            "plan",
            "preflight",
            "new_ca_guid",
            "opsman_conn_id",
            "timeout_minutes",
        )
        ui_color = "#fdf2d0"

        def __init__(
            self,
            *,
            step: str,
            approve_before: Any,
            plan: Any,
            preflight: Any,
            new_ca_guid: Any,
            opsman_conn_id: str,
            foundation: str | None = None,
            custom_ca_conn_id: str | None = None,
            timeout_minutes: Any = DEFAULT_APPROVAL_TIMEOUT_MINUTES,
            summary_task_id: str = SUMMARY_TASK_ID,
            **kwargs: Any,
        ) -> None:
            if step not in APPROVABLE_STEPS:
                raise OpsManagerConfigError(f"no approval for step {step!r}; choose among {APPROVABLE_STEPS}")
            from airflow.sdk import Param

            super().__init__(
                subject=f"Approve {step}",
                body=None,
                # A timeout answers with the default: Reject. Without a default it would fail the task.
                defaults=ApprovalOperator.REJECT,
                params={
                    "reason": Param(
                        None,
                        type=["null", "string"],
                        title="Reason",
                        description="Why (recorded in the log and the summary).",
                    )
                },
                **kwargs,
            )
            self.step = step
            self.approve_before = approve_before
            self.plan = plan
            self.preflight = preflight
            self.new_ca_guid = new_ca_guid
            self.opsman_conn_id = opsman_conn_id
            self.foundation = foundation
            self.custom_ca_conn_id = custom_ca_conn_id
            self.timeout_minutes = timeout_minutes
            self.summary_task_id = summary_task_id

        @cached_property
        def hook(self) -> Any:
            from opsman.hooks import OpsManagerHook  # at run time only (parse cost)

            return OpsManagerHook(opsman_conn_id=self.opsman_conn_id)

        def _foundation_label(self) -> str:
            url = self.hook.settings.base_url
            name = f"foundation **{self.foundation}**" if self.foundation else "the Ops Manager"
            return f"{name} at {url} (connection `{self.opsman_conn_id}`)"

        def _certificate_authorities(self, new_ca_guid: str | None) -> list[dict[str, Any]]:
            cas = list((self.preflight or {}).get("certificate_authorities") or [])
            if new_ca_guid and new_ca_guid not in {ca["guid"] for ca in cas}:
                # Made in this run, after the pre-flight listing: one read for its expiry.
                cas = [ca.summary() for ca in self.hook.list_certificate_authorities()]
            return cas

        def execute(self, context: Context) -> Any:
            steps = check_steps(self.approve_before, f"task {self.task_id}")
            if self.step not in steps:
                # Not a skip: nothing was decided against. A run without approvals looks as it always did.
                self.log.info("No approval asked: %s is not in approve_before %s", self.step, steps)
                return None
            if not isinstance(self.plan, dict):
                raise AirflowFailException(
                    f"plan must be the plan task's XCom (a mapping), got {self.plan!r}"
                )
            plan = RotationPlan.from_json(self.plan)
            if plan.dry_run:
                reason = f"dry run: no approval asked for {self.step}"
            elif plan.is_done(self.step):
                reason = f"no approval asked: {self.step} is already done ({plan.done[self.step]})"
            else:
                reason = ""
            if reason:
                self.log.info("%s", reason)
                raise AirflowSkipException(reason)
            # Set here, not in __init__: the timeout may be a Param, known only when the run starts.
            timeout = timeout_kwargs(self.timeout_minutes)
            for name, value in timeout.items():
                setattr(self, name, value)
            self.body = approval_body(
                step=self.step,
                foundation=self._foundation_label(),
                plan=plan,
                certificate_authorities=self._certificate_authorities(self.new_ca_guid or plan.new_ca_guid),
                new_ca_guid=self.new_ca_guid,
                custom_ca_conn_id=self.custom_ca_conn_id,
                timeout=next(iter(timeout.values()), None),
            )
            self.subject = f"Approve {self.step} on {self.foundation or self.opsman_conn_id}"
            self.log.info("Asking for approval of %s:\n%s", self.step, self.body)
            return super().execute(context)

        def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
            if "error" not in event:
                # An answer without a reason (a REST call may leave params_input empty): the standard
                # provider 1.8 (Airflow 3.1's) refuses params_input whose keys differ from the form's.
                event = {**event, "params_input": {"reason": None, **(event.get("params_input") or {})}}
            # Validation of the answer only; what a rejection skips is decided here, not by ApprovalOperator.
            HITLOperator.execute_complete(self, context=context, event=event)
            record = approval_record(self.step, self.task_id, event)
            if record["decision"] == APPROVED:
                self.log.info("Approved: %s. Running %s.", describe(record), self.step)
                return record
            self.log.warning("Rejected: %s", describe(record))
            self.log.warning("%s", resume_hint(record))
            later = [
                t
                for t in context["task"].get_flat_relatives(upstream=False)
                if t.task_id != self.summary_task_id and not t.is_teardown
            ]
            # skip() ends this task at once (successful, its return value not pushed): push the record first.
            context["ti"].xcom_push(key="return_value", value=record)
            # Every later step, not only the next: with trigger rule none_failed a skipped step would
            # not stop the ones after it. The summary still runs and reports where the rotation stopped.
            self.skip(ti=context["ti"], tasks=later)
            return record

else:  # pragma: no cover - outside the supported range (see the module docstring)
    APPROVAL_ONLY_ARGS = ("plan", "preflight", "new_ca_guid", "opsman_conn_id", "foundation")
    APPROVAL_ONLY_ARGS += ("custom_ca_conn_id", "timeout_minutes", "summary_task_id")

    class StepApprovalOperator(BaseOperator):  # type: ignore[no-redef]
        """Stands in where human-in-the-loop tasks are missing: asks nothing, refuses a non-empty approve_before."""

        template_fields: Sequence[str] = ("approve_before",)

        def __init__(self, *, step: str, approve_before: Any, **kwargs: Any) -> None:
            for name in APPROVAL_ONLY_ARGS:
                kwargs.pop(name, None)
            super().__init__(**kwargs)
            self.step = step
            self.approve_before = approve_before

        def execute(self, context: Context) -> None:
            steps = check_steps(self.approve_before, f"task {self.task_id}")  # refuses a non-empty list
            raise AirflowSkipException(f"no approval asked: approve_before is {steps}")
