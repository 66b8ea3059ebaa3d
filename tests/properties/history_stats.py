"""Figures of the histories run in this session (one module instance, imported by name everywhere).

Under pytest-xdist each worker writes its figures to ``.run/properties/``; the controller adds them up
for the terminal summary (conftest.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STATS = {
    "histories": 0,
    "steps": 0,
    "tries": 0,
    "planner_states": set(),
    "converged": 0,
    "refused": 0,
    "longest_converged": (0, 0, 0),
    "seconds": 0.0,
    "seed": None,
    "refusals": {},
}
STATS_DIR = Path(__file__).resolve().parents[2] / ".run" / "properties"


def save_stats() -> None:
    STATS_DIR.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    data = dict(STATS, planner_states=sorted(map(list, STATS["planner_states"])))
    (STATS_DIR / f"{worker}.json").write_text(json.dumps(data))


def clear_saved() -> None:
    for path in STATS_DIR.glob("*.json"):
        path.unlink()


def combined() -> dict | None:
    parts = [json.loads(p.read_text()) for p in sorted(STATS_DIR.glob("*.json"))]
    if not parts:
        return None
    total = {
        "histories": 0,
        "steps": 0,
        "tries": 0,
        "converged": 0,
        "refused": 0,
        "refusals": {},
        "seconds": 0.0,
        "planner_states": set(),
        "longest_converged": (0, 0, 0),
        "seed": parts[0]["seed"],
        "workers": len(parts),
    }
    for part in parts:
        for key in ("histories", "steps", "tries", "converged", "refused", "old_ca_left_in_trust_store"):
            total[key] = total.get(key, 0) + part.get(key, 0)
        total["seconds"] = max(total["seconds"], part["seconds"])
        total["planner_states"] |= {json.dumps(s) for s in part["planner_states"]}
        total["longest_converged"] = max(total["longest_converged"], tuple(part["longest_converged"]))
        for k, v in part["refusals"].items():
            total["refusals"][k] = total["refusals"].get(k, 0) + v
    return total


# Hooks, called from tests/conftest.py: under pytest-xdist the controller loads only that conftest.
def clear_at_session_start(session):
    if not hasattr(session.config, "workerinput"):
        clear_saved()


def terminal_summary(terminalreporter):
    """The figures of the histories that ran (for the README's reliability section)."""
    if hasattr(terminalreporter.config, "workerinput"):
        return
    stats = combined()
    if not stats or not stats["histories"]:
        return
    lines = [
        f"rotation histories: {stats['histories']} in {stats['seconds']:.1f} s on {stats['workers']} worker(s) "
        f"(seed {stats['seed']}), {stats['steps']} steps, {stats['tries']} task tries",
        f"  distinct planner states seen: {len(stats['planner_states'])}",
        f"  end of history: a clean run completed the rotation {stats['converged']} times, stopped before any write "
        f"{stats['refused']} times",
        f"  longest history that converged: {stats['longest_converged'][0]} task tries in "
        f"{stats['longest_converged'][1]} steps, {stats['longest_converged'][2]} calls by the person",
    ]
    lines += [f"  stopped at {k}: {v}" for k, v in sorted(stats["refusals"].items())]
    if stats.get("old_ca_left_in_trust_store"):
        lines.append(
            f"  KNOWN LIMITATION: completed, but the deleted old CA still in a trust store: "
            f"{stats['old_ca_left_in_trust_store']} times"
        )
    terminalreporter.write_line("\n".join(lines))
