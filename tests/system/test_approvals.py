"""System test: change control on a real local Airflow, answered only through Airflow's REST API.

One run asks for approval before ``activate_ca`` and ``delete_ca``. The test approves the first and
rejects the second (PATCH .../hitlDetails, as a change-management tool or a person's script would), and
after each answer reads Ops Manager's state and the request journal from the simulator: nothing is
written while a step waits for its approval, the approved step runs, and after the reject nothing at
all is written. A second run resumes from Ops Manager's state and finishes once the deletion is
approved. A third shows that no answer within the timeout is a rejection.
"""

from __future__ import annotations

import pytest
from approval_support import ACTIVATE, DELETE, answer, hitl_path, start_rotation, wait_for_approval_request

pytestmark = pytest.mark.system


def test_approve_one_step_reject_another_then_resume(local_airflow):
    sim, old_guid, start, run_id = start_rotation(
        local_airflow, {"approve_before": ["activate_ca", "delete_ca"]}, prefix="approve"
    )

    # 1. Waiting before activate_ca: the new CA exists, inactive; nothing was activated.
    wait_for_approval_request(local_airflow, run_id, ACTIVATE)
    cas = sim.cas()
    (new_guid,) = set(cas) - {old_guid}
    assert cas == {old_guid: True, new_guid: False}
    assert ("POST", f"/api/v0/certificate_authorities/{new_guid}/activate") not in sim.writes(start)
    request = local_airflow.api.request("GET", hitl_path(run_id, ACTIVATE))
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    body = request["body"]
    assert "Activate the new CA" in body and new_guid in body and old_guid in body, body
    assert (
        "expires 20" in body and "stage `not_started`" in body and local_airflow.info["simulator_url"] in body
    )
    quiet = sim.last_seq()

    # 2. Approve: activate_ca runs, then the rotation goes on until it waits before delete_ca.
    answered = answer(local_airflow, run_id, ACTIVATE, "Approve")
    assert answered["responded_by"]["name"] == local_airflow.username
    wait_for_approval_request(local_airflow, run_id, DELETE)
    writes = sim.writes(quiet)
    assert writes[0] == ("POST", f"/api/v0/certificate_authorities/{new_guid}/activate"), writes
    assert ("POST", "/api/v0/certificate_authorities/active/regenerate") in writes
    assert not [w for w in writes if w[0] == "DELETE"], writes
    assert sim.cas() == {old_guid: False, new_guid: True}
    approved = local_airflow.xcom(run_id, ACTIVATE)
    assert approved["decision"] == "approved" and approved["by"]["name"] == local_airflow.username
    assert approved["at"] and not approved["timed_out"]
    log = local_airflow.log_text(run_id, ACTIVATE)
    assert f"Approved: activate_ca: approved by {local_airflow.username}" in log, log[-2000:]

    # 3. Reject before delete_ca: the run ends without another write; the old CA stays.
    rejected_at = sim.last_seq()
    answer(local_airflow, run_id, DELETE, "Reject", reason="change window closed")
    assert local_airflow.wait_for_run(run_id) == "success"
    assert sim.writes(rejected_at) == []
    assert sim.cas() == {old_guid: False, new_guid: True}
    tis = local_airflow.task_instances(run_id)
    for task_id in ("delete_old_ca.delete_ca", "delete_old_ca.apply_changes", "verify.verify_rotation"):
        assert tis[task_id]["state"] == "skipped", (task_id, tis[task_id]["state"])
    assert tis[DELETE]["state"] == "success" and tis["summary"]["state"] == "skipped"
    log = local_airflow.log_text(run_id, DELETE)
    assert f"rejected by {local_airflow.username}" in log and "change window closed" in log, log[-2000:]
    summary = local_airflow.xcom(run_id, "summary")
    assert summary["stopped_before"] == "delete_ca"
    assert [(a["step"], a["decision"], a["by"]["name"]) for a in summary["approvals"]] == [
        ("activate_ca", "approved", local_airflow.username),
        ("delete_ca", "rejected", local_airflow.username),
    ]
    summary_log = local_airflow.log_text(run_id, "summary")
    assert "Stopped before step delete_ca" in summary_log and "trigger the DAG again" in summary_log

    # 4. Resume: a new run plans from Ops Manager's state, asks only before delete_ca, and finishes.
    resumed = local_airflow.trigger(
        {"poll_interval_seconds": 1, "approve_before": ["activate_ca", "delete_ca"]}, prefix="resume"
    )
    wait_for_approval_request(local_airflow, resumed, DELETE)
    assert local_airflow.task_instances(resumed)[ACTIVATE]["state"] == "skipped"  # the plan marks it done
    answer(local_airflow, resumed, DELETE, "Approve")
    assert local_airflow.wait_for_run(resumed) == "success"
    assert sim.cas() == {new_guid: True}
    report = local_airflow.xcom(resumed, "summary")
    assert report["new_ca_guid"] == new_guid
    assert [(a["step"], a["decision"]) for a in report["approvals"]] == [("delete_ca", "approved")]


def test_no_answer_before_the_timeout_is_a_rejection(local_airflow):
    sim, old_guid, start, run_id = start_rotation(
        # 0.05 minutes: 3 s to answer, and nobody does
        local_airflow,
        {"approve_before": ["generate_ca"], "approval_timeout_minutes": 0.05},
        prefix="timeout",
    )
    assert local_airflow.wait_for_run(run_id) == "success"
    record = local_airflow.xcom(run_id, "create_new_ca.approve_generate_ca")
    assert record["decision"] == "rejected" and record["timed_out"] and record["by"] is None
    assert local_airflow.task_instances(run_id)["create_new_ca.generate_ca"]["state"] == "skipped"
    assert sim.cas() == {old_guid: True}
    assert not [w for w in sim.writes(start) if "certificate_authorities" in w[1]]
