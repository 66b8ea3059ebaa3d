"""ApplyChangesSensor and InstallationTrigger against the simulator."""

from __future__ import annotations

import importlib

import pytest
from support import api_writes, journal_calls, task_context, wait_for_installation
from support import run_to_event as run_trigger

from opsman.compat import AirflowFailException, TaskDeferred
from opsman.exceptions import OpsManagerError
from opsman.hooks import OpsManagerHook
from opsman.models import ApplyChangesOptions
from opsman.sensors import ApplyChangesSensor
from opsman.triggers import InstallationTrigger


def start_install(sim, fail=False) -> int:
    if fail:
        sim.faults(fail_next_installs=1)
    return OpsManagerHook().apply_changes(ApplyChangesOptions())


def sensor(installation_id, **kwargs) -> ApplyChangesSensor:
    return ApplyChangesSensor(
        task_id="wait",
        installation_id=installation_id,
        poll_interval_seconds=0.2,
        log_interval_seconds=0,
        **kwargs,
    )


class TestPokeMode:
    def test_waits_for_success_and_prints_the_log(self, sim, capfd):
        installation_id = start_install(sim)
        assert sensor(installation_id, deferrable=False).execute(task_context()) == installation_id
        out = "".join(capfd.readouterr())
        assert f"[installation {installation_id}]" in out
        assert f"Installation {installation_id} succeeded" in out

    def test_a_failed_installation_fails_the_task_with_the_log_tail(self, sim):
        installation_id = start_install(sim, fail=True)
        with pytest.raises(AirflowFailException) as err:
            sensor(installation_id, deferrable=False).execute(task_context())
        message = str(err.value)
        assert f"installation {installation_id}) failed" in message
        tail = OpsManagerHook().get_installation_logs(installation_id).rstrip("\n").splitlines()[-1]
        assert tail in message

    def test_reschedule_mode_reads_the_log_only_once_it_has_finished(self, sim):
        # Each reschedule poke runs in a new process that has no log offset: the log is read once, at the end.
        sim.faults(apply_seconds=3)
        installation_id = start_install(sim)
        sim.clear_journal()
        rescheduled = sensor(installation_id, deferrable=False, mode="reschedule")
        assert rescheduled.poke(task_context()) is False
        assert journal_calls(sim, "GET", f"/api/v0/installations/{installation_id}/logs") == []
        wait_for_installation(sim, OpsManagerHook(), installation_id)
        assert rescheduled.poke(task_context()) is True
        assert len(journal_calls(sim, "GET", f"/api/v0/installations/{installation_id}/logs")) == 1


class TestDeferrable:
    def test_defers_to_a_trigger_that_only_reads(self, sim):
        sim.faults(apply_seconds=3)
        installation_id = start_install(sim)
        op = sensor(installation_id)
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(task_context())
        trigger = deferred.value.trigger
        assert isinstance(trigger, InstallationTrigger) and deferred.value.method_name == "execute_complete"

        # What the triggerer does after a restart: rebuild the trigger from its serialized form.
        classpath, kwargs = trigger.serialize()
        module, _, name = classpath.rpartition(".")
        rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
        assert rebuilt.serialize() == (classpath, kwargs)
        sim.clear_journal()
        event = run_trigger(rebuilt)
        assert event["status"] == "succeeded" and event["installation_id"] == installation_id
        assert api_writes(sim) == [], "the trigger never writes"
        assert len(journal_calls(sim, "GET", f"/api/v0/installations/{installation_id}")) >= 1
        assert op.execute_complete(task_context(), event) == installation_id

    def test_an_already_finished_installation_does_not_defer(self, sim):
        installation_id = start_install(sim)
        sensor(installation_id, deferrable=False).execute(task_context())
        assert sensor(installation_id).execute(task_context()) == installation_id

    def test_trigger_reports_a_failed_installation_and_the_task_fails_with_the_tail(self, sim):
        installation_id = start_install(sim, fail=True)
        event = run_trigger(InstallationTrigger("opsman_default", installation_id, poll_interval_seconds=0.2))
        assert event["status"] == "failed"
        with pytest.raises(AirflowFailException, match=f"installation {installation_id}"):
            sensor(installation_id).execute_complete(task_context(), event)

    def test_trigger_turns_errors_into_an_error_event(self, sim):
        event = run_trigger(InstallationTrigger("opsman_default", 99999, poll_interval_seconds=0.2))
        assert event["status"] == "error" and "HTTP 404" in event["message"]
        with pytest.raises(OpsManagerError, match="waiting for installation 99999 failed"):
            sensor(99999).execute_complete(task_context(), event)

    def test_trigger_gives_up_at_its_deadline(self, sim):
        sim.faults(apply_seconds=30)
        installation_id = start_install(sim)
        event = run_trigger(
            InstallationTrigger("opsman_default", installation_id, poll_interval_seconds=0.2, end_time=0)
        )
        assert event["status"] == "timeout"
        with pytest.raises(AirflowFailException, match="still running at the deadline"):
            sensor(installation_id).execute_complete(task_context(), event)

    @pytest.mark.parametrize("event", [None, {}, {"status": "weird"}, "succeeded"])
    def test_unexpected_events_are_refused(self, sim, event):
        with pytest.raises(OpsManagerError, match="unexpected event"):
            sensor(1).execute_complete(task_context(), event)


class TestLogStreaming:
    def test_log_lines_stream_once_instead_of_polling_the_whole_log(self, sim, capfd):
        sim.faults(apply_seconds=3)
        installation_id = start_install(sim)
        sim.clear_journal()
        event = run_trigger(
            InstallationTrigger(
                "opsman_default", installation_id, poll_interval_seconds=0.3, log_interval_seconds=0
            )
        )
        assert event["status"] == "succeeded"
        assert len(journal_calls(sim, "GET", "/api/v0/installations/current_log")) == 1
        assert journal_calls(sim, "GET", f"/api/v0/installations/{installation_id}/logs") == []
        printed = [
            line
            for line in "".join(capfd.readouterr()).splitlines()
            if f"[installation {installation_id}]" in line
        ]
        log_lines = OpsManagerHook().get_installation_logs(installation_id).rstrip("\n").splitlines()
        assert len(printed) == len(log_lines), "every line printed once"

    def test_without_the_streaming_endpoint_it_polls_the_log(self, sim, capfd):
        sim.faults(
            apply_seconds=4,
            status_burst={"status": 404, "count": 1, "path_prefix": "/api/v0/installations/current_log"},
        )
        installation_id = start_install(sim)
        event = run_trigger(
            InstallationTrigger(
                "opsman_default", installation_id, poll_interval_seconds=0.3, log_interval_seconds=60
            )
        )
        assert event["status"] == "succeeded"
        # The whole log at most once while running (log_interval 60 s) and once at the end, though the
        # status was polled many times: never om's whole log on every poll.
        status_polls = journal_calls(sim, "GET", f"/api/v0/installations/{installation_id}")
        assert (
            1
            <= len(journal_calls(sim, "GET", f"/api/v0/installations/{installation_id}/logs"))
            <= 2
            < len(status_polls)
        )
        out = "".join(capfd.readouterr())
        assert "no streaming log endpoint" in out
        printed = [line for line in out.splitlines() if f"[installation {installation_id}]" in line]
        assert len(printed) == len(
            OpsManagerHook().get_installation_logs(installation_id).rstrip("\n").splitlines()
        )
