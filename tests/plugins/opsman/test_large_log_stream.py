"""A large 3.0-profile installation log, its stream broken twice: every line once, downloads within 1.5x the log."""

from __future__ import annotations

import asyncio
import re

import pytest
from airflow.sdk.exceptions import TaskDeferred
from support import SIM_PASSWORD, SIM_USER, connection_json, task_context

from opsman.hooks import OpsManagerHook
from opsman.models import ApplyChangesOptions
from opsman.sensors import ApplyChangesSensor
from opsman_simulator.process import SimulatorProcess

LOG_PATHS = ("/logs", "/current_log")


@pytest.fixture(scope="module")
def sim30(tmp_path_factory):
    sim = SimulatorProcess(tmp_path_factory.mktemp("sim-3.0"), apply_seconds=6, username=SIM_USER, password=SIM_PASSWORD,
                           extra_args=("--profile", "3.0"))
    sim.start()
    yield sim
    sim.stop()


def test_two_reconnects_print_each_line_once_and_download_at_most_one_and_a_half_logs(sim30, monkeypatch, capfd):
    sim = sim30
    sim.reset()
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(sim))
    # ~100 kB/s of padding lines: a log of about 0.6 MB.
    sim.faults(log_bytes_per_second=100_000, stream_cut=[4, 8])
    installation_id = OpsManagerHook().apply_changes(ApplyChangesOptions())
    sim.clear_journal()

    sensor = ApplyChangesSensor(task_id="wait", installation_id=installation_id, poll_interval_seconds=0.5,
                                log_interval_seconds=0)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(task_context())

    async def first_event():
        async for event in deferred.value.trigger.run():
            return event.payload

    assert asyncio.run(first_event())["status"] == "succeeded"
    journal = sim.journal()
    streams = [e for e in journal if e["path"] == "/api/v0/installations/current_log"]
    assert len(streams) == 3, "two breaks, two reconnects"
    downloaded = sum(e["bytes"] for e in journal if e["path"].endswith(LOG_PATHS))

    logs = OpsManagerHook().get_installation_logs(installation_id)
    final = len(logs.encode())
    assert final > 400_000, f"the log is large ({final} B)"
    assert downloaded <= 1.5 * final, f"downloaded {downloaded} B for a {final} B log ({downloaded / final:.2f}x)"
    marker = f"[installation {installation_id}] "
    out = "".join(capfd.readouterr())
    printed = [re.sub(r"\s+\[[\w.]+\]\s+loc=\S+$", "", line.split(marker, 1)[1]) for line in out.splitlines() if marker in line]
    assert printed == [line for line in logs.split("\n") if line]
    print(f"log {final} B, downloaded {downloaded} B ({downloaded / final:.2f}x) over {len(streams)} streams")
