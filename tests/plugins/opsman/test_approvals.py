"""Change control (opsman.approvals): which steps can be approved, what the approval page says, how an
answer is recorded, what a reject stops, and the fleet file's settings. Real answers through Airflow's
REST API and UI are in tests/system/test_approvals.py and tests/system/test_browser.py."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
from airflow_versions import DagBag

from opsman.approvals import (
    APPROVABLE_STEPS,
    StepApprovalOperator,
    approval_body,
    approval_record,
    check_steps,
    describe,
    resume_hint,
    timeout_kwargs,
)
from opsman.compat import AirflowSkipException
from opsman.exceptions import OpsManagerConfigError
from opsman.fleet import FleetFileError, load_fleet
from opsman.planning import STEPS, VERIFY, RotationPlan
from opsman.reports import RotationSummaryOperator

try:
    from airflow.sdk.exceptions import DownstreamTasksSkipped
except ImportError:  # Airflow 3.1
    from airflow.exceptions import DownstreamTasksSkipped  # type: ignore[no-redef]

DAGS = Path(__file__).resolve().parents[3] / "dags"
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
OLD, NEW = "0f1e2d3c-old", "9a8b7c6d-new"


@pytest.fixture
def dag():  # a fresh one per test: tests set attributes of its tasks
    return DagBag(dag_folder=str(DAGS)).dags["opsman_ca_rotation"]


def approval_task_ids(dag) -> list[str]:
    """The DAG's approval tasks, in procedure order."""
    order = {s: n for n, s in enumerate(APPROVABLE_STEPS)}
    tasks = [t for t in dag.tasks if isinstance(t, StepApprovalOperator)]
    return [t.task_id for t in sorted(tasks, key=lambda t: order[t.step])]


def plan(**kwargs) -> RotationPlan:
    return RotationPlan(
        **{"stage": "generated", "old_ca_guid": OLD, "new_ca_guid": NEW, "done": {}, **kwargs}
    )


class TestSteps:
    def test_every_write_step_and_every_apply_changes_can_be_approved_not_the_read_only_check(self):
        assert set(APPROVABLE_STEPS) == set(STEPS) - {VERIFY}
        assert list(APPROVABLE_STEPS) == [s for s in STEPS if s in APPROVABLE_STEPS]  # procedure order

    def test_a_list_of_known_steps_is_kept_in_order(self):
        assert check_steps(["delete_ca", "activate_ca"], "x") == ["delete_ca", "activate_ca"]
        # null: what the trigger form's multi-select sends with nothing selected
        assert check_steps([], "x") == [] and check_steps(None, "x") == []

    @pytest.mark.parametrize(
        "value", [["activate"], ["delete_ca", "delete_ca"], {"activate_ca": True}, "delete_ca"]
    )
    def test_anything_else_is_refused_naming_the_allowed_steps(self, value):
        allowed = (
            "must be a list of steps among initial_apply_changes, generate_ca, apply_new_ca, activate_ca,"
        )
        with pytest.raises(OpsManagerConfigError, match=f"^task t: approve_before {allowed}.*; got"):
            check_steps(value, "task t")

    def test_the_timeout_is_minutes_and_zero_means_no_limit(self):
        assert timeout_kwargs(0) == {}
        (value,) = timeout_kwargs(90).values()
        assert value == dt.timedelta(minutes=90)
        for bad in (-1, True, "90"):
            with pytest.raises(OpsManagerConfigError, match="approval_timeout_minutes must be a number"):
                timeout_kwargs(bad)


