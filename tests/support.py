"""Constants and helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import json
import os

SIM_USER = "admin"
SIM_PASSWORD = "pw-Simul4tor-" + os.urandom(6).hex()
SIM_CLIENT_ID = "rotation-bot"
SIM_CLIENT_SECRET = "cs-" + os.urandom(8).hex()


def connection_json(sim, **extra_overrides) -> str:
    """The Airflow connection (JSON form) for the simulator, password grant, CA file verified."""
    extra = {"ca_cert": str(sim.ca_path), "read_retries": 4, "retry_backoff_seconds": 0.1}
    extra.update(extra_overrides)
    login = extra.pop("login", SIM_USER)
    password = extra.pop("password", SIM_PASSWORD)
    return json.dumps(
        {"conn_type": "opsman", "host": sim.url, "login": login, "password": password, "extra": extra}
    )


class RecordingTI:
    """Stands in for the task instance when a test calls ``operator.execute`` directly: keeps XComs."""

    def __init__(self) -> None:
        self.xcoms: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcoms[key] = value


def task_context() -> dict:
    return {"ti": RecordingTI()}


def journal_calls(sim, method=None, path=None, status=None) -> list[dict]:
    """Journal entries of API calls, filtered."""
    return [
        e
        for e in sim.journal()
        if (method is None or e["method"] == method)
        and (path is None or e["path"] == path)
        and (status is None or e["status"] == status)
    ]


def wait_for_installation(sim, hook, installation_id: int, timeout: float = 20.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = hook.get_installation_status(installation_id)
        if status.is_terminal:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"installation {installation_id} still {status} after {timeout} s")
        time.sleep(0.2)


def api_writes(sim) -> list[dict]:
    """Journal entries that could change Ops Manager (token requests excluded)."""
    return [e for e in sim.journal() if e["method"] in ("POST", "PUT", "PATCH", "DELETE") and e["path"].startswith("/api/")]
