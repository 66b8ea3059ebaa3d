"""Decide from Ops Manager's state alone where a rotation stands and which steps remain.

Ops Manager records nothing like "regenerate was called" or "this Apply Changes belonged to step N"
(see ``docs/design-notes.md``). What it does show, and what this module reads:

- the CAs: which is active, and when each was made. The time comes from the CA certificate's
  ``notBefore`` (to the second); ``created_on`` may be a bare date and cannot order two CAs made
  on the same day.
- the installations, with their start times and statuses.

| CAs on Ops Manager | stage | steps left |
|---|---|---|
| one, active, made before the recent-rotation window | ``not_started`` | all (initial Apply Changes by Param) |
| old active + one newer inactive | ``generated`` | Apply Changes (unless one succeeded after the new CA was made), activate, regenerate, Apply Changes, delete, Apply Changes |
| newer active + one older inactive | ``activated`` | Apply Changes (unless one succeeded after the new CA was made), regenerate, Apply Changes, delete, Apply Changes |
| one, active, made within the recent-rotation window | ``old_ca_deleted`` | the last Apply Changes, unless three succeeded after the CA was made |
| anything else | ambiguous | nothing: the run stops and lists what it found |

Where state cannot prove a step happened, the step is repeated when repeating is safe (an Apply
Changes, a regenerate) and never guessed when it is not (generate, activate, delete).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# The step names live in opsman.constants (the fleet schema's types use them too); the rest of the
# package reads them from here, the plan's module.
from opsman.constants import (
    ACTIVATE,
    APPLY_DELETE,
    APPLY_LEAVES,  # noqa: F401 - re-exported
    APPLY_NEW_CA,
    DELETE,
    GENERATE,
    INITIAL_APPLY,
    REGENERATE,  # noqa: F401 - re-exported
    STEPS,
    VERIFY,
)
from opsman.exceptions import RotationStateError
from opsman.models import CertificateAuthority, Installation, InstallationStatus, isoformat, parse_api_time

NOT_STARTED, GENERATED, ACTIVATED, OLD_CA_DELETED = "not_started", "generated", "activated", "old_ca_deleted"


@dataclass
class RotationPlan:
    """Where the rotation stands; JSON-safe so it can travel by XCom to every step."""

    stage: str
    old_ca_guid: str | None
    new_ca_guid: str | None
    #: step → why it is already done; steps not listed are to do.
    done: dict[str, str] = field(default_factory=dict)
    #: step → installation id to count Apply Changes from, for steps skipped as done.
    watermarks: dict[str, int] = field(default_factory=dict)
    #: the old CA's subject key identifier (hex), to prove later that no leaf chains to it.
    old_ca_key_id: str | None = None
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RotationPlan:
        return cls(**value)

    def is_done(self, step: str) -> bool:
        return step in self.done

    def describe(self) -> str:
        lines = [
            f"Rotation stage: {self.stage} (old CA {self.old_ca_guid or '-'}, new CA {self.new_ca_guid or 'not yet generated'})"
        ]
        for step in STEPS:
            lines.append(f"  {step:<32} {'done: ' + self.done[step] if step in self.done else 'to do'}")
        return "\n".join(lines)


#: A CA's creation time is known to the second only (its certificate's notBefore, truncated): a CA
#: "made at 12:00:00" appeared somewhere in [12:00:00, 12:00:01). An installation that started within
#: that second may have started before it and lack it: only one that started a full second later
#: provably carries the CA (found by tests/properties: an Apply Changes clicked 6 ms before a generate).
CREATION_RESOLUTION = dt.timedelta(seconds=1)


def _succeeded_after(installations: Sequence[Installation], moment: dt.datetime) -> list[Installation]:
    """Installations that succeeded and provably started after a CA made at ``moment`` (to the second)."""
    return [
        i
        for i in installations
        if i.status is InstallationStatus.SUCCEEDED
        and i.started_at is not None
        and i.started_at >= moment + CREATION_RESOLUTION
    ]


def _watermark_before(installations: Sequence[Installation], moment: dt.datetime) -> int:
    """The newest installation that may have started before a CA made at ``moment`` (to the second):
    only later ones carry a change made then."""
    before = [
        i.id
        for i in installations
        if i.started_at is not None and i.started_at < moment + CREATION_RESOLUTION
    ]
    return max(before, default=0)


def _added_at(ca: CertificateAuthority, uploaded: bool) -> dt.datetime | None:
    """When the CA appeared on Ops Manager, or None when that cannot be known to the second.

    A generated CA's certificate starts at its creation. An uploaded CA's does not (the corporate
    PKI may have issued it long before), so only a ``created_on`` with a time of day will do.
    """
    if not uploaded:
        return ca.created_at
    return parse_api_time(ca.created_on) if "T" in ca.created_on else None


def _succeeded_since(installations: Sequence[Installation], moment: dt.datetime | None) -> list[Installation]:
    return [] if moment is None else _succeeded_after(installations, moment)


def _table(cas: Sequence[CertificateAuthority]) -> str:
    return "; ".join(
        f"{ca.guid} ({'active' if ca.active else 'inactive'}, made {isoformat(ca.created_at) or '?'})"
        for ca in cas
    )


def plan_rotation(
    cas: Sequence[CertificateAuthority],
    installations: Sequence[Installation],
    *,
    now: dt.datetime,
    recent_rotation_days: float,
    initial_apply_changes: bool = True,
    target_fingerprint: str | None = None,
) -> RotationPlan:
    """The plan for a rotation, from the CAs and installations Ops Manager lists.

    With ``target_fingerprint`` (rotating to an uploaded CA) the new CA is recognised by its
    certificate, not by its age: a corporate CA may have been issued before the current one.
    """
    active = [ca for ca in cas if ca.active]
    inactive = [ca for ca in cas if not ca.active]
    if len(active) != 1 or len(inactive) > 1 or any(ca.created_at is None for ca in cas):
        raise RotationStateError(
            f"Ops Manager's CAs match no stage of a rotation: {_table(cas)}. Expected one active CA, plus at most "
            "one other. Look at the Certificate Authorities in Ops Manager and remove strays before triggering again."
        )
    (current,) = active
    newest_id = installations[0].id if installations else 0
    done: dict[str, str] = {}
    if (
        target_fingerprint is not None
        and inactive
        and target_fingerprint not in {ca.fingerprint for ca in cas}
    ):
        raise RotationStateError(
            f"neither CA on Ops Manager is the CA to upload: {_table(cas)}. Finish or clean up the other rotation first."
        )

    if not inactive:
        age = now - current.created_at
        is_target = target_fingerprint is not None and current.fingerprint == target_fingerprint
        if not is_target and (
            target_fingerprint is not None or age >= dt.timedelta(days=recent_rotation_days)
        ):
            if not initial_apply_changes:
                done[INITIAL_APPLY] = "Param initial_apply_changes is false"
            return RotationPlan(NOT_STARTED, current.guid, None, done, {}, current.subject_key_identifier)
        # The ambiguous end: one young CA (or the uploaded one) is the end of a rotation, not a reason for another.
        applies = _succeeded_since(installations, _added_at(current, is_target))
        for step in STEPS[:-1]:
            done[step] = (
                f"the only CA, {current.guid}, is the uploaded CA"
                if is_target
                else f"the only CA, {current.guid}, was made {age.days} day(s) ago"
            ) + ": the old CA is already deleted"
        if len(applies) >= 3:
            done[APPLY_DELETE] = (
                f"{len(applies)} Apply Changes succeeded since CA {current.guid} was made "
                f"(installations {', '.join(str(i.id) for i in applies)}): the rotation is complete"
            )
        return RotationPlan(OLD_CA_DELETED, None, current.guid, done, {DELETE: newest_id})

    (other,) = inactive
    if target_fingerprint is not None:
        other_is_new = other.fingerprint == target_fingerprint
    else:
        if other.created_at == current.created_at:
            # Both made within one second (the times are truncated): which one is new is a guess.
            raise RotationStateError(
                f"cannot tell which CA is the new one: both were made at {isoformat(current.created_at)}: {_table(cas)}. "
                "Delete the CA that should not stay (never the active one) in Ops Manager and trigger again."
            )
        other_is_new = other.created_at > current.created_at
    if other_is_new:
        new, old = other, current
        done[INITIAL_APPLY] = f"the new CA {new.guid} exists already"
        done[GENERATE] = f"CA {new.guid} was generated at {isoformat(new.created_at)} and is inactive"
        added = _added_at(new, target_fingerprint is not None)
        applies = _succeeded_since(installations, added)
        if applies:
            done[APPLY_NEW_CA] = (
                f"installation {applies[0].id} started after CA {new.guid} was made and succeeded"
            )
        watermarks = {GENERATE: _watermark_before(installations, added) if added else newest_id}
        return RotationPlan(GENERATED, old.guid, new.guid, done, watermarks, old.subject_key_identifier)

    new, old = current, other
    for step in (INITIAL_APPLY, GENERATE, VERIFY):
        done[step] = f"the new CA {new.guid} is already active"
    # Someone may have activated the new CA before any Apply Changes deployed it to the trust stores:
    # regenerating then would issue certificates the VMs do not trust yet. Without a successful
    # installation that started after the CA was made, that Apply Changes runs first (found by tests/properties).
    added = _added_at(new, target_fingerprint is not None)
    applies = _succeeded_since(installations, added)
    watermarks: dict[str, int] = {}
    if applies:
        done[APPLY_NEW_CA] = (
            f"installation {applies[0].id} started after CA {new.guid} was made and succeeded"
        )
    else:
        watermarks[GENERATE] = _watermark_before(installations, added) if added else newest_id
    done[ACTIVATE] = f"CA {new.guid} is active and the old CA {old.guid} inactive"
    # Nothing shows whether regenerate ran: regenerating again is safe, skipping it is not.
    return RotationPlan(ACTIVATED, old.guid, new.guid, done, watermarks, old.subject_key_identifier)
