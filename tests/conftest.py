"""Test set-up: a private AIRFLOW_HOME (set before anything imports airflow) and the simulator.

Every test that talks to Ops Manager talks to the bundled simulator over real HTTPS on 127.0.0.1,
verifying its TLS certificate with the CA it writes.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
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


@pytest.fixture(autouse=True)
def fresh_secrets_masker(monkeypatch) -> None:
    """Each test, and each task dag.test() runs, starts with no masked values, as an Airflow task process does.

    Airflow's masker keeps every value ever masked in its process and recompiles one regular expression
    of all of them on each new value. A task process masks a handful (its connection, one UAA token), but
    a test worker runs hundreds of rotations in one process: by the end every new token cost a compile
    of hundreds of tokens, most of a rotation's CPU time. What a task needs masked, it masks itself (the
    hook masks the password and every token it gets), as it must in production.
    """
    resets = []
    for module in ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker"):
        try:
            resets.append(importlib.import_module(module).reset_secrets_masker)
        except (ImportError, AttributeError):  # not in every supported Airflow
            continue

    def reset() -> None:
        for reset_one in resets:
            reset_one()

    reset()
    from airflow.sdk import DAG

    dag_test = sys.modules[DAG.test.__module__]
    run_task = getattr(dag_test, "_run_task", None)
    if run_task is not None:

        def run_task_in_a_fresh_masker(*args, **kwargs):
            reset()
            return run_task(*args, **kwargs)

        monkeypatch.setattr(dag_test, "_run_task", run_task_in_a_fresh_masker)


@pytest.fixture(autouse=True)
def quick_dag_test_passes(monkeypatch) -> None:
    """dag.test() sleeps 1 s after every scheduling pass that found no task to run: while a failed task's
    downstream tasks are marked upstream_failed (one level of the chain per pass), while a retry's delay
    runs out. Here those sleeps last DAG_TEST_PASS_SECONDS; every other sleep is untouched."""
    from airflow.sdk import DAG

    dag_test_file = DAG.test.__code__.co_filename
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if sys._getframe(1).f_code.co_filename == dag_test_file:
            seconds = min(seconds, DAG_TEST_PASS_SECONDS)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)


#: How long dag.test() waits between scheduling passes that found nothing to run (Airflow's own is 1 s).
DAG_TEST_PASS_SECONDS = 0.1


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.initdb()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the groups into scopes
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``./dev test``), the tests that share the session's ``local_airflow`` run on
    one worker, which starts it once (a start costs about 25 s of both cores); every other module that
    starts Airflows is a group of its own, which can run beside them on another worker (each stack
    has its own home, ports and simulators)."""
    for item in items:
        if item.get_closest_marker("system"):
            shared = "local_airflow" in getattr(item, "fixturenames", ())
            group = "local-airflow" if shared else f"airflow-{item.module.__name__}"
            item.add_marker(pytest.mark.xdist_group(group))
        elif item.get_closest_marker("packaging"):
            # One worker builds the wheel and the Airflow 3.1.0 venv (module fixtures) for all of them.
            item.add_marker(pytest.mark.xdist_group("packaging"))
    # The longest tests first (xdist hands out work in this order, after the groups of several tests), so
    # that no worker starts a minutes-long test while the others run out of work.
    items.sort(
        key=lambda item: next((n for n, m in enumerate(LONGEST_FIRST) if item.get_closest_marker(m)), 99)
    )


@pytest.hookimpl(trylast=True)  # after xdist's hook
def pytest_collection_finish(session):
    """Refuse to run when xdist ignored the groups (it did, silently, under pytest 9.2): the local
    Airflow's tests would each start their own Airflow on every worker."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        message = (
            f"pytest-xdist did not apply the xdist_group of {len(lost)} tests (e.g. {lost[0]}): "
            "install the pytest and pytest-xdist versions of constraints/ (./dev setup)"
        )
        print(message, file=sys.stderr)  # a worker's exception reaches the terminal only as xdist's own
        raise pytest.UsageError(message)


#: Markers of the tests that take minutes (whole Airflows, random histories, a pip install), longest first.
LONGEST_FIRST = ("system", "properties", "packaging", "faults", "e2e")


def pytest_sessionstart(session):
    from properties.history_stats import clear_at_session_start

    clear_at_session_start(session)


def pytest_terminal_summary(terminalreporter):
    """The figures of tests/properties' random histories, added up across xdist workers."""
    from properties.history_stats import terminal_summary

    terminal_summary(terminalreporter)
