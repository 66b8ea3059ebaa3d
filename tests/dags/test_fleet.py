"""A fleet of foundations: one DAG per foundation from the fleet file, expiry-driven scheduled runs,
per-foundation pools, the expiry report, the root-CA Asset event and notifiers.

The DAG file reads the fleet file named by ``$OPSMAN_FLEET_FILE`` (set per test); every foundation is
a simulator over real HTTPS with its own connection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.state import DagRunState, TaskInstanceState
from recording_notifier import calls
from support import (
    SIM_PASSWORD,
    SIM_USER,
    api_writes,
    check_rotation_invariants,
    connection_json,
    polling_fast,
)

from opsman.sensors import ApplyChangesSensor
from opsman_simulator.process import SimulatorProcess

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
NOTIFIER = "recording_notifier.RecordingNotifier"


@pytest.fixture(scope="module")
def young_sim(tmp_path_factory):
    """A foundation whose root CA was made 10 days ago (expires in about 4 years)."""
    sim = SimulatorProcess(
        tmp_path_factory.mktemp("young"),
        apply_seconds=0.5,
        username=SIM_USER,
        password=SIM_PASSWORD,
        extra_args=["--initial-ca-age-days", "10"],
    ).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def newer_sim(tmp_path_factory):
    """An Ops Manager 2.10+ (names the rotation procedure of each certificate), CA 1200 days old."""
    sim = SimulatorProcess(
        tmp_path_factory.mktemp("newer"),
        apply_seconds=0.5,
        username=SIM_USER,
        password=SIM_PASSWORD,
        extra_args=["--answer-style", "2.10"],
    ).start()
    yield sim
    sim.stop()


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """Write a fleet file of ``{name: (simulator, fields)}``, wire each connection, point the DAG file at it."""

    def make(foundations: dict, **top) -> Path:
        entries = []
        for name, (sim, fields) in foundations.items():
            conn_id = f"opsman_{name}_conn"
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(sim))
            entries.append({"name": name, "conn_id": conn_id, **fields})
        path = tmp_path / "foundations.yaml"
        path.write_text(yaml.safe_dump({**top, "foundations": entries}))
        monkeypatch.setenv("OPSMAN_FLEET_FILE", str(path))
        return path

    return make


def dagbag() -> DagBag:
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}, bag.import_errors
    return bag


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def xcom(dag_run, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        )
    return XComModel.deserialize_value(type("Row", (), {"value": value})()) if value is not None else None


@pytest.fixture
def as_scheduled(monkeypatch):
    """dag.test() always creates a manual run; make it create a *scheduled* one, as the scheduler does."""
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.utils.types import DagRunType

    original = SerializedDAG.create_dagrun

    def create_dagrun(self, *args, **kwargs):
        kwargs["run_type"] = DagRunType.SCHEDULED
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SerializedDAG, "create_dagrun", create_dagrun)


ROTATION_TASK_IDS = [
    "preflight.check_ops_manager",
    "preflight.wait_for_running_installation",
    "preflight.plan_rotation",
    "preflight.check_pending_changes",
    *(
        f"{g}.{t}"
        for g in ("initial_apply_changes", "activate_new_ca", "regenerate_certificates", "delete_old_ca")
        for t in ("apply_changes", "wait_for_apply_changes")
    ),
    "create_new_ca.generate_ca",
    "activate_new_ca.verify_new_ca_inactive",
    "activate_new_ca.activate_ca",
    "regenerate_certificates.regenerate_leaf_certificates",
    "delete_old_ca.delete_ca",
    "verify.verify_rotation",
    "summary",
]
FAST = {"poll_interval_seconds": 1, "apply_changes": {"initial": False}}


class TestFleetDags:
    def test_three_foundations_give_three_rotation_dags_and_the_report(
        self, fleet, sim, young_sim, newer_sim
    ):
        fleet(
            {
                "east": (sim, {}),
                "west": (young_sim, {"schedule": "0 6 * * 1-4", "expires_within": "6w"}),
                "lab": (newer_sim, {"schedule": None, "apply_changes": {"deploy_products": "none"}}),
            }
        )
        bag = dagbag()
        assert set(bag.dag_ids) == {
            "opsman_ca_rotation__east",
            "opsman_ca_rotation__west",
            "opsman_ca_rotation__lab",
            "opsman_certificate_expiry_report",
        }
        east, west, lab = (bag.dags[f"opsman_ca_rotation__{n}"] for n in ("east", "west", "lab"))
        check = "preflight.check_ops_manager"
        assert (
            east.get_task(check).opsman_conn_id == "opsman_east_conn"
            and west.get_task(check).opsman_conn_id == "opsman_west_conn"
        )
        assert west.get_task(check).expires_within == "6w"
        assert lab.get_task("initial_apply_changes.apply_changes").deploy_products == "none"
        assert (east.schedule, west.schedule, lab.schedule) == ("@daily", "0 6 * * 1-4", None)
        # The documented procedure of the default DAG, with the expiry check in front of everything.
        due = east.get_task("rotation_due")
        assert set(east.task_ids) - {"rotation_due"} == set(ROTATION_TASK_IDS)
        assert east.get_task("preflight.check_ops_manager").upstream_task_ids == {"rotation_due"}
        assert {t.task_id for t in due.get_flat_relatives(upstream=False)} == set(ROTATION_TASK_IDS)

    def test_the_form_has_only_the_per_run_choices_and_every_setting_comes_from_the_fleet_file(
        self, fleet, sim, young_sim
    ):
        errands = {"cf": {"run_post_deploy": {"smoke-tests": True}}}
        options = {
            "deploy_products": ["cf"],
            "errands": errands,
            "recreate_vms": True,
            "force_latest_variables": True,
            "ignore_warnings": True,
            "mode": "manual",
            "initial": False,
        }
        fleet(
            {
                "east": (
                    sim,
                    {
                        "expires_within": "6w",
                        "poll_interval_seconds": 7,
                        "wait_mode": "reschedule",
                        "if_installation_running": "fail",
                        "custom_ca_conn_id": "my_ca",
                        "apply_changes": options,
                    },
                ),
                "west": (young_sim, {}),
            }
        )
        bag = dagbag()
        east, west = bag.dags["opsman_ca_rotation__east"], bag.dags["opsman_ca_rotation__west"]
        for dag in (east, west):
            assert list(dag.params.keys()) == [
                "dry_run",
                "only_if_due",
                "allow_pending_changes",
                "recent_rotation_days",
            ]
            assert dict(dag.params) == {
                "dry_run": False,
                "only_if_due": False,
                "allow_pending_changes": False,
                "recent_rotation_days": 7,
            }
            assert all(not t.params for t in dag.tasks), (
                "tasks carry no copy of the form; runs merge the DAG's"
            )
        expected = {
            "opsman_conn_id": "opsman_east_conn",
            "expires_within": "6w",
            "poll_interval_seconds": 7,
            "wait_poll_seconds": 7,
            "if_installation_running": "fail",
            "custom_ca_conn_id": "my_ca",
            "deploy_products": ["cf"],
            "errands": errands,
            "recreate_vms": True,
            "force_latest_variables": True,
            "ignore_warnings": True,
            "apply_changes_mode": "manual",
            "initial_apply_changes": False,
        }
        seen: dict[str, set] = {}
        for task in east.tasks:
            for name, value in expected.items():
                if hasattr(task, name):
                    assert getattr(task, name) == value, (task.task_id, name)
                    assert name not in task.template_fields, (
                        task.task_id,
                        name,
                    )  # plain values, not templates
                    seen.setdefault(name, set()).add(task.task_id)
        assert set(seen) == set(expected), "every setting reaches some operator"
        assert seen["opsman_conn_id"] == set(east.task_ids)  # the summary too: an operator like the others
        assert len(seen["deploy_products"]) == 4  # every Apply Changes
        sensors = [t for t in east.tasks if isinstance(t, ApplyChangesSensor)]
        assert {(t.deferrable, t.mode, t.poll_interval_seconds) for t in sensors} == {
            (False, "reschedule", 7)
        }
        # What is still templated: XComs, and the four per-run choices.
        assert east.get_task("preflight.plan_rotation").template_fields == ("recent_rotation_days", "dry_run")
        assert (
            west.get_task("preflight.check_ops_manager").expires_within == "3m"
        )  # defaults when the file is silent
        assert west.get_task("initial_apply_changes.apply_changes").errands == {}
        # The DAG's docs show the values in force.
        for line in (
            '| `expires_within` | `"6w"` |',
            "| `poll_interval_seconds` | `7` |",
            '| `wait_mode` | `"reschedule"` |',
            '| `apply_changes_mode` | `"manual"` |',
            '| `deploy_products` | `["cf"]` |',
        ):
            assert line in east.doc_md, line

    def test_wait_mode_chooses_how_every_apply_changes_sensor_waits(self, fleet, sim, young_sim, newer_sim):
        fleet(
            {
                "east": (sim, {}),
                "west": (young_sim, {"wait_mode": "reschedule"}),
                "lab": (newer_sim, {"wait_mode": "poke"}),
            }
        )
        bag = dagbag()
        for name, expected in (
            ("east", (True, "poke")),
            ("west", (False, "reschedule")),
            ("lab", (False, "poke")),
        ):
            sensors = [
                t for t in bag.dags[f"opsman_ca_rotation__{name}"].tasks if isinstance(t, ApplyChangesSensor)
            ]
            assert len(sensors) == 5  # the running installation, and one per Apply Changes
            assert {(t.deferrable, t.mode) for t in sensors} == {expected}, name

    def test_an_invalid_fleet_file_is_one_clear_import_error(self, fleet, sim):
        path = fleet({"east": (sim, {}), "west": (sim, {"expires_within": "three months"})})
        bag = DagBag(dag_folder=str(DAGS))
        assert bag.dag_ids == [] or set(bag.dag_ids) == set()
        assert len(bag.import_errors) == 1
        (error,) = bag.import_errors.values()
        assert f"FleetFileError: {path}: foundation 'west', field 'expires_within'" in error

    def test_without_a_fleet_file_only_the_default_dag(self, monkeypatch, tmp_path):
        monkeypatch.delenv("OPSMAN_FLEET_FILE", raising=False)
        assert not (REPO / "include" / "foundations.yaml").exists(), (
            "the repository must not ship an active fleet file"
        )
        bag = dagbag()
        assert bag.dag_ids == ["opsman_ca_rotation"]
        # It keeps the full trigger form, and its operators take every setting from it.
        dag = bag.dags["opsman_ca_rotation"]
        assert len(dag.params) == 17 and "only_if_due" not in dag.params
        check = dag.get_task("preflight.check_ops_manager")
        assert (
            check.opsman_conn_id == "{{ params.opsman_conn_id }}"
            and "opsman_conn_id" in check.template_fields
        )
        assert dag.get_task("delete_old_ca.apply_changes").errands == "{{ params.errands }}"

    def test_every_task_that_talks_to_a_foundation_is_in_its_one_slot_pool(
        self, fleet, sim, young_sim, newer_sim, airflow_db
    ):
        import importlib.util

        path = fleet(
            {"east": (sim, {}), "west": (young_sim, {}), "lab": (newer_sim, {})},
            report={"trigger_due_rotations": True},
        )
        bag = dagbag()
        for name in ("east", "west", "lab"):
            rotation = bag.dags[f"opsman_ca_rotation__{name}"]
            assert {t.pool for t in rotation.tasks} == {f"opsman_{name}"}
            assert all(t.pool_slots == 1 for t in rotation.tasks)
        report = bag.dags["opsman_certificate_expiry_report"]
        talking = {t.task_id: t.pool for t in report.tasks if getattr(t, "opsman_conn_id", None)}
        assert talking == {
            "expiry__east": "opsman_east",
            "expiry__west": "opsman_west",
            "expiry__lab": "opsman_lab",
        }
        # The tasks not in a foundation's pool never call Ops Manager (no connection, no hook).
        assert {t.task_id for t in report.tasks} - set(talking) == {
            "fleet_report",
            *(f"{kind}__{n}" for kind in ("due", "trigger") for n in ("east", "west", "lab")),
        }

        spec = importlib.util.spec_from_file_location("create_pools", REPO / "scripts" / "create_pools.py")
        create_pools = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(create_pools)
        from airflow.models.pool import Pool

        Pool.create_or_update_pool("opsman_east", slots=5, description="wrong", include_deferred=False)
        for _ in range(2):  # idempotent; a wrong pool is put right
            assert create_pools.main(["--fleet-file", str(path)]) == 0
        for name in ("east", "west", "lab"):
            pool = Pool.get_pool(f"opsman_{name}")
            assert (pool.slots, pool.include_deferred) == (1, True)


@pytest.mark.e2e
class TestExpiryDrivenRuns:
    def test_a_scheduled_run_on_a_young_ca_is_skipped_without_any_write(
        self, fleet, young_sim, as_scheduled, airflow_db
    ):
        young_sim.reset()
        young_sim.clear_journal()
        fleet({"west": (young_sim, FAST)})
        dag_run = polling_fast(dagbag().dags["opsman_ca_rotation__west"]).test()
        assert dag_run.state == DagRunState.SUCCESS and dag_run.run_type == "scheduled"
        task_states = states(dag_run)
        assert task_states.pop("rotation_due") == TaskInstanceState.SUCCESS
        assert set(task_states.values()) == {TaskInstanceState.SKIPPED}, task_states
        report = xcom(dag_run, "rotation_due")
        assert report["checked"] and not report["due"] and report["days_left"] > 1400
        assert api_writes(young_sim) == []
        assert {e["path"] for e in young_sim.journal() if e["path"].startswith("/api/")} == {
            "/api/v0/certificate_authorities",
            "/api/v0/deployed/certificates",
        }

    def test_a_manual_run_checks_only_when_asked(self, fleet, young_sim, airflow_db):
        young_sim.reset()
        fleet({"west": (young_sim, FAST)})
        dag = polling_fast(dagbag().dags["opsman_ca_rotation__west"])
        asked = dag.test(run_conf={"only_if_due": True})
        assert states(asked)["preflight.check_ops_manager"] == TaskInstanceState.SKIPPED
        # Not asked: the young CA is rotated regardless (a dry run here, to stay read-only).
        young_sim.clear_journal()
        not_asked = polling_fast(dagbag().dags["opsman_ca_rotation__west"]).test(run_conf={"dry_run": True})
        assert xcom(not_asked, "rotation_due") == {"checked": False, "due": True, "run_type": "manual"}
        assert states(not_asked)["preflight.plan_rotation"] == TaskInstanceState.SUCCESS
        assert states(not_asked)["summary"] == TaskInstanceState.SKIPPED  # a dry run emits no Asset event
        assert api_writes(young_sim) == []
        # A setting in the run's conf is the fleet file's: the run stops before any call instead of ignoring it.
        young_sim.clear_journal()
        overriding = (
            dagbag()
            .dags["opsman_ca_rotation__west"]
            .test(run_conf={"dry_run": True, "apply_changes_mode": "manual"})
        )
        assert overriding.state == DagRunState.FAILED
        assert states(overriding)["rotation_due"] == TaskInstanceState.FAILED
        assert [e for e in young_sim.journal() if e["path"].startswith("/api/")] == []

    def test_a_scheduled_run_with_the_ca_inside_the_window_rotates_emits_the_asset_event_and_notifies(
        self, fleet, sim, as_scheduled, airflow_db, tmp_path
    ):
        record = tmp_path / "notifications.jsonl"
        notifiers = {
            "on_success": [{"class": NOTIFIER, "kwargs": {"path": str(record), "label": "ok"}}],
            "on_failure": [{"class": NOTIFIER, "kwargs": {"path": str(record), "label": "failed"}}],
        }
        # The simulator's CA expires in about 260 days: inside a 1-year window. Apply Changes options from the
        # fleet file reach every POST /api/v0/installations.
        errands = {"cf": {"run_post_deploy": {"smoke-tests": True}}}
        options = {
            "initial": False,
            "errands": errands,
            "force_latest_variables": True,
            "ignore_warnings": True,
        }
        fleet(
            {
                "east": (
                    sim,
                    {**FAST, "apply_changes": options, "expires_within": "1y", "notifiers": notifiers},
                )
            }
        )
        cf = next(p for p in sim.state()["products"] if p["type"] == "cf")
        (old_guid,) = [ca["guid"] for ca in sim.state()["certificate_authorities"]]
        sim.clear_journal()

        dag_run = polling_fast(dagbag().dags["opsman_ca_rotation__east"]).test()

        assert dag_run.state == DagRunState.SUCCESS, states(dag_run)
        due = xcom(dag_run, "rotation_due")
        assert due["due"] and any(
            r.startswith(f"the active root CA {old_guid} expires") for r in due["reasons"]
        )
        check_rotation_invariants(sim, old_guid, installs_started=3)
        requests = [i["request"] for i in sorted(sim.state()["installations"], key=lambda i: i["id"])[-3:]]
        assert [
            (r["errands"], r["force_latest_variables"], r["ignore_warnings"] in (True, "true"))
            for r in requests
        ] == [({cf["guid"]: {"run_post_deploy": {"smoke-tests": True}}}, True, True)] * 3
        (new,) = sim.state()["certificate_authorities"]
        event = _asset_events("opsman_root_ca__east")[-1]
        assert event == {
            "foundation": "east",
            "old_ca_guid": old_guid,
            "new_ca_guid": new["guid"],
            "new_ca_expires_at": event["new_ca_expires_at"],
        }
        assert event["new_ca_expires_at"][:4] > dag_run.start_date.strftime("%Y")
        assert [(c["label"], c["dag_id"], c["task_id"]) for c in calls(record)] == [
            ("ok", "opsman_ca_rotation__east", "summary")
        ]

    def test_a_failed_rotation_calls_the_failure_notifier(self, fleet, sim, airflow_db, tmp_path):
        record = tmp_path / "notifications.jsonl"
        notifiers = {"on_failure": [{"class": NOTIFIER, "kwargs": {"path": str(record), "label": "failed"}}]}
        fleet({"east": (sim, {**FAST, "notifiers": notifiers})})
        cf = next(p for p in sim.state()["products"] if p["type"] == "cf")
        sim.faults(stage_pending_change={"product_guid": cf["guid"], "action": "update"})

        dag_run = polling_fast(dagbag().dags["opsman_ca_rotation__east"]).test()

        assert dag_run.state == DagRunState.FAILED
        assert states(dag_run)["preflight.check_pending_changes"] == TaskInstanceState.FAILED
        assert [(c["label"], c["task_id"]) for c in calls(record)] == [
            ("failed", "preflight.check_pending_changes")
        ]
        assert api_writes(sim) == []  # it stopped in the pre-flight, before any write


@pytest.mark.e2e
def test_the_expiry_report_covers_every_foundation_grouped_by_procedure(
    fleet, sim, young_sim, newer_sim, airflow_db
):
    young_sim.reset()
    newer_sim.reset()
    fleet({"east": (sim, {}), "west": (young_sim, {}), "lab": (newer_sim, {"expires_within": "1y"})})
    for s in (sim, young_sim, newer_sim):
        s.clear_journal()

    dag_run = dagbag().dags["opsman_certificate_expiry_report"].test()

    assert dag_run.state == DagRunState.SUCCESS, states(dag_run)
    report = xcom(dag_run, "fleet_report")
    by_name = {r["foundation"]: r for r in report["foundations"]}
    assert set(by_name) == {"east", "west", "lab"} and report["missing"] == []
    assert by_name["west"]["due"] is False and by_name["west"]["expiring_by_procedure"] == {}
    assert by_name["east"]["due"]  # nats_server expires in about 30 days
    assert (
        "Non-configurable leaf certificates (rotated with the root CA)"
        in by_name["east"]["expiring_by_procedure"]
    )
    # Ops Manager 2.10+ names the procedures itself; the report groups by those names.
    assert "Non-Configurable Leaf Certificates Procedure" in by_name["lab"]["expiring_by_procedure"]
    assert any("the active root CA" in r for r in by_name["lab"]["reasons"])
    # For the Certificates page: where each Ops Manager is and its version (GET /api/v0/info, a read).
    assert (
        by_name["east"]["opsman_url"] == sim.url and by_name["east"]["opsman_version"] == "2.9.13-build.165"
    )
    assert by_name["lab"]["opsman_version"] == "2.10.60-build.4"
    assert [json.dumps(r, sort_keys=True) for r in report["foundations"]]  # JSON-safe
    for s in (sim, young_sim, newer_sim):
        assert api_writes(s) == []


def _asset_events(name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == name)
            .order_by(AssetEvent.id)
        ).all()
        return [dict(r.extra) for r in rows]


@pytest.mark.parametrize(
    ("param", "value", "fleet_fields"),
    [
        ("expires_within", "3 months", {"expires_within": "3 months"}),
        ("poll_interval_seconds", 0, {"poll_interval_seconds": 0}),
        ("if_installation_running", "queue", {"if_installation_running": "queue"}),
        ("custom_ca_conn_id", "my ca", {"custom_ca_conn_id": "my ca"}),
        ("apply_changes_mode", "auto", {"apply_changes": {"mode": "auto"}}),
        ("deploy_products", "some", {"apply_changes": {"deploy_products": "some"}}),
        ("deploy_products", [], {"apply_changes": {"deploy_products": []}}),
        ("errands", {"cf": "smoke-tests"}, {"apply_changes": {"errands": {"cf": "smoke-tests"}}}),
        ("recreate_vms", "yes", {"apply_changes": {"recreate_vms": "yes"}}),
        ("approve_before", ["activate"], {"approve_before": ["activate"]}),
        ("approve_before", ["delete_ca", "delete_ca"], {"approve_before": ["delete_ca", "delete_ca"]}),
        ("approval_timeout_minutes", -1, {"approval_timeout_minutes": -1}),
    ],
    ids=lambda v: v if isinstance(v, str) and "_" in v else None,
)
def test_the_trigger_form_and_the_fleet_file_refuse_the_same_values(monkeypatch, param, value, fleet_fields):
    """One rule per setting: what the single DAG's form refuses, a fleet file refuses too."""
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    from opsman.fleet import FleetFileError, parse_fleet

    monkeypatch.delenv("OPSMAN_FLEET_FILE", raising=False)
    params = copy.deepcopy(dagbag().dags["opsman_ca_rotation"].params)
    params.validate()
    with pytest.raises(ParamValidationError):
        params[param] = value
        params.validate()
    with pytest.raises(FleetFileError, match=f"foundation 'east', field '{next(iter(fleet_fields))}"):
        parse_fleet({"foundations": [{"name": "east", "conn_id": "opsman_east", **fleet_fields}]})


def test_the_trigger_form_starts_from_the_fleet_files_defaults(monkeypatch):
    from opsman.fleet import DEFAULT_SETTINGS, parse_fleet

    monkeypatch.delenv("OPSMAN_FLEET_FILE", raising=False)
    params = dagbag().dags["opsman_ca_rotation"].params
    (silent,) = parse_fleet({"foundations": [{"name": "east", "conn_id": "opsman_east"}]}).foundations
    assert {name: params[name] for name in DEFAULT_SETTINGS} == DEFAULT_SETTINGS
    assert silent.settings == {**DEFAULT_SETTINGS, "opsman_conn_id": "opsman_east"}
