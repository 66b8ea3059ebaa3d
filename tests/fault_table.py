"""The README's fault-matrix table, kept by the fault suites themselves (never typed by hand).

Each suite records a row per case it ran; a row is replaced by name, so the table always shows the
latest observation of every case, whichever suite ran last.
"""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- fault-matrix:start -->", "<!-- fault-matrix:end -->"
HEADER = ["| fault | how it was injected | what the user sees in the task log | result |", "|---|---|---|---|"]


def record_row(fault: str, injected: str, seen: str, result: str) -> None:
    text = README.read_text()
    if START not in text or END not in text:
        return
    before, rest = text.split(START, 1)
    body, after = rest.split(END, 1)
    rows = [line for line in body.strip().splitlines() if line.startswith("| ") and line not in HEADER]
    row = f"| {fault} | {injected} | `{seen.replace('|', '/').replace('`', chr(39))[:160]}` | {result} |"
    rows = [r for r in rows if not r.startswith(f"| {fault} |")] + [row]
    README.write_text(f"{before}{START}\n" + "\n".join(HEADER + rows) + f"\n{END}{after}")
