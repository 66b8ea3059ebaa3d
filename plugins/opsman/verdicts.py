"""Verdicts on what Ops Manager shows, decided without calling it.

The operators read the CAs, the installations and the deployed certificates; these pure functions
say what that state means: which CA is the active one and which the new one, whether a CA may be
deleted, whether an Apply Changes carries a step's change, which CA signed a leaf, and which leaves a
rotation re-issues. Like :mod:`opsman.planning`, each rule lives here once and is tested without a
server (tests/plugins/opsman/test_verdicts.py).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence

from opsman.exceptions import RotationStateError
from opsman.models import (
    CertificateAuthority,
    DeployedCertificate,
    Installation,
    InstallationStatus,
    isoformat,
)
from opsman.values import window_days

# ---- certificate authorities ----


def split_active(
    cas: Sequence[CertificateAuthority],
) -> tuple[CertificateAuthority, list[CertificateAuthority]]:
    """The one active CA and the inactive ones; any other count of active CAs is no state to rotate from."""
    active = [ca for ca in cas if ca.active]
    if len(active) != 1:
        raise RotationStateError(
            f"Ops Manager lists {len(active)} active certificate authorities; exactly one is expected. "
            "Check the Certificate Authorities in Ops Manager before rotating."
        )
    return active[0], [ca for ca in cas if not ca.active]


def is_newer(candidate: CertificateAuthority, than: CertificateAuthority) -> bool:
    a, b = candidate.created_at, than.created_at
    if a is None or b is None:
        raise RotationStateError(
            f"cannot tell whether CA {candidate.guid} is newer than CA {than.guid}: neither their certificates "
            "nor created_on give a creation time"
        )
    return a > b


def made_new_ca(
    cas: Sequence[CertificateAuthority], upload_fingerprint: str | None = None
) -> CertificateAuthority | None:
    """The new CA an earlier try already made (to adopt, not make again); None when there is none.

    Generated: the one inactive CA, newer than the active one. Uploaded: the one inactive CA with the
    upload's certificate (``upload_fingerprint``). Any other inactive CA is ambiguous and refused.
    """
    active, inactive = split_active(cas)
    if not inactive:
        return None
    if upload_fingerprint is not None:
        same = [ca for ca in inactive if ca.fingerprint == upload_fingerprint]
        if len(inactive) == 1 and same:
            return same[0]
        raise RotationStateError(
            f"besides the active CA {active.guid} Ops Manager has inactive CA(s) "
            f"{', '.join(ca.guid for ca in inactive)} that are not the CA to upload. Clean up first."
        )
    newer = [ca for ca in inactive if is_newer(ca, active)]
    if len(inactive) == 1 and len(newer) == 1:
        return newer[0]
    raise RotationStateError(
        f"cannot decide which CA to rotate to: besides the active CA {active.guid} Ops Manager has "
        f"{len(inactive)} inactive CA(s) ({', '.join(ca.guid for ca in inactive)}), "
        f"{len(newer)} of them newer than the active one. Finish or clean up the earlier rotation "
        "(delete stray inactive CAs) and trigger again."
    )


def listed_ca(cas: Sequence[CertificateAuthority], guid: str) -> CertificateAuthority | None:
    return next((ca for ca in cas if ca.guid == guid), None)


def old_ca_beside(cas: Sequence[CertificateAuthority], new_ca: CertificateAuthority) -> CertificateAuthority:
    """The CA the rotation replaces: the active one while the new CA is inactive, after activation
    (a retry) the one other CA."""
    if not new_ca.active:
        active, _ = split_active(cas)
        return active
    others = [ca for ca in cas if ca.guid != new_ca.guid]
    if len(others) != 1:
        raise RotationStateError(f"new CA {new_ca.guid} is active and {len(others)} other CAs exist")
    return others[0]


def old_ca_to_delete(
    cas: Sequence[CertificateAuthority], old_ca_guid: str, new_ca_guid: str
) -> CertificateAuthority | None:
    """The old CA, when it is still there and safe to delete; None when it is gone.

    Never the new CA, never the active CA, and only once the new CA is active (before that the old
    CA may still be needed).
    """
    if old_ca_guid == new_ca_guid:
        raise RotationStateError(f"refusing to delete CA {old_ca_guid}: it is the new CA")
    new_ca = listed_ca(cas, new_ca_guid)
    if new_ca is None or not new_ca.active:
        raise RotationStateError(
            f"refusing to delete CA {old_ca_guid}: the new CA {new_ca_guid} is "
            f"{'missing' if new_ca is None else 'not active'}, so the old CA may still be needed"
        )
    old_ca = listed_ca(cas, old_ca_guid)
    if old_ca is not None and old_ca.active:
        raise RotationStateError(f"refusing to delete CA {old_ca_guid}: it is the active CA")
    return old_ca


# ---- Apply Changes ----


class ApplyChangesAction(enum.Enum):
    """What an Apply Changes step does, given the installations and its change's watermark."""

    ATTACH = "attach"  # a running installation carries the change: wait for it, start none
    DEPLOYED = "deployed"  # a succeeded installation carries the change: nothing to start
    WAIT = "wait"  # a running installation predates the change: let it end, then decide again
    START = "start"  # none carries the change: start one


