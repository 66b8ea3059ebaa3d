"""A rotation stopped after any step is finished by a new DAG run, from Ops Manager's state alone.

Each case leaves Ops Manager where a run killed after that step would have left it (the steps are
made with the hook, as the killed run's tasks made them), then triggers a fresh run with no XCom of
the earlier one, and checks the invariants on the simulator's journal and state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.state import DagRunState, TaskInstanceState
from support import api_writes, check_rotation_invariants, polling_fast, wait_for_installation

from opsman.hooks import OpsManagerHook
from opsman.models import ApplyChangesOptions, InstallationStatus

DAGS = Path(__file__).resolve().parents[2] / "dags"
CONF = {"poll_interval_seconds": 1}


def run_dag(**conf):
    dag = polling_fast(DagBag(dag_folder=str(DAGS)).dags["opsman_ca_rotation"])
    return dag.test(run_conf={**CONF, **conf})


def apply(sim, hook):
    # CA times are kept to the second, so the planner counts an Apply Changes as deploying a CA only from
    # a full second after it was made; a person's Apply Changes never follows a generate sooner.
    sim.clock(advance_seconds=1)
    installation_id = hook.apply_changes(ApplyChangesOptions())
    assert wait_for_installation(sim, hook, installation_id) is InstallationStatus.SUCCEEDED


def partial_rotation(sim, hook, steps: int) -> tuple[str, str]:
    """Make the first ``steps`` steps of the procedure; returns (old guid, new guid)."""
    (old,) = hook.list_certificate_authorities()
    new = None
    script = [
        lambda: None,  # generate (below, to keep the guid)
        lambda: apply(sim, hook),
        lambda: hook.activate_certificate_authority(new),
        lambda: hook.regenerate_certificates(),
        lambda: apply(sim, hook),
        lambda: hook.delete_certificate_authority(old.guid),
        lambda: apply(sim, hook),
    ]
    for number in range(steps):
        if number == 0:
            new = hook.generate_certificate_authority().authority.guid
        else:
            script[number]()
    return old.guid, new


STOPS = {
    1: "generated",
    2: "generated and applied",
    3: "activated",
    4: "regenerated, not applied",
    5: "regenerated and applied",
    6: "old CA deleted, not applied",
}


@pytest.mark.e2e
@pytest.mark.parametrize("steps", list(STOPS), ids=list(STOPS.values()))
def test_a_new_run_finishes_a_rotation_stopped_after_each_step(sim, airflow_db, steps):
    hook = OpsManagerHook()
    old_guid, new_guid = partial_rotation(sim, hook, steps)
    dag_run = run_dag()
    assert dag_run.state == DagRunState.SUCCESS
    task_states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert task_states["create_new_ca.generate_ca"] == TaskInstanceState.SKIPPED
    assert task_states["verify.verify_rotation"] == TaskInstanceState.SUCCESS
    check_rotation_invariants(sim, old_guid)
    (final,) = sim.state()["certificate_authorities"]
    assert final["guid"] == new_guid, "the run finished the rotation it found, it did not start another"


@pytest.mark.e2e
def test_a_run_after_a_failed_apply_changes_finishes_the_rotation(sim, airflow_db):
    (old_guid,) = [ca["guid"] for ca in sim.state()["certificate_authorities"]]
    sim.faults(fail_next_installs=1)
    first = run_dag(initial_apply_changes=False)
    assert first.state == DagRunState.FAILED
    second = run_dag(initial_apply_changes=False)
    assert second.state == DagRunState.SUCCESS
    check_rotation_invariants(sim, old_guid)


@pytest.mark.e2e
def test_a_finished_rotation_is_not_repeated(sim, airflow_db):
    hook = OpsManagerHook()
    old_guid, new_guid = partial_rotation(sim, hook, 7)
    sim.clear_journal()
    dag_run = run_dag()
    assert dag_run.state == DagRunState.SUCCESS
    assert api_writes(sim) == [], "a complete rotation needs nothing more"
    assert [ca["guid"] for ca in sim.state()["certificate_authorities"]] == [new_guid]


@pytest.mark.e2e
def test_a_dry_run_only_reads(sim, airflow_db, capfd):
    sim.clear_journal()
    dag_run = run_dag(dry_run=True)
    assert dag_run.state == DagRunState.SUCCESS
    assert api_writes(sim) == []
    assert all(e["method"] == "GET" or e["path"] == "/uaa/oauth/token" for e in sim.journal())
    task_states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert task_states["create_new_ca.generate_ca"] == TaskInstanceState.SKIPPED
    out = "".join(capfd.readouterr())
    assert "DRY RUN" in out and "dry run: would generate a new root CA (inactive)" in out
