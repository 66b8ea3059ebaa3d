"""One running simulator: its store, UAA, journal, request lock, and the faults kept in memory only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .checks import is_count
from .config import Config
from .journal import Journal
from .profiles import profile_for
from .state import Store
from .uaa import UAA

#: The control surface for tests (not part of Ops Manager's API).
SIM_PREFIX = "/_simulator"
#: The 3.0 log stream: long-lived, so it never holds the request lock.
CURRENT_LOG_PATH = "/api/v0/installations/current_log"


class Simulator:
    """Shared server-side context."""

    def __init__(self, config: Config):
        self.config = config
        Path(config.state_dir).mkdir(parents=True, exist_ok=True)
        self.store = Store(config)
        self.uaa = UAA(config, self.store)
        self.journal = Journal(config.state_dir, persist=config.persist)
        self.profile = profile_for(config.profile, config.answer_style, config.safety_checks)
        self.lock = asyncio.Lock()
        self.in_flight = 0
        #: The stream_cut fault (in memory): each of the next current_log streams ends after this many lines.
        self.stream_cuts: list[int] = []
        #: The unterminated_last_line fault: installation logs lose their final newline.
        self.unterminated_last_line = False
        #: The install_conflict fault: the answer to POST /api/v0/installations while one runs.
        self.install_conflict: dict[str, Any] | None = None

    @property
    def version(self) -> str:
        """What ``GET /api/v0/info`` reports."""
        # ASSUMPTION: legacy answers look like Ops Manager 2.9, "2.10" answers like 2.10 (README: Profiles).
        return self.config.info_version or self.profile.version

    # ------------------------------------------------------------------------------------------
    # faults kept in memory (the rest live in the store)
    # ------------------------------------------------------------------------------------------

    @staticmethod
    def parse_stream_cut(value: Any) -> list[int] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not all(is_count(v) for v in value):
            raise ValueError("stream_cut must be a list of line counts (integers >= 0)")
        return list(value)

    def apply_faults(self, body: Any) -> dict[str, Any]:
        """Validate and apply a ``POST /_simulator/faults`` body (nothing applied on ValueError);
        what is armed then."""
        cuts = self.parse_stream_cut(body.pop("stream_cut", None)) if isinstance(body, dict) else None
        conflict = body.pop("install_conflict", None) if isinstance(body, dict) else None
        if conflict is not None and not (
            isinstance(conflict, dict)
            and isinstance(conflict.get("status"), int)
            and 400 <= conflict["status"] <= 599
        ):
            raise ValueError('install_conflict must be {"status": 4xx/5xx, "body": any JSON}')
        unterminated = body.pop("unterminated_last_line", None) if isinstance(body, dict) else None
        if unterminated is not None and not isinstance(unterminated, bool):
            raise ValueError("unterminated_last_line must be true or false")
        self.store.apply_faults(body)
        if cuts is not None:
            self.stream_cuts = cuts
        if unterminated is not None:
            self.unterminated_last_line = unterminated
        if conflict is not None:
            self.install_conflict = {"status": conflict["status"], "body": conflict.get("body", {})}
        return self.faults_view()

    def faults_view(self) -> dict[str, Any]:
        return dict(
            self.store.faults,
            stream_cut=list(self.stream_cuts),
            unterminated_last_line=self.unterminated_last_line,
            install_conflict=self.install_conflict,
        )

    def take_stream_cut(self) -> int | None:
        return self.stream_cuts.pop(0) if self.stream_cuts else None

    # ------------------------------------------------------------------------------------------
    # control
    # ------------------------------------------------------------------------------------------

    def clear_journal(self) -> None:
        self.journal.clear()
        self.store.max_concurrent_requests = self.in_flight

    def reset(self) -> None:
        """A new foundation: state, in-memory faults and journal."""
        self.store.reset()
        self.stream_cuts, self.unterminated_last_line, self.install_conflict = [], False, None
        self.journal.clear()
        self.store.max_concurrent_requests = 0

    async def ticker(self, interval: float = 0.2) -> None:
        """Finish installations on time even when nobody polls (so state.json is current)."""
        while True:
            await asyncio.sleep(interval)
            async with self.lock:
                try:
                    self.store.tick()
                except Exception:  # pragma: no cover - keep the server alive
                    pass
