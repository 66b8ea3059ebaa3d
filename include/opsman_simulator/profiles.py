"""Version profiles and user roles: how one family of Ops Manager versions, and one role, answer.

Kept apart from ``state.py`` (the model of the foundation): a profile changes what the API shows,
a role what it allows; neither changes what a successful call does. Sources: README "Profiles" and
"Roles"; "the reference" is docs/ops-manager-api.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ApiError

# ---------------------------------------------------------------------------------------------
# roles
# ---------------------------------------------------------------------------------------------

#: Role name -> the UAA groups (token ``scope``) of a user with that role. The group names are
#: Ops Manager's (reference §8); which scopes besides opsman.* a real token carries varies.
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "admin": ("opsman.admin", "scim.me", "uaa.admin", "clients.admin"),
    "full_control": ("opsman.full_control", "scim.me"),
    "restricted_control": ("opsman.restricted_control", "scim.me"),
    "full_view": ("opsman.full_view", "scim.me"),
    "restricted_view": ("opsman.restricted_view", "scim.me"),
}
#: Friendlier names accepted on the command line.
ROLE_ALIASES = {"full": "admin", "restricted": "restricted_control", "read_only": "full_view"}
ROLE_CHOICES = sorted({*ROLE_SCOPES, *ROLE_ALIASES})

WRITE_GROUPS = frozenset({"opsman.admin", "opsman.full_control", "opsman.restricted_control"})
CREDENTIAL_GROUPS = frozenset({"opsman.admin", "opsman.full_control"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# ASSUMPTION: no source shows a refused call's body; the reference (§0) documents 403
# ForbiddenResponse with the {"errors": {"errors": [...]}} envelope, the wording is ours.
FORBIDDEN_WRITE = {"errors": {"errors": ["You are not authorized to perform this action"]}}
FORBIDDEN_CREDENTIAL = {"errors": {"errors": ["You are not authorized to view credentials"]}}


def role_name(value: str) -> str:
    name = ROLE_ALIASES.get(value, value)
    if name not in ROLE_SCOPES:
        raise ValueError(f"unknown role {value!r}; choose one of {', '.join(ROLE_CHOICES)}")
    return name


def parse_extra_user(value: str) -> tuple[str, str, str]:
    """``NAME:PASSWORD:ROLE`` (the password may not contain ':')."""
    parts = value.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise ValueError(f"--extra-user {value!r}: expected NAME:PASSWORD:ROLE")
    return parts[0], parts[1], role_name(parts[2])


def check_permission(scopes: Any, method: str, path: str) -> None:
    """Refuse what the token's groups do not allow (403), as the role model of reference §8 says."""
    groups = set(scopes or ())
    if method in _WRITE_METHODS and not groups & WRITE_GROUPS:
        raise ApiError(403, FORBIDDEN_WRITE)
    if method == "GET" and _is_credential_read(path) and not groups & CREDENTIAL_GROUPS:
        raise ApiError(403, FORBIDDEN_CREDENTIAL)


def _is_credential_read(path: str) -> bool:
    # /api/v0/deployed/products/{guid}/credentials/{ref}: the value; the list of references stays readable.
    parts = path.strip("/").split("/")
    return (
        len(parts) == 7 and parts[:4] == ["api", "v0", "deployed", "products"] and parts[5] == "credentials"
    )


# ---------------------------------------------------------------------------------------------
# profiles
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    name: str
    version: str  # GET /api/v0/info
    answer_style: str  # "legacy" | "2.10"
    safety_checks: bool
    current_log: str  # "replay" (as documented for 3.0) or "absent" (404, no such endpoint)
    root_cas_in_deployed_certificates: bool


PROFILES: dict[str, Profile] = {
    "2.9": Profile("2.9", "2.9.13-build.165", "legacy", False, "absent", False),
    "2.10": Profile("2.10", "2.10.60-build.4", "2.10", True, "absent", True),
    # ASSUMPTION: the version string shape of 3.x ("3.0.25+LTS-T"); clients should read major.minor only.
    "3.0": Profile("3.0", "3.0.25+LTS-T", "2.10", True, "replay", True),
}


def profile_for(name: str | None, answer_style: str, safety_checks: bool) -> Profile:
    if name is None:
        # No profile: the flags decide, as before profiles; current_log as documented (it replays).
        version = PROFILES["2.10" if answer_style == "2.10" else "2.9"].version
        return Profile("none", version, answer_style, safety_checks, "replay", False)
    return PROFILES[name]
