"""Rotate the root CA of one Ops Manager foundation, in the documented order.

The task groups follow "Regenerating and Rotating Non-Configurable TLS/SSL Certificates":
pre-flight → initial Apply Changes → create a new CA → activate it (list, Apply Changes, activate) →
regenerate the non-configurable certificates (+ Apply Changes) → delete the old CA (+ Apply Changes)
→ verify. :func:`build_rotation_dag` chains them in that order, each section built by the function
of its name further down; a section hands later ones its results through :class:`Rotation`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from airflow.sdk import DAG, Asset, BaseOperator, Param, TaskGroup, XComArg, chain

from opsman.compat import DOUBLING_BACKOFF
from opsman.constants import APPROVABLE_STEPS
from opsman.expiry import ExpiryReportOperator, RotationDueOperator
from opsman.fleet import DEFAULT_SETTINGS, FLEET_FORM, Fleet, Foundation, load_fleet
from opsman.operators import (
    AFTER_INSTALLATION_KEY,
    OLD_CA_KEY,
    WATERMARK_KEY,
    ActivateCertificateAuthorityOperator,
    ApplyChangesOperator,
    CheckOpsManagerOperator,
    DeleteCertificateAuthorityOperator,
    GenerateCertificateAuthorityOperator,
    OpsManagerBaseOperator,
    PendingChangesCheckOperator,
    PlanRotationOperator,
    RegenerateCertificatesOperator,
    VerifyCertificateAuthoritiesOperator,
    VerifyRotationOperator,
)
from opsman.planning import APPLY_DELETE, APPLY_LEAVES, APPLY_NEW_CA, INITIAL_APPLY
from opsman.reports import FleetReportOperator, RotationSummaryOperator
from opsman.sensors import ApplyChangesSensor
from opsman.values import (
    ApplyChangesMode,
    ApprovalTimeoutMinutes,
    ApproveBefore,
    ConnId,
    DeployProducts,
    Errands,
    Flag,
    IfInstallationRunning,
    PollSeconds,
    Window,
    param_schema,
)

DOC_MD = """
### Rotate the Ops Manager root CA

One run performs the whole documented rotation, each step a task with its own retries and logs:

| group | what it does |
|---|---|
| `preflight` | UAA token; CA report and certificates expiring within `expires_within`; waits for (or refuses) a running Apply Changes; plans the remaining steps from Ops Manager's state; refuses staged changes of other products |
| `initial_apply_changes` | Apply Changes, so the rotation starts from a deployed state (Param `initial_apply_changes`) |
| `create_new_ca` | `POST /api/v0/certificate_authorities/generate`: a new CA, **inactive** |
| `activate_new_ca` | lists the CAs (new one inactive), Apply Changes (adds it to every trust store), activates it |
| `regenerate_certificates` | regenerates the non-configurable leaf certificates under the new CA, Apply Changes |
| `delete_old_ca` | deletes the old CA, Apply Changes (removes it from the trust stores) |
| `verify` | one CA left, the new one, active; every rotated leaf chains to it, none to the old CA |

A step named in `approve_before` waits for a person's approval first (`<group>.approve_<step>`, under
**Required Actions**); Reject, or no answer within `approval_timeout_minutes`, ends the rotation there.

Re-triggering after any failure finishes the rotation from Ops Manager's state: finished steps end
**skipped** with the reason in their log. `dry_run` only reads and logs the plan. No task generates
a second CA, deletes the active or the new CA, or starts an Apply Changes while one runs.
"""

FLEET_DOC_MD = """
#### Foundation `{f.name}` (connection `{f.conn_id}`, pool `{f.pool}`)

From the fleet file `{path}`. Scheduled runs (`{f.schedule}`) start with `rotation_due`: they rotate only when
the active root CA, or a leaf certificate the rotation re-issues, expires within `{f.expires_within}` (or a
rotation was left half done); otherwise every later task is skipped and the reason is in that task's log.
Manual runs rotate regardless unless `only_if_due` is set. Every task runs in the one-slot pool
`{f.pool}`, shared with the expiry report, so one conversation at a time reaches this Ops Manager.
A successful rotation emits an event of Asset `opsman_root_ca__{f.name}`.

The trigger form has only `dry_run`, `only_if_due`, `allow_pending_changes` and `recent_rotation_days`.
Every other setting is the fleet file's; to change one, even for one run, change the fleet file.
In force for this DAG:

