"""Documentation tables written from what the test suites observed, never by the tests themselves.

A suite calls :func:`observe` for each row it measured. The observation goes to ``.run/observed/``
(ignored by git) and the row is compared with the table in README.md or the ``docs/`` page that holds
its ``<!-- table:start -->`` marker: a difference fails the test and names
the command that rewrites the table, ``./dev docs`` (which runs the observing suites with
``OPSMAN_DOCS_REFRESH=1``, so they record without comparing, then runs this file to render them).

Rows must be the same from run to run: :func:`mask` replaces what varies (ids, GUIDs, times, attempt
numbers, the name of whichever call a timed fault happened to hit).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
OBSERVED = REPO / ".run" / "observed"
COMMAND = "./dev docs"

TABLES = {
    "fault-matrix": ["fault", "how it was injected", "what the user sees in the task log", "result"],
    "profile-matrix": [
        "Ops Manager profile",
        "role",
        "result",
        "credential reads",
        "installation log in the task logs",
    ],
}

_MASKS = [
    (re.compile(r"\b[0-9a-f]{20,}\b"), "<guid>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?)?"), "<date>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}\b"), "<time>"),
    (re.compile(r"\b(installation|attempt|Installation|Task) \d+"), r"\1 N"),
    (re.compile(r"\d+(?:\.\d+)? s\b"), "N s"),
    # "<call>: attempt N of 8 failed (<call> (GET /api/...) failed with ...": which call a timed fault hit varies.
    (re.compile(r"^[^:()\[]+: (?=attempt N of|Ops Manager rejected)"), "<call>: "),
    (re.compile(r"\((?:[^()]*) \((?:GET|POST|PUT|PATCH|DELETE) [^()]*\) failed"), "(<call> failed"),
    # The error's own words after its type differ by when the connection broke (refused, reset, closed).
    (re.compile(r"(no HTTP response: \w+)(?:: [^)]*)?\)"), r"\1)"),
]


def mask(text: str, limit: int = 140) -> str:
    """The stable form of a log line: variable parts replaced, cut at ``limit`` characters."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text.replace("|", "/").replace("`", "'")[:limit]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")[:80]


def observe(table: str, order: int, cells: list[str]) -> None:
    """Record one observed row (``order`` is its key and its place) and check its document shows exactly it."""
    assert len(cells) == len(TABLES[table]), cells
    folder = OBSERVED / table
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{order:03d}-{_slug(cells[0])}.json").write_text(json.dumps({"order": order, "cells": cells}))
    if os.environ.get("OPSMAN_DOCS_REFRESH"):
        return
    document = document_of(table)
    shown = _table_rows(document.read_text(), table)
    name = document.relative_to(REPO)
    assert _row(cells) in shown, (
        f"{name}'s {table} table does not show what this test observed:\n  {_row(cells)}\n"
        f"Run `{COMMAND}` to rewrite the table from the suites' observations, then commit {name}."
    )


def _markers(table: str) -> tuple[str, str]:
    return f"<!-- {table}:start -->", f"<!-- {table}:end -->"


def document_of(table: str) -> Path:
    """The README or docs/ page holding ``table``'s markers."""
    start, end = _markers(table)
    for path in DOCUMENTS:
        text = path.read_text()
        if start in text and end in text:
            return path
    raise SystemExit(f"no document has a {start} ... {end} block for the {table} table")


def _table_rows(text: str, table: str) -> list[str]:
    start, end = _markers(table)
    if start not in text or end not in text:
        return []
    return text.split(start, 1)[1].split(end, 1)[0].strip().splitlines()[2:]


def render(text: str, table: str) -> str:
    """A document's text with ``table`` rewritten from the observations (rows in their suites' order)."""
    start, end = _markers(table)
    rows = sorted(
        (json.loads(p.read_text()) for p in (OBSERVED / table).glob("*.json")), key=lambda r: r["order"]
    )
    header = [_row(TABLES[table]), "|" + "---|" * len(TABLES[table])]
    body = "\n".join(header + [_row(r["cells"]) for r in rows])
    before, rest = text.split(start, 1)
    return f"{before}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


if __name__ == "__main__":  # ./dev docs, after the observing suites ran
    for name in TABLES:
        if not (OBSERVED / name).is_dir():
            sys.exit(f"nothing observed for the {name} table: run the suites first ({COMMAND} does)")
        document = document_of(name)
        document.write_text(render(document.read_text(), name))
        print(f"{document.relative_to(REPO)}: the {name} table rewritten")