class TestBody:
    def test_the_page_says_what_happens_where_to_which_cas_and_what_the_plan_found(self):
        cas = [
            {"guid": OLD, "active": True, "expires_at": "2027-01-05T00:00:00Z"},
            {"guid": NEW, "active": False, "expires_at": "2031-12-01T09:00:00Z"},
        ]
        body = approval_body(
            step="delete_ca",
            foundation="foundation **east** at https://opsman.example (connection `opsman_east`)",
            plan=plan(done={"generate_ca": "CA 9a8b was generated"}),
            certificate_authorities=cas,
            new_ca_guid=None,
            timeout=dt.timedelta(hours=2),
        )
        assert "### Approve `delete_ca` on foundation **east** at https://opsman.example" in body
        assert f"**Delete the old CA** `{OLD}`" in body and "cannot be undone" in body
        assert f"- old CA: `{OLD}` (active, expires 2027-01-05T00:00:00Z)" in body
        assert f"- new CA: `{NEW}` (inactive, expires 2031-12-01T09:00:00Z)" in body
        assert "(stage `generated`)" in body and "- done: `generate_ca` (CA 9a8b was generated)" in body
        assert (
            "- to do: `initial_apply_changes`, `verify_new_ca_inactive`, `apply_new_ca`, `activate_ca`,"
            in body
        )
        assert "No answer within 2 h 0 min counts as **Reject**" in body

    def test_before_the_new_ca_exists_the_page_says_so(self):
        body = approval_body(
            step="generate_ca",
            foundation="the Ops Manager",
            plan=plan(stage="not_started", new_ca_guid=None),
            certificate_authorities=[{"guid": OLD, "active": True, "expires_at": "2027-01-05T00:00:00Z"}],
            new_ca_guid=None,
            custom_ca_conn_id="corporate_ca",
        )
        assert "uploads the CA of connection `corporate_ca`" in body
        assert "- new CA: not generated yet" in body


class TestAnswers:
    USER = {"id": "7", "name": "alice"}

    def test_an_approval_records_who_and_when(self):
        record = approval_record(
            "activate_ca",
            "activate_new_ca.approve_activate_ca",
            {"chosen_options": ["Approve"], "responded_by_user": self.USER, "responded_at": NOW},
        )
        assert record == {
            "step": "activate_ca",
            "task_id": "activate_new_ca.approve_activate_ca",
            "decision": "approved",
            "by": {"id": "7", "name": "alice"},
            "at": "2026-12-01T09:00:00Z",
            "timed_out": False,
            "reason": None,
        }
        assert describe(record) == "activate_ca: approved by alice (id 7) at 2026-12-01T09:00:00Z"

    def test_a_rejection_keeps_the_reason_and_the_summary_says_how_to_resume(self):
        record = approval_record(
            "delete_ca",
            "delete_old_ca.approve_delete_ca",
            {
                "chosen_options": ["Reject"],
                "params_input": {"reason": "change window closed"},
                "responded_by_user": self.USER,
                "responded_at": NOW,
            },
        )
        assert record["decision"] == "rejected" and record["reason"] == "change window closed"
        hint = resume_hint(record)
        assert hint.startswith("Stopped before step delete_ca (delete_old_ca.approve_delete_ca): delete_ca: ")
        assert "rejected by alice (id 7)" in hint and "trigger the DAG again" in hint

    @pytest.mark.parametrize("chosen", ["Reject", "Approve"])
    def test_a_timeout_is_a_rejection_never_an_approval(self, chosen):
        # Airflow writes the default option (Reject) with no responder; even an Approve without a person is refused.
        record = approval_record(
            "generate_ca",
            "create_new_ca.approve_generate_ca",
            {"chosen_options": [chosen], "responded_by_user": None, "responded_at": NOW, "timedout": True},
        )
        assert record["decision"] == "rejected" and record["timed_out"] and record["by"] is None
        assert "timed out" in record["reason"]


class RecordingTi:
    """What execute_complete uses of the running task instance: XCom push (recorded)."""

    map_index = -1

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


