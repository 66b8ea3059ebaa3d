"""The installation log reaches the task log exactly once, line for line: across the sensor-to-trigger
hand-off, a replaying stream's reconnects, the polling fallback, and a last line without a newline."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from airflow.sdk.exceptions import TaskDeferred
from support import journal_calls, task_context

from opsman.hooks import OpsManagerHook
from opsman.models import ApplyChangesOptions
from opsman.sensors import ApplyChangesSensor
from opsman.triggers import InstallationTrigger


def start(sim, seconds: float) -> int:
    sim.faults(apply_seconds=seconds)
    return OpsManagerHook().apply_changes(ApplyChangesOptions())


def wait_for_lines(installation_id: int, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while OpsManagerHook().get_installation_logs(installation_id).count("\n") < count:
        assert time.monotonic() < deadline, f"the log did not reach {count} lines"
        time.sleep(0.05)


def hand_off(installation_id: int) -> InstallationTrigger:
    """The sensor's first poke (prints the log so far), then its deferral: the trigger it hands over to."""
    sensor = ApplyChangesSensor(task_id="wait", installation_id=installation_id, poll_interval_seconds=0.2,
                                log_interval_seconds=0)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(task_context())
    trigger = deferred.value.trigger
    assert trigger.log_offset > 0, "the sensor printed lines before deferring"
    return trigger


def run(trigger: InstallationTrigger) -> dict:
    async def first_event():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(first_event())


def printed_lines(out: str, installation_id: int) -> list[str]:
    marker = f"[installation {installation_id}] "
    # Airflow's console renderer appends " [logger name] loc=file:line" to each message.
    return [re.sub(r"\s+\[[\w.]+\]\s+loc=\S+$", "", line.split(marker, 1)[1]) for line in out.splitlines() if marker in line]


def final_log_lines(installation_id: int) -> list[str]:
    return OpsManagerHook().get_installation_logs(installation_id).split("\n")


def assert_printed_once(capfd, installation_id: int) -> None:
    printed = printed_lines("".join(capfd.readouterr()), installation_id)
    expected = [line for line in final_log_lines(installation_id) if line != ""]
    assert printed == expected, f"{len(printed)} printed, {len(expected)} in the log"


def test_hand_off_from_sensor_to_a_replaying_stream(sim, capfd):
    installation_id = start(sim, 3)
    wait_for_lines(installation_id, 3)
    trigger = hand_off(installation_id)
    assert run(trigger)["status"] == "succeeded"
    assert len(journal_calls(sim, "GET", "/api/v0/installations/current_log")) == 1
    assert_printed_once(capfd, installation_id)


def test_two_stream_breaks_are_reopened_and_skip_what_was_printed(sim, capfd):
    # Long enough that the breaks come while it runs, even on a loaded machine.
    installation_id = start(sim, 8)
    wait_for_lines(installation_id, 2)
    trigger = hand_off(installation_id)
    sim.faults(stream_cut=[4, 6])
    sim.clear_journal()
    assert run(trigger)["status"] == "succeeded"
    assert len(journal_calls(sim, "GET", "/api/v0/installations/current_log")) == 3
    assert journal_calls(sim, "GET", f"/api/v0/installations/{installation_id}/logs") == [], "no poll after the hand-off"
    assert_printed_once(capfd, installation_id)


def test_breaks_beyond_the_limit_fall_back_to_polling_without_repeats(sim, capfd):
    installation_id = start(sim, 8)
    wait_for_lines(installation_id, 2)
    trigger = hand_off(installation_id)
    trigger.log_interval_seconds = 0.3
    # Every stream breaks after a few lines, more often than the trigger reopens it.
    sim.faults(stream_cut=[3, 4, 5, 6, 7, 8])
    sim.clear_journal()
    assert run(trigger)["status"] == "succeeded"
    assert len(journal_calls(sim, "GET", "/api/v0/installations/current_log")) == 4, "three breaks reopened, then polling"
    assert journal_calls(sim, "GET", f"/api/v0/installations/{installation_id}/logs"), "the log was polled"
    assert_printed_once(capfd, installation_id)


@pytest.mark.parametrize("deferrable", [True, False], ids=["trigger", "poke"])
def test_a_last_line_without_newline_is_printed_once(sim, capfd, deferrable):
    sim.faults(unterminated_last_line=True, status_burst={"status": 404, "count": 100, "body": '{"errors": ["Not Found"]}',
                                                          "path_prefix": "/api/v0/installations/current_log"})
    installation_id = start(sim, 1.5)
    sensor = ApplyChangesSensor(task_id="wait", installation_id=installation_id, poll_interval_seconds=0.2,
                                log_interval_seconds=0, deferrable=deferrable)
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(task_context())
        assert run(deferred.value.trigger)["status"] == "succeeded"
    else:
        assert sensor.execute(task_context()) == installation_id
    logs = OpsManagerHook().get_installation_logs(installation_id)
    assert not logs.endswith("\n")
    printed = printed_lines("".join(capfd.readouterr()), installation_id)
    assert printed == logs.split("\n") and printed[-1] == "Exited Successfully"