| setting | value |
|---|---|
{settings}
"""
PARAM_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"
#: Fleet DAGs are scheduled; with catchup off only the latest interval runs.
FLEET_START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Rotation:
    """What the sections of one rotation DAG share: the settings, how Apply Changes is waited for, and
    the tasks whose XComs later sections read (set by the section that creates them)."""

    settings: dict[str, Any]
    wait_mode: dict[str, Any]
    check: CheckOpsManagerOperator | None = None
    plan: XComArg | None = None
    new_ca_guid: XComArg | None = None
    #: What the verification of the new CA returns: the CA the rotation replaces.
    old_ca_guid: XComArg | None = None
    #: The installation each Apply Changes ended with, by section: for the summary.
    installations: dict[str, XComArg] = field(default_factory=dict)
    #: The fleet foundation's name (None in ``opsman_ca_rotation``), for the approval pages.
    foundation: str | None = None
    #: The approval tasks, in procedure order: for the summary.
    approvals: list[BaseOperator] = field(default_factory=list)

    @property
    def conn(self) -> Any:
        return self.settings["opsman_conn_id"]


def build_rotation_dag(foundation: Foundation | None = None, fleet_path: Any = None) -> DAG:
    """The rotation DAG: ``opsman_ca_rotation`` (manual, any connection) without a foundation, else
    ``opsman_ca_rotation__<name>`` for one foundation of the fleet file: scheduled, rotating only when
    due, every task in the foundation's one-slot pool, an Asset event and notifications.
    """
    with rotation_dag(foundation, fleet_path) as dag:
        r = Rotation(settings(foundation), sensor_mode(foundation), foundation=foundation and foundation.name)
        # The documented procedure, one section after the other; a foundation's DAG first checks
        # whether a rotation is due. Each section is a task group built by the function of its name.
        chain(
            *([rotation_due(r, foundation)] if foundation else []),
            preflight(r),
            initial_apply_changes(r),
            create_new_ca(r),
            activate_new_ca(r),
            regenerate_certificates(r),
            delete_old_ca(r),
            verify(r),
            summary(r, foundation),
        )
    # The form goes on the DAG only now, after its tasks: an operator built inside a DAG deep-copies the
    # DAG's Params once per __init__ in its class chain, and serializing validates every task's copy
    # (bench/parse_cost.py: the fleet's main parse cost). Tasks do not need a copy: at run time Airflow
    # merges the DAG's Params and the run's conf into each task's params (process_params). Added to the
    # DAG's empty Params, not assigned: assigning checks a scheduled DAG's defaults, the same constant
    # form for every foundation, which fleet_form checks once per file instead.
    dag.params.update(rotation_params(foundation))
    if foundation is not None:
        # The fleet file's values are data, not templates: no Jinja pass over a connection id or an
        # errand name, and nothing for the DAG processor to serialize as a template (one config read
        # and one conversion per templated field and task: bench/parse_cost.py).
        for op in dag.tasks:
            op.template_fields = tuple(
                name for name in op.template_fields if is_template(getattr(op, name, None))
            )
    return dag


def root_ca_asset(foundation: Foundation) -> Asset:
    """The foundation's root CA as an Airflow Asset: schedule follow-up DAGs on it."""
    return Asset(
        name=f"opsman_root_ca__{foundation.name}", uri=f"opsman://{foundation.name}/root-ca", group="opsman"
    )


def rotation_params(foundation: Foundation | None = None) -> dict[str, Param]:
    """The trigger form: all of it without a foundation; a foundation's DAG keeps only :data:`FLEET_FORM`
    (its other settings are the fleet file's, see :func:`settings`). Fresh Params for every DAG: a run
    updates its DAG's Params."""
    if foundation is None:
        return full_form()
    return {
        name: Param(value, description=text, **schema) for name, (value, text, schema) in fleet_form().items()
    }


@cache  # every foundation's DAG has the same form: build it once per file
def fleet_form() -> dict[str, tuple[Any, str, dict[str, Any]]]:
    """The short form of a foundation's DAG: each Param's default, description and schema."""
    form = full_form()
    form["only_if_due"] = Param(
        False,
        **param_schema(Flag),
        title="Only if due",
        section="Foundation",
        description="Manual runs rotate regardless; set true to check expiry first, as scheduled runs always do.",
    )
    # Each Param names its JSON-schema draft: Airflow validates a scheduled DAG's Params when they are set
    # and when it serializes the DAG, and the draft-07 meta-schema is about 4x cheaper to check than the
    # default 2020-12 one.
    short = {
        name: (form[name].value, form[name].description, {**form[name].schema, "$schema": PARAM_SCHEMA_DRAFT})
        for name in FLEET_FORM
    }
    for value, _, schema in short.values():
        Param(value, **schema).resolve()  # a scheduled DAG's defaults must be valid (Airflow's rule)
    return short