def apply_changes_action(
    installations: Sequence[Installation], after: int | None
) -> tuple[ApplyChangesAction, Installation | None]:
    """Decide from the installations (newest first) and the watermark ``after`` (the newest
    installation id once the step's change was made; None: no baseline, nothing counts as carrying it).

    Ops Manager runs one installation at a time, so a running one is never joined by a second.
    """
    if not installations:
        return ApplyChangesAction.START, None
    newest = installations[0]
    carries_change = after is not None and newest.id > after
    if newest.status is InstallationStatus.RUNNING:
        return (ApplyChangesAction.ATTACH if carries_change else ApplyChangesAction.WAIT), newest
    if carries_change and newest.status.is_successful:
        return ApplyChangesAction.DEPLOYED, newest
    return ApplyChangesAction.START, None


# ---- verification ----

SIGNED_BY_NEW_CA, SIGNED_BY_OLD_CA, UNKNOWN_ISSUER = "new CA", "OLD CA", "unknown issuer"


def key_identifier(pem: str, extension: type) -> str | None:
    """A certificate's subject or authority key identifier (hex); None when it has none or is no certificate."""
    from cryptography import x509  # when the verification runs: parsing the DAG file does not need it

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        value = cert.extensions.get_extension_for_class(extension).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    return (value.key_identifier if extension is x509.AuthorityKeyIdentifier else value.digest).hex()


def signer_by_key_identifier(pem: str, new_ca_key_id: str | None, old_ca_key_id: str | None) -> str:
    """Which CA signed a leaf, by its authority key identifier against the CAs' subject key identifiers."""
    from cryptography import x509

    aki = key_identifier(pem, x509.AuthorityKeyIdentifier)
    if aki is not None and aki == new_ca_key_id:
        return SIGNED_BY_NEW_CA
    if aki is not None and aki == old_ca_key_id:
        return SIGNED_BY_OLD_CA
    return UNKNOWN_ISSUER


def signer_by_issue_time(issued: dt.datetime | None, new_ca_made: dt.datetime | None) -> str:
    """Which CA signed a leaf whose PEM cannot be read: a leaf issued since the new CA was made is its."""
    if issued is not None and new_ca_made is not None and issued >= new_ca_made:
        return SIGNED_BY_NEW_CA
    return SIGNED_BY_OLD_CA


def own_procedure(cert: DeployedCertificate) -> str | None:
    """Why a rotation does not re-issue this certificate (it has its own procedure); None when it does."""
    if not (cert.configurable or cert.is_ca):
        return None
    return cert.rotation_procedure_name or (
        "configurable: rotate in the Ops Manager UI" if cert.configurable else "a CA with its own procedure"
    )


def new_ca_problems(
    cas: Sequence[CertificateAuthority], new_ca_guid: str, *, now: dt.datetime, expires_within: str
) -> list[str]:
    """What is wrong with the CAs after a rotation: the new CA must be the only one, active, and
    outlive the window ``expires_within``."""
    problems = []
    new_ca = listed_ca(cas, new_ca_guid)
    if [ca.guid for ca in cas] != [new_ca_guid]:
        problems.append(
            f"expected exactly one CA, the new {new_ca_guid}; found {', '.join(ca.guid for ca in cas)}"
        )
    if new_ca is not None and not new_ca.active:
        problems.append(f"the new CA {new_ca.guid} is not active")
    deadline = now + dt.timedelta(days=window_days(expires_within))
    if new_ca is not None and new_ca.expires_at is not None and new_ca.expires_at <= deadline:
        problems.append(f"the new CA expires {isoformat(new_ca.expires_at)}, within {expires_within}")
    return problems