class TestInTheDag:
    def test_opsman_ca_rotation_has_an_approval_right_before_every_approvable_step(self, dag):
        ids = approval_task_ids(dag)
        assert [dag.get_task(i).step for i in ids] == list(APPROVABLE_STEPS)
        for task_id in ids:
            approval = dag.get_task(task_id)
            # its step, and the summary (which reports the answer)
            (step_task,) = [t for t in approval.downstream_list if t.task_id != "summary"]
            assert step_task.step == approval.step and "summary" in approval.downstream_task_ids
            assert approval.task_group.group_id == step_task.task_group.group_id
            # everything the step waits for comes before the approval too: nothing is asked too early
            assert set(step_task.upstream_task_ids) - {task_id} <= approval.get_flat_relative_ids(
                upstream=True
            )
            assert (
                approval.defaults == ["Reject"] and approval.approve_before == "{{ params.approve_before }}"
            )

    def test_no_approval_is_asked_by_default_or_in_a_dry_run_or_for_a_step_already_done(self, dag):
        approval = dag.get_task("delete_old_ca.approve_delete_ca")
        assert dag.params["approve_before"] == []
        for approve_before, the_plan, skipped in (
            ([], plan(), None),
            (["delete_ca"], plan(dry_run=True), "dry run: no approval asked for delete_ca"),
            (["delete_ca"], plan(done={"delete_ca": "gone"}), "delete_ca is already done (gone)"),
        ):
            approval.approve_before, approval.plan = approve_before, the_plan.to_json()
            if skipped is None:
                assert approval.execute({}) is None
            else:
                with pytest.raises(AirflowSkipException, match=re.escape(skipped)):
                    approval.execute({})

    def test_a_reject_skips_every_later_task_but_the_summary_and_records_the_answer(self, dag):
        approval = dag.get_task("activate_new_ca.approve_activate_ca")
        ti = RecordingTi()
        with pytest.raises(DownstreamTasksSkipped) as skipped:
            approval.execute_complete(
                {"ti": ti, "task": approval},
                {
                    "chosen_options": ["Reject"],
                    "params_input": {},
                    "responded_by_user": {"id": "1", "name": "bob"},
                    "responded_at": NOW,
                },
            )
        later = approval.get_flat_relative_ids(upstream=False)
        assert set(skipped.value.tasks) == later - {"summary"}
        assert {"activate_new_ca.activate_ca", "delete_old_ca.delete_ca", "verify.verify_rotation"} <= set(
            skipped.value.tasks
        )
        assert ti.pushed["return_value"]["decision"] == "rejected"
        assert ti.pushed["return_value"]["by"] == {"id": "1", "name": "bob"}

    def test_the_summary_lists_the_answers_and_a_reject_says_where_the_rotation_stopped(self, dag):
        summary = dag.get_task("summary")
        assert isinstance(summary, RotationSummaryOperator)
        assert [a.operator.task_id for a in summary.approvals] == approval_task_ids(dag)
        user = {"id": "1", "name": "bob"}
        approved = approval_record(
            "activate_ca",
            "activate_new_ca.approve_activate_ca",
            {"chosen_options": ["Approve"], "responded_by_user": user, "responded_at": NOW},
        )
        rejected = approval_record(
            "delete_ca",
            "delete_old_ca.approve_delete_ca",
            {"chosen_options": ["Reject"], "responded_by_user": user, "responded_at": NOW},
        )
        for answered, stopped in (([approved], ""), ([approved, rejected], resume_hint(rejected))):
            summary.approvals = [None, *answered, None]  # tasks that asked nothing pushed nothing
            report, lines = {}, ["Root CA: old -> new (active)"]
            assert summary.add_approvals(report, lines) == stopped
            assert report["approvals"] == answered
            assert lines[2:] == [f"  {describe(a)}" for a in answered] + ([stopped] if stopped else [])
            assert report.get("stopped_before") == ("delete_ca" if stopped else None)
            assert lines[0].startswith("Rotation stopped" if stopped else "Root CA")

    def test_an_approval_lets_the_step_run(self, dag):
        approval = dag.get_task("activate_new_ca.approve_activate_ca")
        ti = RecordingTi()
        record = approval.execute_complete(
            {"ti": ti, "task": approval},
            {
                "chosen_options": ["Approve"],
                "params_input": {},
                "responded_by_user": {"id": "1", "name": "bob"},
                "responded_at": NOW,
            },
        )
        assert record["decision"] == "approved" and ti.pushed == {}


