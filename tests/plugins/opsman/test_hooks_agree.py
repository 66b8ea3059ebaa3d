"""The sync hook (tasks) and the async hook (triggers) answer UAA's and Ops Manager's faults alike.

Each fault is injected into the simulator twice, once per hook, over real HTTPS: both hooks must send
the same calls in the same order and end the same way (the same result, or the same error class and
message). Each case also pins what that common behaviour is, so both being wrong the same way fails too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from support import connection_json

from opsman.exceptions import OpsManagerApiError, OpsManagerCredentialsError, UaaUnavailableError
from opsman.hooks import OpsManagerAsyncHook, OpsManagerHook
from opsman.models import ApplyChangesOptions

TOKEN = ("POST", "/uaa/oauth/token")
LIST = ("GET", "/api/v0/installations")


def uaa_burst(status: int, count: int) -> dict[str, Any]:
    return {"status_burst": {"status": status, "count": count, "methods": ["POST"], "path_prefix": "/uaa/"}}


def list_installations(sim, which: str, faults: dict[str, Any]) -> tuple[object, list[tuple[str, str, int]]]:
    """What ``list_installations`` on a new hook ends with (ids, or the error), and the calls it sent."""
    sim.faults(**faults)
    sim.clear_journal()
    try:
        if which == "sync":
            outcome: object = [i.id for i in OpsManagerHook().list_installations()]
        else:
            outcome = [i.id for i in asyncio.run(OpsManagerAsyncHook().list_installations())]
    except Exception as err:
        outcome = err
    return outcome, [(e["method"], e["path"], e["status"]) for e in sim.journal()]


def in_both_hooks(sim, faults: dict[str, Any]) -> tuple[object, list[tuple[str, str, int]]]:
    """The common outcome and calls of both hooks; fails when they differ."""
    sync_outcome, sync_calls = list_installations(sim, "sync", faults)
    async_outcome, async_calls = list_installations(sim, "async", faults)
    assert sync_calls == async_calls, "the hooks sent different calls"
    if isinstance(sync_outcome, Exception) or isinstance(async_outcome, Exception):
        assert (type(sync_outcome), str(sync_outcome)) == (type(async_outcome), str(async_outcome))
    else:
        assert sync_outcome == async_outcome
    return sync_outcome, sync_calls


@pytest.fixture
def installed(sim, monkeypatch) -> list[int]:
    """One finished installation to list; retries without waiting, at most three attempts."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(sim, read_retries=3, retry_backoff_seconds=0)
    )
    OpsManagerHook().apply_changes(ApplyChangesOptions())
    sim.finish_installation()
    return [i.id for i in OpsManagerHook().list_installations()]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_uaa_5xx_is_transient_and_retried_by_both(sim, installed, status):
    outcome, calls = in_both_hooks(sim, uaa_burst(status, count=2))
    assert outcome == installed
    assert calls == [(*TOKEN, status), (*TOKEN, status), (*TOKEN, 200), (*LIST, 200)]


def test_uaa_down_past_the_retries_is_transient_in_both_and_keeps_the_task_retries(sim, installed):
    error, calls = in_both_hooks(sim, uaa_burst(503, count=10))
    assert isinstance(error, UaaUnavailableError) and not isinstance(error, AirflowFailException)
    assert "get UAA token" in str(error) and "HTTP 503" in str(error)
    assert calls == [(*TOKEN, 503)] * 3, "no call reached Ops Manager without a token"


@pytest.mark.parametrize("status", [400, 401])
def test_a_uaa_400_or_401_fails_both_at_once(sim, installed, status):
    error, calls = in_both_hooks(sim, uaa_burst(status, count=10))
    assert isinstance(error, OpsManagerCredentialsError) and isinstance(error, AirflowFailException)
    assert calls == [(*TOKEN, status)], "a refused credential is not sent again"


def test_a_dropped_uaa_connection_is_retried_by_both(sim, installed):
    drop = {"drop_next": {"count": 1, "methods": ["POST"], "path_prefix": "/uaa/", "when": "before"}}
    outcome, calls = in_both_hooks(sim, drop)
    assert outcome == installed
    assert calls[-2:] == [(*TOKEN, 200), (*LIST, 200)]
    assert [c for c in calls[:-2] if c[:2] != TOKEN] == []


def test_a_401_after_a_new_token_is_reported_by_both(sim, installed):
    # Ops Manager refuses every token: the first 401 costs one new token, the second is the error.
    burst = {"status": 401, "count": 10, "methods": ["GET"], "path_prefix": "/api/v0/installations"}
    error, calls = in_both_hooks(sim, {"status_burst": burst})
    assert isinstance(error, OpsManagerApiError) and error.status == 401
    assert "freshly issued token" in str(error)
    assert calls == [(*TOKEN, 200), (*LIST, 401), (*TOKEN, 200), (*LIST, 401)]


def test_a_write_is_sent_once_after_uaa_recovers(sim, installed):
    """The token comes before the write: UAA failing is not an unknown outcome, so the write waits for it."""
    sim.faults(**uaa_burst(503, count=1))
    sim.clear_journal()
    OpsManagerHook().apply_changes(ApplyChangesOptions())
    assert [(e["method"], e["path"], e["status"]) for e in sim.journal()] == [
        (*TOKEN, 503),
        (*TOKEN, 200),
        ("POST", "/api/v0/installations", 200),
    ]
