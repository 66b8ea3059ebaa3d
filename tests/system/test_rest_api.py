"""System test: the rotation DAG in a real local Airflow (api-server, scheduler, dag-processor,
triggerer; SQLite + LocalExecutor), triggered and inspected only through the REST API, as a user's
tooling would. The deferrable sensors really defer to the triggerer here, unlike ``dags test``.
"""

from __future__ import annotations

import re
import time

import pytest
from system_support import DAG_ID, SENSORS

pytestmark = pytest.mark.system


def test_connection_form_served_to_the_ui(local_airflow):
    meta = {m["connection_type"]: m for m in local_airflow.api.request("GET", "/ui/connections/hook_meta")}
    opsman = meta["opsman"]
    assert opsman["hook_name"] == "VMware Tanzu Ops Manager"
    assert opsman["standard_fields"]["host"]["title"] == "Ops Manager URL"
    assert opsman["standard_fields"]["port"]["hidden"] is True
    assert opsman["extra_fields"]["client_secret"]["schema"]["format"] == "password"
    assert opsman["extra_fields"]["ca_cert"]["schema"]["format"] == "multiline"
    assert opsman["extra_fields"]["skip_ssl_validation"]["schema"]["type"] == ["boolean", "null"]


def test_rotation_through_the_rest_api(local_airflow):
    dag = local_airflow.api.request("GET", f"/api/v2/dags/{DAG_ID}")
    assert dag["is_paused"] is False

    local_airflow.reset_simulator()
    started = time.monotonic()
    run_id = local_airflow.trigger({"poll_interval_seconds": 1}, prefix="rest")
    state = local_airflow.wait_for_run(run_id)
    elapsed = time.monotonic() - started
    tis = local_airflow.task_instances(run_id)
    summary = {t: (ti["state"], ti["try_number"]) for t, ti in tis.items()}
    assert state == "success", summary
    print(f"rotation run {run_id}: {state} in {elapsed:.1f} s")

    # Every task ran once and succeeded (a skip only where the DAG decides to skip), no retries.
    assert not [t for t, (s, _) in summary.items() if s not in ("success", "skipped")], summary
    assert all(n == 1 for _, n in summary.values()), summary
    for task_id in (
        "preflight.check_ops_manager",
        "create_new_ca.generate_ca",
        "activate_new_ca.verify_new_ca_inactive",
        "activate_new_ca.activate_ca",
        "regenerate_certificates.regenerate_leaf_certificates",
        "delete_old_ca.delete_ca",
        "summary",
        *SENSORS,
    ):
        assert summary[task_id] == ("success", 1), task_id
    for group in ("initial_apply_changes", "activate_new_ca", "regenerate_certificates", "delete_old_ca"):
        assert tis[f"{group}.apply_changes"]["state"] == "success"

    # The sensors' logs carry Ops Manager's installation log lines (forwarded from the triggerer).
    installation_ids = []
    for sensor in SENSORS:
        text = local_airflow.log_text(run_id, sensor, tis[sensor]["try_number"])
        assert re.search(r"\[installation \d+\] ", text), (
            f"no installation log lines in {sensor}'s log:\n{text[-2000:]}"
        )
        installation_ids.append(local_airflow.xcom(run_id, sensor))
    assert len(set(installation_ids)) == 4, installation_ids

    # The summary names the rotated CAs.
    report = local_airflow.xcom(run_id, "summary")
    assert report["old_ca_guid"] != report["new_ca_guid"]


def test_extra_links_point_at_ops_manager(local_airflow):
    runs = local_airflow.api.request(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns?state=success&order_by=-end_date&limit=1"
    )
    if not runs["dag_runs"]:
        pytest.skip("no successful run to read links from")
    run_id = runs["dag_runs"][0]["dag_run_id"]
    links = local_airflow.links(run_id, "delete_old_ca.apply_changes")
    if "Ops Manager installation" not in links:
        pytest.skip(
            "OpsManagerInstallationLink is not wired on ApplyChangesOperator yet (operator_extra_links)"
        )
    installation = local_airflow.xcom(run_id, "delete_old_ca.apply_changes")
    sim = local_airflow.info["simulator_url"]
    assert links["Ops Manager installation"] == f"{sim}/installation_logs/{installation}"
    verify = local_airflow.links(run_id, "activate_new_ca.verify_new_ca_inactive")
    if "Ops Manager certificates" in verify:
        assert verify["Ops Manager certificates"] == f"{sim}/certificates"
