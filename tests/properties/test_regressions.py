"""Histories the state machine found that once broke a safety rule, replayed step by step (shrunk)."""

from __future__ import annotations

import pytest
from test_rotation_histories import RotationHistories

pytestmark = pytest.mark.properties


def replay(*steps):
    """Run the steps on a fresh machine, then its end-of-history check; on failure print what the run did."""
    machine = RotationHistories()
    for name, kwargs in steps:
        getattr(machine, name)(**kwargs)
    try:
        machine.teardown()
    except BaseException:
        for r in machine.run.results:
            print(r.task_id, r.state, r.message[:200])
        raise
    return machine


def test_generate_during_a_persons_apply_changes_then_activate(histories_world):
    """Shrunk from a random history: the person's Apply Changes started 6 ms before the CA was generated, in
    the same second; the clean run took it for the new CA's Apply Changes and activated an undeployed CA."""
    replay(
        ("start", dict(style="legacy", mode="api", initial_apply=False)),
        ("person", dict(action="apply_changes", pick=0)),
        ("person", dict(action="generate_ca", pick=0)),
    )


def test_two_cas_generated_within_one_second_then_one_activated_and_the_old_deleted(histories_world):
    """Before the planner refused equal creation times, the clean run took the inactive twin for the old CA."""
    for pick in range(2):
        replay(
            ("start", dict(style="legacy", mode="api", initial_apply=True)),
            ("person", dict(action="generate_ca", pick=0)),
            ("person", dict(action="generate_ca", pick=0)),
            ("person", dict(action="activate_ca", pick=pick)),
            ("person", dict(action="delete_ca", pick=0)),
        )


def test_generate_cleared_after_the_rotation_ended_makes_no_second_ca(histories_world):
    """Shrunk from a random history: the run's plan said not started; the rotation ended meanwhile
    (here by hand); clearing generate made a second CA. Now generate refuses a stale plan."""
    machine = replay(
        ("start", dict(style="legacy", mode="api", initial_apply=True)),
        ("progress", dict(tries=8)),  # through generate (and the new CA's Apply Changes)
        ("person", dict(action="activate_ca", pick=0)),  # the person activates the new CA...
        ("person", dict(action="delete_ca", pick=0)),  # ...and deletes the old one
        ("clear_task", dict(index=6)),  # someone clears create_new_ca.generate_ca
        ("progress", dict(tries=3)),
    )
    assert len(machine.checker.ours_generated) == 1


def test_a_ca_activated_by_hand_before_its_apply_changes_is_deployed_before_regenerate(histories_world):
    replay(
        ("start", dict(style="2.10", mode="api", initial_apply=False)),
        ("progress", dict(tries=7)),  # through generate_ca
        ("person", dict(action="activate_ca", pick=0)),  # activated before any Apply Changes deployed it
        ("new_run", dict(dry_run=False)),
        ("progress", dict(tries=8)),
    )


def test_an_uploaded_ca_rotation_from_scratch_converges(histories_world):
    """The uploaded-CA histories start from here: the clean run uploads, activates and verifies the corporate CA."""
    machine = replay(("start", dict(style="2.10", mode="api", initial_apply=True, ca="uploaded")))
    assert machine.run.states["verify.verify_rotation"] == "success"


def test_uploaded_ca_after_a_person_rotated_to_their_own_ca(histories_world):
    """Shrunk from a random history (a rule too strict, not a bug): with an uploaded target the recent-rotation
    window does not apply; a young CA that is not the uploaded one is rotated away from."""
    replay(
        ("start", dict(style="legacy", mode="api", initial_apply=False, ca="uploaded")),
        ("person", dict(action="generate_ca", pick=0)),
        ("person", dict(action="activate_ca", pick=0)),
        ("person", dict(action="delete_ca", pick=0)),
    )


def test_a_ca_generated_by_hand_at_the_end_of_an_upload_rotation(histories_world):
    """Shrunk from a random history: near the end of a rotation to an uploaded CA a person generated a CA;
    the clean run takes it for the old CA and deletes it (inactive, nothing chains to it), keeping the uploaded one."""
    replay(
        ("start", dict(style="legacy", mode="api", initial_apply=False, ca="uploaded")),
        ("progress", dict(tries=1)),
        ("progress", dict(tries=8)),
        ("progress", dict(tries=8)),
        ("person", dict(action="generate_ca", pick=0)),
    )


def test_regenerate_under_a_ca_the_run_adopted_from_a_person(histories_world):
    """Shrunk from a random history (a rule too strict): the run adopted a CA a person generated, and a person
    generated another later; regenerating under the adopted (active, deployed) CA is right."""
    replay(
        ("start", dict(style="legacy", mode="api", initial_apply=False, ca="generated")),
        ("person", dict(action="generate_ca", pick=0)),
        ("progress", dict(tries=1)),
        ("progress", dict(tries=8)),
        ("progress", dict(tries=1)),
        ("person", dict(action="generate_ca", pick=0)),
        ("progress", dict(tries=3)),
    )