def full_form() -> dict[str, Param]:
    """The form of ``opsman_ca_rotation``: every setting, defaults from the fleet schema's."""
    d = DEFAULT_SETTINGS
    params = {
        "opsman_conn_id": Param(
            "opsman_default",
            **param_schema(ConnId),
            title="Ops Manager connection",
            description="Airflow connection (type opsman) of the foundation to rotate.",
            section="Foundation",
        ),
        "dry_run": Param(
            False,
            **param_schema(Flag),
            title="Dry run",
            section="Foundation",
            description="Only read Ops Manager's state and log what each step would do; change nothing.",
        ),
        "poll_interval_seconds": Param(
            d["poll_interval_seconds"],
            **param_schema(PollSeconds),
            title="Poll interval (seconds)",
            section="Foundation",
            description="How often to ask Ops Manager whether an Apply Changes has finished.",
        ),
        "expires_within": Param(
            d["expires_within"],
            **param_schema(Window),
            title="Expiry window",
            section="Foundation",
            description="Report certificates expiring within this window (e.g. 3m, 6w, 90d); the new CA must outlive it.",
        ),
        "custom_ca_conn_id": Param(
            # None, not "": the UI trigger form treats an empty string as a missing required value.
            d["custom_ca_conn_id"],
            # The type first: the form picks its widget by it (a text field that may stay empty).
            **{**param_schema(ConnId), "type": ["null", "string"]},
            title="Bring your own CA (connection)",
            section="Foundation",
            description=(
                "Empty: Ops Manager generates the new CA. Otherwise the Airflow connection whose extras "
                "certificate_pem and private_key_pem hold the CA to upload (RSA, validated before any call)."
            ),
        ),
        "initial_apply_changes": Param(
            d["initial_apply_changes"],
            **param_schema(Flag),
            title="Initial Apply Changes",
            section="Procedure",
            description="Run the Apply Changes the procedure starts with, before generating the new CA.",
        ),
        "if_installation_running": Param(
            d["if_installation_running"],
            **param_schema(IfInstallationRunning),
            title="If an Apply Changes is running",
            section="Procedure",
            description="wait: let it finish, then start; fail: stop without changing anything.",
        ),
        "allow_pending_changes": Param(
            False,
            **param_schema(Flag),
            title="Allow other staged changes",
            section="Procedure",
            description="Deploy changes other people staged in Ops Manager along with the rotation (refused by default).",
        ),
        "recent_rotation_days": Param(
            7,
            type="number",
            minimum=0,
            title="Recent rotation (days)",
            section="Procedure",
            description=(
                "A single active CA younger than this is the end of a rotation: the run only finishes it. "
                "Set 0 to rotate a young CA again."
            ),
        ),
        "apply_changes_mode": Param(
            d["apply_changes_mode"],
            **param_schema(ApplyChangesMode),
            title="Apply Changes mode",
            section="Apply Changes",
            description="api: the DAG starts each Apply Changes; manual: a person clicks Apply Changes and the DAG waits.",
        ),
        "deploy_products": Param(
            d["deploy_products"],
            **{**param_schema(DeployProducts), "type": ["string", "array"]},
            title="Products to deploy",
            section="Apply Changes",
            description="'all' (what the rotation docs require), 'none' (director only), or a list of product GUIDs or names.",
        ),
        "errands": Param(
            d["errands"],
            **param_schema(Errands),
            title="Errands",
            section="Apply Changes",
            description=(
                'Per product GUID or name, e.g. {"p-redis": {"run_post_deploy": {"upgrade-all-service-instances": true}}}; '
                "the newer docs require upgrading service instances during a CA rotation."
            ),
        ),
        "recreate_vms": Param(
            d["recreate_vms"],
            **param_schema(Flag),
            title="Recreate VMs",
            section="Apply Changes",
            description="Recreate every VM during each Apply Changes (the 2.10+ docs ask for it during a rotation).",
        ),
        "force_latest_variables": Param(
            d["force_latest_variables"],
            **param_schema(Flag),
            title="Force latest variables",
            section="Apply Changes",
            description="BOSH --force-latest-variables on each Apply Changes.",
        ),
        "ignore_warnings": Param(
            d["ignore_warnings"],
            **param_schema(Flag),
            title="Ignore warnings",
            section="Apply Changes",
            description="Bypass ignorable verifier warnings on each Apply Changes.",
        ),
        "approve_before": Param(
            d["approve_before"],
            # null: what the form's multi-select sends with nothing selected; examples make it a multi-select.
            **{**param_schema(ApproveBefore), "type": ["null", "array"], "examples": list(APPROVABLE_STEPS)},
            title="Approve before",
            section="Change control",
            description=(
                "Steps a person approves in Airflow (Required Actions) before they run; Reject stops the "
                "rotation there. Empty: no approvals."
            ),
        ),
        "approval_timeout_minutes": Param(
            d["approval_timeout_minutes"],
            **param_schema(ApprovalTimeoutMinutes),
            title="Approval timeout (minutes)",
            section="Change control",
            description="No answer within this time counts as Reject (never as approval). 0: wait forever.",
        ),
    }
    return params


