"""Test set-up: a private AIRFLOW_HOME (set before anything imports airflow) and the simulator.

Every test that talks to Ops Manager talks to the bundled simulator over real HTTPS on 127.0.0.1,
verifying its TLS certificate with the CA it writes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_HOME = tempfile.mkdtemp(prefix="opsman-airflow-home-", dir="/dev/shm")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"

import pytest  # noqa: E402
from support import SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_PASSWORD, SIM_USER, connection_json  # noqa: E402

from opsman_simulator.process import SimulatorProcess  # noqa: E402


@pytest.fixture(scope="session")
def simulator(tmp_path_factory) -> Iterator[SimulatorProcess]:
    """One simulator for the session; tests reset it through its control surface."""
    # An Apply Changes lasts 0.3 s: long enough to be seen running by a 0.1 s poll (support.polling_fast),
    # short enough that four of them are not most of a rotation's time. Tests that need an installation
    # to outlast something set apply_seconds themselves.
    sim = SimulatorProcess(
        tmp_path_factory.mktemp("opsman-sim"),
        apply_seconds=0.3,
        username=SIM_USER,
        password=SIM_PASSWORD,
        client_id=SIM_CLIENT_ID,
        client_secret=SIM_CLIENT_SECRET,
    )
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim(simulator: SimulatorProcess, monkeypatch) -> SimulatorProcess:
    """The shared simulator, reset to its initial state, wired as ``opsman_default``."""
    simulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(simulator))
    return simulator


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.initdb()


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``./dev test`` runs two workers), the tests that start a whole Airflow run one
    after another on one worker: two Airflows at once would only compete for the same two cores."""
    for item in items:
        if item.get_closest_marker("system"):
            item.add_marker(pytest.mark.xdist_group("airflow"))


def pytest_sessionstart(session):
    from properties.history_stats import clear_at_session_start

    clear_at_session_start(session)


def pytest_terminal_summary(terminalreporter):
    """The figures of tests/properties' random histories, added up across xdist workers."""
    from properties.history_stats import terminal_summary

    terminal_summary(terminalreporter)
