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