def settings(foundation: Foundation | None) -> dict[str, Any]:
    """Each setting's operator argument: a foundation's value from the fleet file (plain, fixed at parse
    time), or without a foundation a template of the trigger-form Param of the same name."""
    if foundation is not None:
        return foundation.settings
    return {name: f"{{{{ params.{name} }}}}" for name in ("opsman_conn_id", *DEFAULT_SETTINGS)}


def is_template(value: Any) -> bool:
    """A Jinja template or an XCom reference, or a collection holding one (not a plain value, such as a fleet file's)."""
    if isinstance(value, dict):
        return any(is_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_template(v) for v in value)
    return isinstance(value, XComArg) or (isinstance(value, str) and "{{" in value)


def fleet_doc_md(foundation: Foundation, path: Any) -> str:
    """The foundation's part of the DAG's docs: the values in force."""
    rows = {
        "schedule": foundation.schedule,
        "wait_mode": foundation.wait_mode,
        **{k: v for k, v in foundation.settings.items() if k != "opsman_conn_id"},
        "notifiers on_failure": [n.class_path for n in foundation.on_failure],
        "notifiers on_success": [n.class_path for n in foundation.on_success],
    }
    return FLEET_DOC_MD.format(
        f=foundation, path=path, settings="\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in rows.items())
    )


def sensor_mode(foundation: Foundation | None) -> dict[str, Any]:
    """How the Apply Changes sensors wait: deferrable (the default) unless the fleet file says otherwise."""
    mode = foundation.wait_mode if foundation else "deferrable"
    return {"deferrable": True} if mode == "deferrable" else {"deferrable": False, "mode": mode}


def xcom_value(task: BaseOperator, key: str | None = None, item: str | None = None) -> str:
    """A template reading ``task``'s XCom under ``key``, or one ``item`` of its return value.

    For the XComs an XComArg cannot express: ``task.output["k"]`` names an XCom *key*, not an item of
    the value, and a keyed XComArg fails the consuming task when the key was never pushed (a step the
    plan skipped pushes no watermark), where ``xcom_pull`` gives None. The task id comes from the task.
    """
    pull = f"ti.xcom_pull(task_ids='{task.task_id}'" + (f", key='{key}')" if key else ")")
    return "{{ " + pull + (f"['{item}']" if item else "") + " }}"


def rotation_dag(foundation: Foundation | None, fleet_path: Any) -> DAG:
    """The DAG itself: ids, schedule, docs, and the retries and trigger rule every task shares."""
    fleet_args: dict[str, Any] = {}
    if foundation is not None:
        fleet_args = {
            # Everything that talks to this Ops Manager queues in its one-slot pool (its API does
            # not support parallel calls); the expiry report DAG uses the same pool.
            "pool": foundation.pool,
            "on_failure_callback": [n.build() for n in foundation.on_failure],
        }
    return DAG(
        dag_id=foundation.dag_id if foundation else "opsman_ca_rotation",
        description=(
            f"Rotate the root CA of foundation {foundation.name} ({foundation.conn_id}) when it is due"
            if foundation
            else "Rotate the root CA of an Ops Manager foundation through its API"
        ),
        doc_md=DOC_MD + (fleet_doc_md(foundation, fleet_path) if foundation else ""),
        schedule=foundation.schedule if foundation else None,
        start_date=FLEET_START if foundation else None,
        max_active_runs=1,
        catchup=False,
        render_template_as_native_obj=True,
        tags={"opsman", "certificates", *((f"foundation:{foundation.name}",) if foundation else ())},
        default_args={
            "owner": "platform",
            "retries": 3,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": DOUBLING_BACKOFF,
            "max_retry_delay": timedelta(minutes=10),
            # Steps the plan marks done end skipped; the steps after them must still run. A failure
            # still stops everything after it (upstream_failed).
            "trigger_rule": "none_failed",
            **fleet_args,
        },
        # No params here: they are set once the tasks exist (build_rotation_dag), see there.
    )


