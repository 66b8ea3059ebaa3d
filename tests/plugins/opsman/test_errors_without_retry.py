"""Errors no retry can fix fail at once (AirflowFailException) with their remedy; transient ones stay retryable."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.sdk.exceptions import AirflowFailException
from support import SIM_CLIENT_ID, connection_json, journal_calls

from opsman.exceptions import (
    OpsManagerConfigError,
    OpsManagerCredentialsError,
    OpsManagerRejectedError,
    OpsManagerTransientError,
)
from opsman.hooks import OpsManagerAsyncHook, OpsManagerHook


def use(monkeypatch, sim, **overrides) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(sim, **overrides))


def use_raw(monkeypatch, body: dict) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", json.dumps(body))


class TestNotRetried:
    def test_wrong_password_asks_once_and_names_the_remedy(self, sim, monkeypatch):
        use(monkeypatch, sim, password="not-the-password")
        sim.clear_journal()
        with pytest.raises(OpsManagerCredentialsError) as err:
            OpsManagerHook().list_certificate_authorities()
        assert isinstance(err.value, AirflowFailException)
        assert "Check the login/password" in str(err.value) and "not-the-password" not in str(err.value)
        assert len(journal_calls(sim, "POST", "/uaa/oauth/token")) == 1
        assert journal_calls(sim, "GET") == []

    def test_wrong_client_secret_is_not_retried(self, sim, monkeypatch):
        body = {"conn_type": "opsman", "host": sim.url,
                "extra": {"ca_cert": str(sim.ca_path), "client_id": SIM_CLIENT_ID, "client_secret": "wrong-secret"}}
        use_raw(monkeypatch, body)
        sim.clear_journal()
        with pytest.raises(OpsManagerCredentialsError, match="client_id/client_secret") as err:
            OpsManagerHook().list_certificate_authorities()
        assert "wrong-secret" not in str(err.value)
        assert len(journal_calls(sim, "POST", "/uaa/oauth/token")) == 1

    def test_the_async_hook_also_fails_at_once_on_a_wrong_password(self, sim, monkeypatch):
        use(monkeypatch, sim, password="not-the-password")
        sim.clear_journal()
        with pytest.raises(OpsManagerCredentialsError):
            asyncio.run(OpsManagerAsyncHook().list_installations())
        assert len(journal_calls(sim, "POST", "/uaa/oauth/token")) == 1

    @pytest.mark.parametrize("hook_kind", ["sync", "async"])
    def test_a_host_name_that_does_not_exist_is_a_configuration_error(self, sim, monkeypatch, caplog, hook_kind):
        # .invalid never resolves (RFC 6761); a read would otherwise be retried read_retries times.
        use_raw(monkeypatch, json.loads(connection_json(sim)) | {"host": "https://opsman.invalid"})
        with pytest.raises(OpsManagerConfigError, match="'opsman.invalid' does not resolve.*Check the host") as err:
            if hook_kind == "sync":
                OpsManagerHook().list_certificate_authorities()
            else:
                asyncio.run(OpsManagerAsyncHook().list_installations())
        # Not an OpsManagerTransientError: neither hook's retry policy (transient errors only) takes it again.
        assert isinstance(err.value, AirflowFailException) and not isinstance(err.value, OpsManagerTransientError)
        if hook_kind == "sync":  # the sync hook logs every retry it makes
            assert not [r for r in caplog.records if "retrying" in r.getMessage()], "the lookup was retried"

    def test_plain_http_is_a_configuration_error_before_any_request(self, sim, monkeypatch):
        use_raw(monkeypatch, json.loads(connection_json(sim)) | {"host": sim.url.replace("https://", "http://")})
        sim.clear_journal()
        with pytest.raises(AirflowFailException, match="plain http.*use https"):
            OpsManagerHook().list_certificate_authorities()
        assert sim.journal() == []

    def test_invalid_input_422_is_not_retried(self, sim):
        hook = OpsManagerHook()
        (active,) = hook.list_certificate_authorities()
        sim.clear_journal()
        with pytest.raises(OpsManagerRejectedError, match="HTTP 422: Active certificates cannot be deleted") as err:
            hook.delete_certificate_authority(active.guid)
        assert isinstance(err.value, AirflowFailException)
        assert len(journal_calls(sim, "DELETE")) == 1


class TestTransientKeepRetries:
    def test_a_503_burst_is_retried_and_is_not_a_fail_exception(self, sim, monkeypatch):
        use(monkeypatch, sim, read_retries=2)
        hook = OpsManagerHook()
        hook.list_installations()
        sim.faults(status_burst={"status": 503, "count": 5, "methods": ["GET"], "path_prefix": "/api/"})
        sim.clear_journal()
        with pytest.raises(OpsManagerTransientError) as err:
            hook.list_installations()
        assert not isinstance(err.value, AirflowFailException)
        assert [e["status"] for e in journal_calls(sim, "GET")] == [503, 503]

    def test_uaa_unavailable_stays_retryable(self, sim, monkeypatch):
        use(monkeypatch, sim, read_retries=2)
        sim.faults(status_burst={"status": 503, "count": 3, "methods": ["POST"], "path_prefix": "/uaa/"})
        with pytest.raises(Exception) as err:
            OpsManagerHook().list_installations()
        assert not isinstance(err.value, AirflowFailException), err.value



class TestTriggerErrors:
    def test_a_permanent_error_in_the_trigger_fails_the_sensor_without_retries(self, sim, monkeypatch):
        from opsman.sensors import ApplyChangesSensor
        from opsman.triggers import InstallationTrigger

        use(monkeypatch, sim, password="not-the-password")

        async def first_event():
            async for event in InstallationTrigger("opsman_default", 1, poll_interval_seconds=0.1).run():
                return event.payload

        event = asyncio.run(first_event())
        assert event["status"] == "error" and event["permanent"] is True
        sensor = ApplyChangesSensor(task_id="wait", installation_id=1)
        with pytest.raises(AirflowFailException, match="refused to issue a token"):
            sensor.execute_complete({}, event)

    def test_a_transient_error_in_the_trigger_keeps_the_retries(self, sim, monkeypatch):
        from opsman.exceptions import OpsManagerError
        from opsman.sensors import ApplyChangesSensor

        event = {"status": "error", "installation_id": 1, "message": "connection reset", "permanent": False}
        with pytest.raises(OpsManagerError) as err:
            ApplyChangesSensor(task_id="wait", installation_id=1).execute_complete({}, event)
        assert not isinstance(err.value, AirflowFailException)
