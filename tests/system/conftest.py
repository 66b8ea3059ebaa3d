"""A real local Airflow for the system and browser tests: ``scripts/local_airflow.py up`` in a temp home.

One Airflow per pytest session (about 25 s to start), shared by the REST-API and the browser tests,
stopped by its recorded PIDs at the end whatever happens. Prerequisites that only a fresh machine
might miss (Debian's chromium) skip the test locally, but fail it under CI=true: CI must not go
green by skipping what it is there to prove.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from system_support import LocalAirflow, airflow_stack, running_stack


@pytest.fixture(scope="session")
def local_airflow(tmp_path_factory) -> Iterator[LocalAirflow]:
    home = tmp_path_factory.mktemp("local-airflow")
    port = airflow_stack.free_port()
    with running_stack(
        "local_airflow.py",
        home,
        # Retries after 2 s: the restart tests wait for four of them, each 30 s with the DAG's own delay.
        ["--port", str(port), "--apply-seconds", "1", "--fresh", "--retry-delay-seconds", "2"],
        "local-airflow.json",
    ) as stack:
        yield stack