class TestFleetFile:
    def write(self, tmp_path, **fields) -> Path:
        path = tmp_path / "foundations.yaml"
        path.write_text(
            yaml.safe_dump({"foundations": [{"name": "east", "conn_id": "opsman_east", **fields}]})
        )
        return path

    def test_a_foundation_names_its_steps_and_timeout_and_its_dag_gets_only_those_approvals(
        self, tmp_path, monkeypatch
    ):
        path = self.write(tmp_path, approve_before=["activate_ca", "delete_ca"], approval_timeout_minutes=60)
        (east,) = load_fleet(path).foundations
        assert east.settings["approve_before"] == ["activate_ca", "delete_ca"]
        assert east.settings["approval_timeout_minutes"] == 60
        monkeypatch.setenv("OPSMAN_FLEET_FILE", str(path))
        fleet_dag = DagBag(dag_folder=str(DAGS)).dags["opsman_ca_rotation__east"]
        assert '| `approve_before` | `["activate_ca", "delete_ca"]` |' in fleet_dag.doc_md  # values in force
        ids = approval_task_ids(fleet_dag)
        assert ids == ["activate_new_ca.approve_activate_ca", "delete_old_ca.approve_delete_ca"]
        approval = fleet_dag.get_task(ids[0])
        assert isinstance(approval, StepApprovalOperator)
        assert approval.approve_before == ["activate_ca", "delete_ca"] and approval.timeout_minutes == 60
        assert approval.foundation == "east" and approval.pool == "opsman_east"
        assert "approve_before" not in fleet_dag.params  # a fleet setting, not a per-run choice

    def test_without_the_setting_a_foundation_asks_nothing(self, tmp_path, monkeypatch):
        monkeypatch.setenv("OPSMAN_FLEET_FILE", str(self.write(tmp_path)))
        assert approval_task_ids(DagBag(dag_folder=str(DAGS)).dags["opsman_ca_rotation__east"]) == []

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            (
                {"approve_before": ["activate"]},
                r"field 'approve_before': must be a list of steps among .*got 'activate'",
            ),
            ({"approve_before": "all"}, r"field 'approve_before': must be a list of steps among .*got 'all'"),
            (
                {"approve_before": ["delete_ca", "delete_ca"]},
                r"field 'approve_before': .*each named once; got",
            ),
            (
                {"approval_timeout_minutes": "1h"},
                r"field 'approval_timeout_minutes': must be a number of minutes",
            ),
            (
                {"approval_timeout_minutes": -5},
                r"field 'approval_timeout_minutes': must be a number of minutes",
            ),
        ],
    )
    def test_a_bad_value_is_refused_naming_the_foundation_and_the_field(self, tmp_path, fields, message):
        with pytest.raises(FleetFileError, match=rf"foundation 'east', {message}"):
            load_fleet(self.write(tmp_path, **fields))

    def test_an_airflow_without_human_in_the_loop_tasks_refuses_the_setting(self, tmp_path, monkeypatch):
        # The supported range always has them: only a stand-in for the import's failure can show this.
        monkeypatch.setattr(
            "opsman.fleet_schema.human_in_the_loop_missing",
            lambda: "approve_before needs Airflow's human-in-the-loop tasks",
        )
        with pytest.raises(FleetFileError, match="field 'approve_before': approve_before needs Airflow's"):
            load_fleet(self.write(tmp_path, approve_before=["delete_ca"]))
        assert load_fleet(self.write(tmp_path, approve_before=[])).foundations[0].approve_before == []
