"""The simulated clock: tests move time forward instead of waiting for it."""

from __future__ import annotations

import datetime as dt

import pytest
import requests


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_finish_installation_ends_a_long_apply_changes_at_once(api):
    api.sim.faults(apply_seconds=600)  # shorter than the 1-hour token: time really passes
    iid = api.apply()
    assert api.get(f"/api/v0/installations/{iid}").json() == {"status": "running"}
    assert api.sim.finish_installation() == iid
    assert api.get(f"/api/v0/installations/{iid}").json() == {"status": "succeeded"}
    done = api.get("/api/v0/installations").json()["installations"][0]
    # It ran its full simulated 10 minutes: the log and the timestamps agree with the clock, not the wall.
    assert _epoch(done["finished_at"]) - _epoch(done["started_at"]) == pytest.approx(600, abs=0.01)
    assert api.get(f"/api/v0/installations/{iid}/logs").json()["logs"].endswith("Exited Successfully\n")
    assert api.sim.finish_installation() is None  # nothing runs any more: nothing to do


def test_finish_installation_keeps_a_planned_failure(api):
    api.sim.faults(apply_seconds=600, fail_next_installs=1)
    iid = api.apply()
    api.sim.finish_installation()
    assert api.get(f"/api/v0/installations/{iid}").json() == {"status": "failed"}


def test_token_expires_exactly_at_its_ttl(api):
    api.sim.faults(token_ttl=300)
    token = api.token(refresh=True)
    api.sim.clock(advance_seconds=299)
    assert api.get("/api/v0/certificate_authorities", token=token).status_code == 200
    api.sim.clock(advance_seconds=1)
    assert api.get("/api/v0/certificate_authorities", token=token).status_code == 401
    assert api.get("/api/v0/certificate_authorities", token=api.token(refresh=True)).status_code == 200


def test_setting_now_moves_certificates_into_an_expiry_window(api):
    leaves = api.sim.state()["leaves"]
    soonest = min(_epoch(leaf["valid_until"]) for leaf in leaves if not leaf["is_ca"])
    window = "2w"

    def expiring() -> list[str]:
        # A fresh token each time: moving the clock by years expires the previous one, as it should.
        r = api.get(f"/api/v0/deployed/certificates?expires_within={window}", token=api.token(refresh=True))
        assert r.status_code == 200, r.text
        return [c["variable_path"] for c in r.json()["certificates"]]

    assert expiring() == []
    target = soonest - 14 * 86400 - 60  # one minute before the soonest leaf enters the 2-week window
    api.sim.clock(now=dt.datetime.fromtimestamp(target, dt.UTC).isoformat().replace("+00:00", "Z"))
    assert expiring() == []
    api.sim.clock(advance_seconds=60)
    assert len(expiring()) >= 1
    assert _epoch(api.sim.state()["now"]) == pytest.approx(target + 60, abs=1.0)


def test_the_clock_only_moves_forward_and_reset_returns_to_the_wall_clock(api):
    start = _epoch(api.sim.clock()["now"])
    r = requests.post(
        api.sim.url + "/_simulator/clock",
        json={"now": "2001-01-01T00:00:00Z"},
        verify=api.sim.ca_path,
        timeout=10,
    )
    assert r.status_code == 400 and "only moves forward" in r.json()["error"]
    for bad in (
        {"advance_seconds": -1},
        {"advance_seconds": "1"},
        {"tomorrow": True},
        {},
        {"now": "2040-01-01T00:00:00"},
        {"finish_installation": 1},
    ):
        r = requests.post(api.sim.url + "/_simulator/clock", json=bad, verify=api.sim.ca_path, timeout=10)
        assert r.status_code == 400, bad
    moved = api.sim.clock(advance_seconds=86400 * 30)
    assert _epoch(moved["now"]) - start >= 86400 * 30
    api.sim.reset()
    assert api.sim.clock()["offset_seconds"] == 0.0
    assert abs(_epoch(api.sim.clock()["now"]) - dt.datetime.now(dt.UTC).timestamp()) < 60