def rotation_due(r: Rotation, foundation: Foundation) -> RotationDueOperator:
    """Scheduled runs rotate only when due: a young CA ends the run here, every later task skipped,
    before any write call. Manual runs rotate regardless unless ``only_if_due``."""
    return RotationDueOperator(
        task_id="rotation_due",
        opsman_conn_id=r.conn,
        expires_within=r.settings["expires_within"],
        only_if_due="{{ params.only_if_due }}",
        form=FLEET_FORM,
    )


def preflight(r: Rotation) -> TaskGroup:
    """Credentials, the CA report, a running Apply Changes (wait or refuse), the plan, staged changes."""
    s = r.settings
    with TaskGroup("preflight") as group:
        r.check = CheckOpsManagerOperator(
            task_id="check_ops_manager",
            opsman_conn_id=r.conn,
            expires_within=s["expires_within"],
            if_installation_running=s["if_installation_running"],
            custom_ca_conn_id=s["custom_ca_conn_id"],
            dry_run="{{ params.dry_run }}",
        )
        wait_running = ApplyChangesSensor(
            task_id="wait_for_running_installation",
            opsman_conn_id=r.conn,
            installation_id=xcom_value(r.check, item="running_installation_id"),
            poll_interval_seconds=s["poll_interval_seconds"],
            **r.wait_mode,
        )
        plan = PlanRotationOperator(
            task_id="plan_rotation",
            opsman_conn_id=r.conn,
            recent_rotation_days="{{ params.recent_rotation_days }}",
            initial_apply_changes=s["initial_apply_changes"],
            dry_run="{{ params.dry_run }}",
            custom_ca_conn_id=s["custom_ca_conn_id"],
            expires_within=s["expires_within"],
        )
        r.plan = plan.output
        pending = PendingChangesCheckOperator(
            task_id="check_pending_changes",
            opsman_conn_id=r.conn,
            plan=r.plan,
            allow_pending_changes="{{ params.allow_pending_changes }}",
        )
        chain(r.check, wait_running, plan, pending)
    return group


def initial_apply_changes(r: Rotation) -> TaskGroup:
    """Apply Changes first, so the rotation starts from a deployed state (skipped when not asked for)."""
    with TaskGroup("initial_apply_changes") as group:
        chain(*apply_changes(r, INITIAL_APPLY, after=r.check))
    return group


def create_new_ca(r: Rotation) -> TaskGroup:
    """``POST /api/v0/certificate_authorities/generate``: a new CA, inactive."""
    with TaskGroup("create_new_ca") as group:
        generate = GenerateCertificateAuthorityOperator(
            task_id="generate_ca",
            opsman_conn_id=r.conn,
            plan=r.plan,
            custom_ca_conn_id=r.settings["custom_ca_conn_id"],
            expires_within=r.settings["expires_within"],
        )
        chain(*approved(r, generate))
        r.new_ca_guid = generate.output
    return group


def activate_new_ca(r: Rotation) -> TaskGroup:
    """The new CA is listed and inactive; Apply Changes puts it in every trust store; then activate it."""
    with TaskGroup("activate_new_ca") as group:
        verify_new_ca = VerifyCertificateAuthoritiesOperator(
            task_id="verify_new_ca_inactive", opsman_conn_id=r.conn, plan=r.plan, new_ca_guid=r.new_ca_guid
        )
        r.old_ca_guid = verify_new_ca.output[OLD_CA_KEY]
        activate = ActivateCertificateAuthorityOperator(
            task_id="activate_ca", opsman_conn_id=r.conn, plan=r.plan, new_ca_guid=r.new_ca_guid
        )
        # The Apply Changes carries the generated CA: it starts from the generate step's watermark.
        chain(
            verify_new_ca,
            *apply_changes(r, APPLY_NEW_CA, after=r.new_ca_guid.operator),
            *approved(r, activate),
        )
    return group


