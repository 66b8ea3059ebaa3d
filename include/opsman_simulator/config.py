"""The simulator's settings (set on the command line) and the error every API rule raises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ApiError(Exception):
    """An Ops Manager API error answer."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Config:
    state_dir: Path
    apply_seconds: float = 5.0
    token_ttl: float = 3600.0
    username: str = "admin"
    password: str = "admin-password"
    client_id: str | None = None
    client_secret: str | None = None
    ca_date_format: str = "date"  # "date" | "rfc3339"
    initial_ca_age_days: float = 1200
    answer_style: str = "legacy"  # "legacy" | "2.10"
    safety_checks: bool = False
    # Version profile (profiles.py), role of --username/--client-id, more users.
    profile: str | None = None  # None | "2.9" | "2.10" | "3.0"
    role: str = "admin"
    extra_users: tuple = ()  # ((name, password, role), ...)
    info_version: str | None = None  # overrides the profile's /api/v0/info version
    #: False: state and journal live in memory only (no state.json, no journal.jsonl, no fsync).
    #: For tests that run thousands of short histories in-process; a restart then starts fresh.
    persist: bool = True
