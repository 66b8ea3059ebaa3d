"""Helpers of the system and browser tests: a REST client view of the local Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import airflow_stack
import pytest

REPO = Path(__file__).resolve().parents[2]

DAG_ID = "opsman_ca_rotation"
APPLY_GROUPS = ("initial_apply_changes", "activate_new_ca", "regenerate_certificates", "delete_old_ca")
SENSORS = [f"{g}.wait_for_apply_changes" for g in APPLY_GROUPS]


def missing(reason: str) -> None:
    """Skip locally; fail under CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI cannot run this test: {reason}")
    pytest.skip(reason)


class LocalAirflow:
    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.url: str = info["url"]
        self.username: str = info["username"]
        self.password: str = info["password"]
        self.home = Path(info["home"])
        self.api = airflow_stack.Api(self.url, self.username, self.password)

    def trigger(self, conf: dict[str, Any], prefix: str = "test") -> str:
        run_id = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.api.request(
            "POST",
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            {"logical_date": None, "dag_run_id": run_id, "conf": conf},
        )
        return run_id

    def wait_for_run(self, run_id: str, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.api.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} still {state} after {timeout} s; see {self.home / 'logs'}"
                )
            time.sleep(2)

    def task_instances(self, run_id: str) -> dict[str, dict[str, Any]]:
        body = self.api.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def log_text(self, run_id: str, task_id: str, try_number: int = 1) -> str:
        body = self.api.request(
            "GET",
            f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true",
        )
        content = body.get("content")
        if isinstance(content, str):
            return content
        return "\n".join(str(e.get("event", "")) if isinstance(e, dict) else str(e) for e in content or [])

    def links(self, run_id: str, task_id: str) -> dict[str, str | None]:
        body = self.api.request(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/links"
        )
        return body.get("extra_links", body)

    def reset_simulator(self) -> None:
        """Back to one old CA and no recent rotation, so every test rotates from the same start."""
        import requests

        r = requests.post(
            f"{self.info['simulator_url']}/_simulator/reset", verify=self.info["simulator_ca"], timeout=30
        )
        r.raise_for_status()

    def xcom(self, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self.api.request(
            "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        )["value"]


WRITES = ("POST", "PUT", "PATCH", "DELETE")


class Simulator:
    """The control surface of a local Airflow's simulator: its state, journal, faults and clock."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.url, self.ca = info["simulator_url"], info["simulator_ca"]

    def get(self, what: str) -> Any:
        import requests

        r = requests.get(f"{self.url}/_simulator/{what}", verify=self.ca, timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, what: str, body: dict[str, Any]) -> Any:
        import requests

        r = requests.post(f"{self.url}/_simulator/{what}", json=body, verify=self.ca, timeout=30)
        r.raise_for_status()
        return r.json()

    def faults(self, **body: Any) -> None:
        self.post("faults", body)

    def cas(self) -> dict[str, bool]:
        return {ca["guid"]: ca["active"] for ca in self.get("state")["certificate_authorities"]}

    def writes(self, after_seq: int = -1) -> list[tuple[str, str]]:
        return [
            (e["method"], e["path"])
            for e in self.get("journal")["entries"]
            if e["seq"] > after_seq and e["method"] in WRITES and e["path"].startswith("/api/")
        ]

    def accepted(self, method: str, prefix: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.get("journal")["entries"]
            if e["method"] == method and e["path"].startswith(prefix) and e["status"] == 200
        ]

    def last_seq(self) -> int:
        return max((e["seq"] for e in self.get("journal")["entries"]), default=-1)


@contextmanager
def running_stack(
    script: str, home: Path, up_args: list[str], info_file: str, down_timeout: float = 120
) -> Iterator[LocalAirflow]:
    """``scripts/<script> up`` in ``home``, the stack as a :class:`LocalAirflow`, and ``down`` by PID whatever happens."""
    command = [sys.executable, str(REPO / "scripts" / script)]
    started = time.monotonic()
    up = subprocess.run(
        [*command, "up", "--home", str(home), *up_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    try:
        if up.returncode != 0:
            logs = "\n".join(
                f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
                for p in sorted((home / "logs").glob("*.log"))
            )
            pytest.fail(f"{script} up failed:\n{up.stdout}\n{logs}")
        info = json.loads((home / info_file).read_text())
        print(f"{script} up in {time.monotonic() - started:.1f} s")
        yield LocalAirflow(info)
    finally:
        subprocess.run([*command, "down", "--home", str(home)], timeout=down_timeout)
        left = {n: p for n, p in airflow_stack.recorded(home).items() if airflow_stack.alive(p)}
        assert not left, f"still running after down: {left}"
