"""The in-process simulator and the patches that put the hook on it (see inprocess.py)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for extra in (HERE, HERE.parents[1] / "dags"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def pytest_terminal_summary(terminalreporter):
    """The figures of the histories that ran (for the README's reliability section)."""
    from history_stats import STATS

    if not STATS["histories"]:
        return
    lines = [
        f"rotation histories: {STATS['histories']} in {STATS['seconds']:.1f} s (seed {STATS['seed']}), "
        f"{STATS['steps']} steps, {STATS['tries']} task tries",
        f"  distinct planner states seen: {len(STATS['planner_states'])}",
        f"  end of history: clean run completed the rotation {STATS['converged']} times, refused before any write "
        f"{STATS['refused']} times",
        f"  longest history that converged: {STATS['longest_converged'][0]} steps "
        f"({STATS['longest_converged'][1]} calls by the person)",
    ]
    lines += [f"  refusal {k}: {v}" for k, v in sorted(STATS["refusals"].items())]
    terminalreporter.write_line("\n".join(lines))