def regenerate_certificates(r: Rotation) -> TaskGroup:
    """Regenerate the non-configurable leaf certificates under the new CA, then Apply Changes."""
    return change_then_apply_changes(
        r,
        "regenerate_certificates",
        APPLY_LEAVES,
        lambda: RegenerateCertificatesOperator(
            task_id="regenerate_leaf_certificates",
            opsman_conn_id=r.conn,
            plan=r.plan,
            new_ca_guid=r.new_ca_guid,
        ),
    )


def delete_old_ca(r: Rotation) -> TaskGroup:
    """Delete the old CA, then Apply Changes removes it from the trust stores."""
    return change_then_apply_changes(
        r,
        "delete_old_ca",
        APPLY_DELETE,
        lambda: DeleteCertificateAuthorityOperator(
            task_id="delete_ca",
            opsman_conn_id=r.conn,
            plan=r.plan,
            old_ca_guid=r.old_ca_guid,
            new_ca_guid=r.new_ca_guid,
        ),
    )


def change_then_apply_changes(
    r: Rotation, group_id: str, step: str, change: Callable[[], OpsManagerBaseOperator]
) -> TaskGroup:
    """A section that makes one change (built by ``change``), then applies it."""
    with TaskGroup(group_id) as group:
        made = change()
        chain(*approved(r, made), *apply_changes(r, step, after=made))
    return group


def verify(r: Rotation) -> TaskGroup:
    """One CA left, the new one, active; every rotated leaf chains to it, none to the old CA."""
    with TaskGroup("verify") as group:
        VerifyRotationOperator(
            task_id="verify_rotation",
            opsman_conn_id=r.conn,
            new_ca_guid=r.new_ca_guid,
            old_ca_key_id=xcom_value(r.plan.operator, item="old_ca_key_id"),
            expires_within=r.settings["expires_within"],
            dry_run="{{ params.dry_run }}",
        )
    return group


def summary(r: Rotation, foundation: Foundation | None) -> RotationSummaryOperator:
    """What the rotation did, and who approved what. A foundation's DAG announces the new root CA as an
    Asset event (old and new GUID, new expiry; schedule follow-up DAGs on :func:`root_ca_asset`) and
    notifies success here; a rejected approval ends the run here instead, with neither."""
    return RotationSummaryOperator(
        task_id="summary",
        opsman_conn_id=r.conn,
        # A template, not the keyed XComArg: a step rejected before the verification skips it, and
        # the summary must still say where the rotation stopped (xcom_value).
        old_ca_guid=xcom_value(r.old_ca_guid.operator, key=r.old_ca_guid.key),
        new_ca_guid=r.new_ca_guid,
        installations=r.installations,
        approvals=[approval.output for approval in r.approvals],
        dry_run="{{ params.dry_run }}",
        foundation=foundation.name if foundation else None,
        asset=root_ca_asset(foundation) if foundation else None,
        on_success_callback=[n.build() for n in foundation.on_success] if foundation else None,
    )


def apply_changes(r: Rotation, step: str, after: BaseOperator) -> tuple[BaseOperator, ...]:
    """Apply Changes carrying the change made by ``after`` (from its installation watermark), and the
    wait for it to succeed, for the section to chain after its change (with its approval first, see
    :func:`approved`)."""
    s = r.settings
    start = ApplyChangesOperator(
        task_id="apply_changes",
        step=step,
        plan=r.plan,
        opsman_conn_id=r.conn,
        after_installation_id=xcom_value(after, key=WATERMARK_KEY),
        deploy_products=s["deploy_products"],
        errands=s["errands"],
        recreate_vms=s["recreate_vms"],
        ignore_warnings=s["ignore_warnings"],
        force_latest_variables=s["force_latest_variables"],
        apply_changes_mode=s["apply_changes_mode"],
        wait_poll_seconds=s["poll_interval_seconds"],
        deferrable=r.wait_mode["deferrable"],
    )
    wait = ApplyChangesSensor(
        task_id="wait_for_apply_changes",
        opsman_conn_id=r.conn,
        installation_id=start.output,
        after_installation_id=xcom_value(start, key=AFTER_INSTALLATION_KEY),
        poll_interval_seconds=s["poll_interval_seconds"],
        **r.wait_mode,
    )
    r.installations[start.task_group.group_id] = wait.output
    return (*approved(r, start), wait)


