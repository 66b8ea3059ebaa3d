"""The planner on CA lists and installation histories shaped like Ops Manager's answers."""

from __future__ import annotations

import datetime as dt

import pytest
from support import certificate_authority as ca
from support import installation as install

from opsman.exceptions import RotationStateError
from opsman.planning import (
    ACTIVATE,
    ACTIVATED,
    APPLY_DELETE,
    APPLY_NEW_CA,
    GENERATE,
    GENERATED,
    INITIAL_APPLY,
    NOT_STARTED,
    OLD_CA_DELETED,
    REGENERATE,
    STEPS,
    VERIFY,
    RotationPlan,
    plan_rotation,
)

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


OLD = ca("0ld0000000000000000a", True, NOW - dt.timedelta(days=1200))
HISTORY = [install(1, "succeeded", NOW - dt.timedelta(days=30))]


def plan(cas, installations=HISTORY, **kwargs) -> RotationPlan:
    return plan_rotation(cas, installations, now=NOW, recent_rotation_days=7, **kwargs)


def todo(p: RotationPlan) -> list[str]:
    return [s for s in STEPS if not p.is_done(s)]


def test_an_old_single_ca_is_not_started():
    p = plan([OLD])
    assert (p.stage, p.old_ca_guid, p.new_ca_guid) == (NOT_STARTED, OLD.guid, None)
    assert todo(p) == list(STEPS)
    assert todo(plan([OLD], initial_apply_changes=False)) == list(STEPS[1:])


def test_a_newer_inactive_ca_means_generated_and_the_apply_is_owed():
    new = ca("new0000000000000000b", False, NOW - dt.timedelta(hours=1))
    p = plan([OLD, new], HISTORY)
    assert (p.stage, p.old_ca_guid, p.new_ca_guid) == (GENERATED, OLD.guid, new.guid)
    assert todo(p) == list(STEPS[2:])
    assert p.watermarks[GENERATE] == 1


def test_an_apply_that_started_after_generation_and_succeeded_counts():
    new = ca("new0000000000000000b", False, NOW - dt.timedelta(hours=1))
    history = [
        install(3, "succeeded", NOW - dt.timedelta(minutes=30)),
        install(2, "failed", NOW - dt.timedelta(minutes=50)),
        *HISTORY,
    ]
    p = plan([OLD, new], history)
    assert p.is_done(APPLY_NEW_CA) and "installation 3" in p.done[APPLY_NEW_CA]
    assert todo(p)[:2] == [VERIFY, ACTIVATE]


def test_a_failed_apply_after_generation_does_not_count():
    new = ca("new0000000000000000b", False, NOW - dt.timedelta(hours=1))
    p = plan([OLD, new], [install(2, "failed", NOW - dt.timedelta(minutes=50)), *HISTORY])
    assert not p.is_done(APPLY_NEW_CA)


def test_a_newer_active_ca_means_activated_and_regenerate_is_repeated():
    new = ca("new0000000000000000b", True, NOW - dt.timedelta(hours=1))
    old = ca(OLD.guid, False, OLD.created_at)
    p = plan([old, new], [install(2, "succeeded", NOW - dt.timedelta(minutes=50)), *HISTORY])
    assert (p.stage, p.old_ca_guid, p.new_ca_guid) == (ACTIVATED, old.guid, new.guid)
    assert todo(p)[0] == REGENERATE


def test_a_ca_activated_before_any_apply_changes_deployed_it_gets_one_first():
    """Found by tests/properties: a person activated the new CA right after generating it; the run
    regenerated at once, issuing certificates under a CA no trust store had yet."""
    new = ca("new0000000000000000b", True, NOW - dt.timedelta(hours=1))
    old = ca(OLD.guid, False, OLD.created_at)
    p = plan([old, new], [install(2, "failed", NOW - dt.timedelta(minutes=50)), *HISTORY])
    assert p.stage == ACTIVATED and todo(p)[:2] == [APPLY_NEW_CA, REGENERATE]
    assert p.watermarks[GENERATE] == 1


