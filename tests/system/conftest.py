"""A real local Airflow for the system and browser tests: ``scripts/local_airflow.py up`` in a temp home.

One Airflow per pytest session (about 25 s to start), shared by the REST-API and the browser tests,
stopped by its recorded PIDs at the end whatever happens. Prerequisites that only a fresh machine
might miss (Debian's chromium) skip the test locally, but fail it under CI=true: CI must not go
green by skipping what it is there to prove.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from system_support import LocalAirflow, airflow_stack  # noqa: E402


@pytest.fixture(scope="session")
def local_airflow(tmp_path_factory) -> Iterator[LocalAirflow]:
    home = tmp_path_factory.mktemp("local-airflow")
    port = airflow_stack.free_port()
    script = [sys.executable, str(REPO / "scripts" / "local_airflow.py")]
    started = time.monotonic()
    up = subprocess.run([*script, "up", "--home", str(home), "--port", str(port), "--apply-seconds", "1", "--fresh"],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    try:
        if up.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
                             for p in sorted((home / "logs").glob("*.log")))
            pytest.fail(f"./dev airflow-up failed:\n{up.stdout}\n{logs}")
        info = json.loads((home / "local-airflow.json").read_text())
        print(f"local Airflow up in {time.monotonic() - started:.1f} s: {info['url']}")
        yield LocalAirflow(info)
    finally:
        subprocess.run([*script, "down", "--home", str(home)], timeout=120)
        left = {n: p for n, p in airflow_stack.recorded(home).items() if airflow_stack.alive(p)}
        assert not left, f"still running after down: {left}"
