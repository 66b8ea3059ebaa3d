"""The request journal: every API call's method, path, redacted query, status, timing and size.

Kept in memory and mirrored to ``<state-dir>/journal.jsonl`` (append-only), so tests can read what a
client did, across a restart too (``GET /_simulator/journal``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .persistence import atomic_write

_SECRET_WORDS = ("pass", "secret", "token", "key", "credential", "authorization")


def _is_secret(name: str) -> bool:
    return any(w in name.lower() for w in _SECRET_WORDS)


def redact_query(raw: str) -> str:
    """The query string for the journal, with values of secret-looking parameters redacted."""
    if not raw:
        return ""
    pairs = parse_qsl(raw, keep_blank_values=True)
    if not any(_is_secret(k) for k, _ in pairs):
        return raw
    return urlencode([(k, "[REDACTED]" if _is_secret(k) else v) for k, v in pairs])


class Journal:
    """Request journal: in memory, mirrored to ``journal.jsonl`` (append-only) in the state dir."""

    def __init__(self, state_dir: Path, persist: bool = True):
        self.path = Path(state_dir) / "journal.jsonl"
        self.persist = persist
        self.entries: list[dict[str, Any]] = []
        self.seq = 0
        if persist and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
                self.entries.append(e)
                self.seq = max(self.seq, int(e.get("seq", 0)))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def append(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        if not self.persist:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def clear(self) -> None:
        self.entries = []
        if self.persist:
            atomic_write(self.path, b"")