@pytest.mark.parametrize(("succeeded", "finished"), [(0, False), (2, False), (3, True)])
def test_a_single_young_ca_is_the_end_of_a_rotation(succeeded, finished):
    new = ca("new0000000000000000b", True, NOW - dt.timedelta(hours=2))
    history = [
        install(10 + n, "succeeded", NOW - dt.timedelta(minutes=100 - 10 * n)) for n in range(succeeded)
    ] + HISTORY
    p = plan([new], history)
    assert p.stage == OLD_CA_DELETED and p.new_ca_guid == new.guid
    assert todo(p) == ([] if finished else [APPLY_DELETE])


def test_a_young_ca_can_be_rotated_again_when_asked():
    young = ca("new0000000000000000b", True, NOW - dt.timedelta(hours=2))
    assert plan_rotation([young], HISTORY, now=NOW, recent_rotation_days=0).stage == NOT_STARTED


@pytest.mark.parametrize(
    "cas",
    [
        [ca("a000000000000000000a", False, NOW), ca("b000000000000000000b", False, NOW)],
        [OLD, ca("b000000000000000000b", True, NOW)],
        [OLD, ca("b000000000000000000b", False, NOW), ca("c000000000000000000c", False, NOW)],
    ],
    ids=["none-active", "two-active", "three-cas"],
)
def test_ambiguous_states_stop_with_what_was_found(cas):
    with pytest.raises(RotationStateError, match="match no stage") as err:
        plan(cas)
    for c in cas:
        assert c.guid in str(err.value)


def test_an_old_inactive_ca_left_behind_is_an_unfinished_rotation():
    leftover = ca("b000000000000000000b", False, NOW - dt.timedelta(days=2000))
    p = plan([OLD, leftover])
    assert (p.stage, p.old_ca_guid, p.new_ca_guid) == (ACTIVATED, leftover.guid, OLD.guid)


def test_the_plan_survives_json():
    p = plan([OLD])
    assert RotationPlan.from_json(p.to_json()) == p
    assert INITIAL_APPLY in p.describe()


@pytest.mark.parametrize(
    ("age", "stage"),
    [
        (
            dt.timedelta(days=7) - dt.timedelta(seconds=1),
            OLD_CA_DELETED,
        ),  # younger than recent_rotation_days: the end
        (dt.timedelta(days=7), NOT_STARTED),  # exactly recent_rotation_days old: a new rotation starts
    ],
)
def test_the_recent_rotation_boundary_is_exact(age, stage):
    only = ca("new0000000000000000b", True, NOW - age)
    assert plan([only]).stage == stage


@pytest.mark.parametrize(
    ("started_after_the_second", "carries_the_ca"), [(0.006, False), (0.999, False), (1.0, True)]
)
def test_an_apply_changes_within_the_second_the_ca_was_made_may_lack_it(
    started_after_the_second, carries_the_ca
):
    """The CA's time is its notBefore, truncated to the second: an installation that started within that
    second may have started before the CA existed (found by tests/properties: clicked 6 ms before a generate)."""
    made = NOW - dt.timedelta(hours=1)
    new = ca("4e40000000000000000b", False, made)
    started = made + dt.timedelta(seconds=started_after_the_second)
    p = plan([OLD, new], [install(2, "succeeded", started), *HISTORY])
    assert p.is_done(APPLY_NEW_CA) is carries_the_ca
    assert p.watermarks[GENERATE] == (1 if carries_the_ca else 2)


def test_two_cas_made_within_one_second_are_ambiguous():
    """Found by tests/properties: two CAs generated 6 ms apart have the same (truncated) time; the planner
    took the inactive one for the old CA and the run would have deleted it."""
    made = NOW - dt.timedelta(hours=1)
    with pytest.raises(RotationStateError, match="cannot tell which CA is the new one"):
        plan([ca("a0000000000000000001", True, made), ca("b0000000000000000002", False, made)])