def approved(r: Rotation, step_task: OpsManagerBaseOperator) -> list[BaseOperator]:
    """``step_task`` with the approval of its step before it (:mod:`opsman.approvals`), for the section
    to chain, where the settings may name the step: in ``opsman_ca_rotation`` always (its Param is known
    only per run; an approval of a step not named asks nothing and succeeds), in a foundation's DAG only
    for the steps its fleet file names (no task, and no import of the approvals, for the others)."""
    steps = r.settings["approve_before"]
    if not is_template(steps) and step_task.step not in steps:
        return [step_task]
    from opsman.approvals import StepApprovalOperator  # parse cost: only DAGs that can ask import it

    approval = StepApprovalOperator(
        task_id=f"approve_{step_task.step}",
        step=step_task.step,
        approve_before=steps,
        plan=r.plan,
        preflight=r.check.output,
        # None before the new CA's generate step: the approval reads it from the plan, if any.
        new_ca_guid=r.new_ca_guid,
        opsman_conn_id=r.conn,
        foundation=r.foundation,
        custom_ca_conn_id=r.settings["custom_ca_conn_id"],
        timeout_minutes=r.settings["approval_timeout_minutes"],
    )
    r.approvals.append(approval)
    return [approval, step_task]


# ------------------------------------------------------------------------------------------------
# The expiry report: every foundation, what expires when, grouped by rotation procedure.


def build_expiry_report_dag(fleet: Fleet) -> DAG:
    """``opsman_certificate_expiry_report``: per foundation (in its pool) the CAs and the certificates
    expiring within its window, a table in the log and JSON in XCom; optionally triggers due rotations."""
    with DAG(
        dag_id="opsman_certificate_expiry_report",
        description="What expires when on every Ops Manager foundation of the fleet file",
        doc_md=f"Reads only. Fleet file `{fleet.path}`; each foundation is read in its own one-slot pool.",
        schedule=fleet.report_schedule,
        start_date=FLEET_START,
        max_active_runs=1,
        catchup=False,
        tags={"opsman", "certificates", "report"},
        default_args={"owner": "platform", "retries": 2, "retry_delay": timedelta(minutes=2)},
    ) as dag:
        reads = [
            ExpiryReportOperator(
                task_id=f"expiry__{foundation.name}",
                foundation=foundation.name,
                opsman_conn_id=foundation.conn_id,
                expires_within=foundation.expires_within,
                pool=foundation.pool,
            )
            for foundation in fleet.foundations
        ]
        FleetReportOperator(
            task_id="fleet_report",
            reports=[read.output for read in reads],
            foundations=[f.name for f in fleet.foundations],
            trigger_rule="all_done",
        )
        if fleet.trigger_due_rotations:
            trigger_due_rotations(fleet, reads)
    return dag


def trigger_due_rotations(fleet: Fleet, reads: list[ExpiryReportOperator]) -> None:
    """After each foundation's report, trigger its rotation DAG when it is due (which checks again)."""
    # Imported only here: most fleets do not trigger from the report (parse cost, bench/parse_cost.py).
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import task

    for foundation, read in zip(fleet.foundations, reads, strict=True):

        @task.short_circuit(task_id=f"due__{foundation.name}", ignore_downstream_trigger_rules=False)
        def is_due(report: dict[str, Any]) -> bool:
            return bool(report["due"])

        is_due(read.output) >> TriggerDagRunOperator(
            task_id=f"trigger__{foundation.name}",
            trigger_dag_id=foundation.dag_id,
            conf={"only_if_due": True},
        )


# ------------------------------------------------------------------------------------------------
# Which DAGs: one per foundation of the fleet file (include/foundations.yaml, or $OPSMAN_FLEET_FILE)
# plus the report; without a fleet file the single opsman_ca_rotation on opsman_default. A DAG built
# in a `with DAG(...)` block registers itself with the DAG processor (auto_register), so the fleet's
# DAGs need no module-level names.

FLEET = load_fleet()
if FLEET is None:
    dag = build_rotation_dag()
else:
    for _foundation in FLEET.foundations:
        build_rotation_dag(_foundation, FLEET.path)
    build_expiry_report_dag(FLEET)
