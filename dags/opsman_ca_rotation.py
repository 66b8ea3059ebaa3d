"""Rotate the root CA of one Ops Manager foundation, in the documented order.

The task groups follow "Regenerating and Rotating Non-Configurable TLS/SSL Certificates":
initial Apply Changes → create a new CA → activate it (list, Apply Changes, activate) → regenerate the
non-configurable certificates (+ Apply Changes) → delete the old CA (+ Apply Changes).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup, task
from opsman.hooks import OpsManagerHook
from opsman.operators import (
    WATERMARK_KEY,
    ActivateCertificateAuthorityOperator,
    ApplyChangesOperator,
    CheckOpsManagerOperator,
    DeleteCertificateAuthorityOperator,
    GenerateCertificateAuthorityOperator,
    RegenerateCertificatesOperator,
    VerifyCertificateAuthoritiesOperator,
)
from opsman.sensors import ApplyChangesSensor

CONN = "{{ params.opsman_conn_id }}"
APPLY_GROUPS = ("initial_apply_changes", "activate_new_ca", "regenerate_certificates", "delete_old_ca")

DOC_MD = """
### Rotate the Ops Manager root CA

One run performs the whole documented rotation, each step a task with its own retries and logs:

| group | what it does |
|---|---|
| `preflight` | fetches a UAA token, lists the CAs and the last installations |
| `initial_apply_changes` | Apply Changes, so the rotation starts from a deployed state (Param `initial_apply_changes`) |
| `create_new_ca` | `POST /api/v0/certificate_authorities/generate`: a new CA, **inactive** |
| `activate_new_ca` | lists the CAs (new one inactive), Apply Changes (adds it to every trust store), activates it |
| `regenerate_certificates` | regenerates the non-configurable leaf certificates under the new CA, Apply Changes |
| `delete_old_ca` | deletes the old CA, Apply Changes (removes it from the trust stores) |

Every task decides from Ops Manager's state what is left to do, so a retried task never generates a
second CA, never deletes the active or the new CA, and never starts an Apply Changes while one runs:
it attaches to it. Configurable certificates (rotated in the Ops Manager UI) are out of scope.
"""


def apply_changes(after_task_id: str) -> Any:
    """Apply Changes carrying the change made by ``after_task_id``, then wait for it to succeed."""
    start = ApplyChangesOperator(
        task_id="apply_changes",
        opsman_conn_id=CONN,
        after_installation_id=f"{{{{ ti.xcom_pull(task_ids='{after_task_id}', key='{WATERMARK_KEY}') }}}}",
        deploy_products="{{ params.deploy_products }}",
        wait_poll_seconds="{{ params.poll_interval_seconds }}",
    )
    wait = ApplyChangesSensor(
        task_id="wait_for_apply_changes",
        opsman_conn_id=CONN,
        installation_id=start.output,
        poll_interval_seconds="{{ params.poll_interval_seconds }}",
    )
    start >> wait
    return start, wait


with DAG(
    dag_id="opsman_ca_rotation",
    description="Rotate the root CA of an Ops Manager foundation through its API",
    doc_md=DOC_MD,
    schedule=None,
    max_active_runs=1,
    catchup=False,
    render_template_as_native_obj=True,
    tags={"opsman", "certificates"},
    default_args={
        "owner": "platform",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
    },
    params={
        "opsman_conn_id": Param(
            "opsman_default",
            type="string",
            minLength=1,
            title="Ops Manager connection",
            description="Airflow connection (type opsman) of the foundation to rotate.",
        ),
        "poll_interval_seconds": Param(
            30,
            type="integer",
            minimum=1,
            maximum=3600,
            title="Poll interval (seconds)",
            description="How often to ask Ops Manager whether an Apply Changes has finished.",
        ),
        "deploy_products": Param(
            "all",
            type=["string", "array"],
            title="Products to deploy",
            description=(
                "What each Apply Changes deploys: 'all' (what the rotation docs require), 'none' "
                "(director only), or a list of product GUIDs."
            ),
        ),
        "initial_apply_changes": Param(
            True,
            type="boolean",
            title="Initial Apply Changes",
            description="Run the Apply Changes the procedure starts with, before generating the new CA.",
        ),
    },
) as dag:
    with TaskGroup("preflight"):
        check = CheckOpsManagerOperator(task_id="check_ops_manager", opsman_conn_id=CONN)

    with TaskGroup("initial_apply_changes"):

        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def initial_apply_changes_wanted(params: dict[str, Any] | None = None) -> bool:
            return bool((params or {}).get("initial_apply_changes", True))

        wanted = initial_apply_changes_wanted()
        initial_apply, initial_wait = apply_changes("preflight.check_ops_manager")
        check >> wanted >> initial_apply

    with TaskGroup("create_new_ca"):
        generate = GenerateCertificateAuthorityOperator(
            task_id="generate_ca", opsman_conn_id=CONN, trigger_rule="none_failed"
        )
        initial_wait >> generate

    with TaskGroup("activate_new_ca"):
        verify = VerifyCertificateAuthoritiesOperator(
            task_id="verify_new_ca_inactive", opsman_conn_id=CONN, new_ca_guid=generate.output
        )
        apply_new_ca, wait_new_ca = apply_changes("create_new_ca.generate_ca")
        activate = ActivateCertificateAuthorityOperator(
            task_id="activate_ca", opsman_conn_id=CONN, new_ca_guid=generate.output
        )
        verify >> apply_new_ca
        wait_new_ca >> activate

    with TaskGroup("regenerate_certificates"):
        regenerate = RegenerateCertificatesOperator(
            task_id="regenerate_leaf_certificates", opsman_conn_id=CONN, new_ca_guid=generate.output
        )
        apply_leaves, wait_leaves = apply_changes("regenerate_certificates.regenerate_leaf_certificates")
        activate >> regenerate >> apply_leaves

    with TaskGroup("delete_old_ca"):
        delete = DeleteCertificateAuthorityOperator(
            task_id="delete_ca", opsman_conn_id=CONN, old_ca_guid=verify.output, new_ca_guid=generate.output
        )
        apply_delete, wait_delete = apply_changes("delete_old_ca.delete_ca")
        wait_leaves >> delete >> apply_delete

    @task
    def summary(old_ca_guid: str, new_ca_guid: str, params: dict[str, Any] | None = None, ti: Any = None) -> dict[str, Any]:
        """What the rotation did: the two CAs, and each Apply Changes it waited for with its duration."""
        waits = [f"{group}.wait_for_apply_changes" for group in APPLY_GROUPS]
        ids = dict(zip(APPLY_GROUPS, ti.xcom_pull(task_ids=waits)))
        hook = OpsManagerHook(opsman_conn_id=(params or {})["opsman_conn_id"])
        installations = {i.id: i for i in hook.list_installations()}
        report = {
            "old_ca_guid": old_ca_guid,
            "new_ca_guid": new_ca_guid,
            "installations": {
                group: installations[i].summary() if i in installations else None for group, i in ids.items()
            },
        }
        lines = [f"Rotated the root CA: {old_ca_guid} (deleted) -> {new_ca_guid} (active)"]
        for group, info in report["installations"].items():
            lines.append(
                f"  {group:<24} " + (f"installation {info['id']}: {info['status']}, {info['duration_seconds']} s" if info else "skipped")
            )
        print("\n".join(lines))  # task stdout goes to the task log
        return report

    # Only tasks that must succeed feed the summary: a skipped initial Apply Changes must not skip it
    # (a skipped last task would mark a failed rotation as successful).
    wait_delete >> summary(verify.output, generate.output)
