"""Fixtures for the simulator's own tests: real processes, real HTTPS on loopback, no mocks."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests

from opsman_simulator.process import SimulatorProcess

PASSWORD = "pw-" + secrets.token_hex(8)
CLIENT_ID = "rotation-client"
CLIENT_SECRET = "cs-" + secrets.token_hex(8)


class Api:
    """A tiny Ops Manager client used only by these tests."""

    def __init__(self, sim: SimulatorProcess):
        self.sim = sim
        self.session = requests.Session()
        self.session.verify = sim.ca_path
        self._token: str | None = None

    def token(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            self._token = self.sim.token()
        return self._token

    def call(self, method: str, path: str, auth: bool = True, token: str | None = None, **kw: Any):
        headers = dict(kw.pop("headers", {}) or {})
        headers.setdefault("Content-Type", "application/json")
        if auth:
            headers["Authorization"] = f"Bearer {token or self.token()}"
        # verify= per request: Session.verify loses against REQUESTS_CA_BUNDLE from the environment.
        kw.setdefault("verify", self.sim.ca_path)
        return self.session.request(method, self.sim.url + path, headers=headers, timeout=30, **kw)

    def get(self, path: str, **kw: Any):
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any):
        return self.call("POST", path, **kw)

    def delete(self, path: str, **kw: Any):
        return self.call("DELETE", path, **kw)

    # conveniences --------------------------------------------------------------------------
    def cas(self) -> list[dict[str, Any]]:
        r = self.get("/api/v0/certificate_authorities")
        assert r.status_code == 200, r.text
        return r.json()["certificate_authorities"]

    def apply(self, body: dict[str, Any] | None = None) -> int:
        r = self.post(
            "/api/v0/installations",
            json=body
            if body is not None
            else {"ignore_warnings": "false", "force_latest_variables": False, "deploy_products": "all"},
        )
        assert r.status_code == 200, r.text
        return r.json()["install"]["id"]

    def wait_install(self, install_id: int) -> str:
        """Finish the running installation on the simulator's clock and return its final status."""
        self.sim.finish_installation()
        r = self.get(f"/api/v0/installations/{install_id}")
        assert r.status_code == 200, r.text
        assert r.json()["status"] != "running", (
            f"installation {install_id} still running after the clock moved"
        )
        return r.json()["status"]

    def apply_and_wait(self, body: dict[str, Any] | None = None) -> str:
        return self.wait_install(self.apply(body))


def start_sim(tmp_path_factory, name: str, **kw: Any) -> SimulatorProcess:
    kw.setdefault("apply_seconds", 0.6)
    kw.setdefault("password", PASSWORD)
    kw.setdefault("client_id", CLIENT_ID)
    kw.setdefault("client_secret", CLIENT_SECRET)
    return SimulatorProcess(tmp_path_factory.mktemp(name), **kw).start()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = start_sim(tmp_path_factory, "sim")
    yield s
    s.stop()


@pytest.fixture
def fresh(sim):
    """The shared module simulator, reset to its initial state."""
    sim.reset()
    return sim


@pytest.fixture
def api(fresh):
    return Api(fresh)


@pytest.fixture(scope="session")
def creds() -> dict[str, str]:
    return {"username": "admin", "password": PASSWORD, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


@pytest.fixture(scope="session")
def make_api():
    return Api


@pytest.fixture(scope="session")
def launch():
    """launch(tmp_path_factory, name, **SimulatorProcess kwargs) -> started SimulatorProcess."""
    return start_sim
