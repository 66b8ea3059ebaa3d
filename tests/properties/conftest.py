"""The in-process simulator and the patches that put the hook on it (see inprocess.py)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for extra in (HERE, HERE.parents[1] / "dags"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def pytest_collection_modifyitems(config, items):
    """One xdist group per shard: ``--dist loadgroup`` (./dev test) then gives each shard its own worker."""
    import pytest

    for item in items:
        shard = getattr(item, "callspec", None) and item.callspec.params.get("shard")
        if shard is not None:
            item.add_marker(pytest.mark.xdist_group(f"histories-shard{shard}"))


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):
        from history_stats import clear_saved

        clear_saved()


def pytest_terminal_summary(terminalreporter):
    """The figures of the histories that ran (for the README's reliability section)."""
    if hasattr(terminalreporter.config, "workerinput"):
        return
    from history_stats import combined

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
        lines.append(f"  KNOWN LIMITATION: completed, but the deleted old CA still in a trust store: "
                     f"{stats['old_ca_left_in_trust_store']} times")
    terminalreporter.write_line("\n".join(lines))
