"""The in-process simulator and the patches that put the hook on it (see inprocess.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_rotation_histories import histories_world  # noqa: F401 - the fixture, for test_regressions too

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """One xdist group per shard: ``--dist loadgroup`` (./dev test) then gives each shard its own worker.
    The short regression replays share one more group (as one scope each they could pile both shards onto
    one worker when ``-m properties`` runs alone)."""
    for item in items:
        if HERE not in Path(str(item.fspath)).resolve().parents:
            continue
        callspec = getattr(item, "callspec", None)
        shard = callspec.params.get("shard") if callspec else None
        item.add_marker(pytest.mark.xdist_group(f"histories-shard{shard if shard is not None else 'last'}"))
