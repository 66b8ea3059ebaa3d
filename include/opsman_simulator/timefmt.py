"""How the simulated Ops Manager writes times, and how it reads the ``expires_within`` window.

Formats follow docs/ops-manager-api.md: installations carry milliseconds (§4.2), certificates whole
seconds (§3.1), certificate authorities a date or, with ``--ca-date-format rfc3339``, whole seconds (§2.1).
"""

from __future__ import annotations

import re

from . import pki
from .config import ApiError

DAY_SECONDS = 86400.0


def rfc3339_ms(ts: float | None) -> str | None:
    if ts is None:
        return None
    d = pki.utc(ts)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def rfc3339_s(ts: float) -> str:
    return pki.utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_full(ts: float) -> str:
    return pki.utc(ts).isoformat().replace("+00:00", "Z")


def calendar_date(ts: float) -> str:
    return pki.utc(ts).strftime("%Y-%m-%d")


_EXPIRES_WITHIN_RE = re.compile(r"^[1-9]+\d*[dwmy]$")
# ASSUMPTION: m = 30 days, y = 365 days.
_UNIT_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}


def parse_expires_within(value: str) -> float:
    """Return the window in seconds, or raise ApiError 422."""
    if not _EXPIRES_WITHIN_RE.match(value or ""):
        # ASSUMPTION: status and wording; docs/ops-manager-api.md documents only the format.
        raise ApiError(
            422,
            {
                "errors": [
                    f"Invalid expires_within '{value}': expected an integer followed by d, w, m or y (e.g. 3m)"
                ]
            },
        )
    return int(value[:-1]) * _UNIT_DAYS[value[-1]] * DAY_SECONDS


def expiry_cutoff(expires_within: str | None, now: float) -> float | None:
    """The latest expiry a certificate listed with ``?expires_within=`` may have; None without a window."""
    return None if expires_within is None else now + parse_expires_within(expires_within)
