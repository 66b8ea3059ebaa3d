"""Start/stop the simulator as a child process (for tests and scripts).  Pure stdlib + requests.

with SimulatorProcess(tmp_path / "sim", apply_seconds=1.0, password="pw") as sim:
    requests.get(sim.url + "/api/v0/info", verify=sim.ca_path)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import requests

INCLUDE_DIR = str(Path(__file__).resolve().parent.parent)


class SimulatorError(RuntimeError):
    pass


class SimulatorProcess:
    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        apply_seconds: float = 1.0,
        token_ttl: float = 3600,
        username: str = "admin",
        password: str = "admin-password",
        client_id: str | None = None,
        client_secret: str | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        start_timeout: float = 20.0,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.apply_seconds = apply_seconds
        self.token_ttl = token_ttl
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.url: str | None = None
        self.ca_path: str | None = None
        self.pid: int | None = None
        self.ready_line: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._log_file: Any = None

    # ------------------------------------------------------------------------------------------
    def command(self, port: int) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "opsman_simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--state-dir",
            str(self.state_dir),
            "--apply-seconds",
            str(self.apply_seconds),
            "--token-ttl",
            str(self.token_ttl),
            # "--flag=value": a generated secret may start with "-", which argparse would take for a flag.
            f"--username={self.username}",
            f"--password={self.password}",
        ]
        if self.client_id is not None:
            cmd += [f"--client-id={self.client_id}", f"--client-secret={self.client_secret or ''}"]
        return cmd + list(self.extra_args)

    def start(self) -> SimulatorProcess:
        if self._proc is not None and self._proc.poll() is None:
            raise SimulatorError("simulator already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([INCLUDE_DIR] + [p for p in [env.get("PYTHONPATH")] if p])
        env["PYTHONUNBUFFERED"] = "1"
        self._log_file = open(self.state_dir / "simulator.log", "ab")
        port = self.port or 0
        self._proc = subprocess.Popen(
            self.command(port),
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        line_box: list[str] = []
        got = threading.Event()
        proc = self._proc

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:  # keeps draining stdout for the life of the process
                if not got.is_set():
                    line_box.append(line)
                    if line.startswith("opsman-simulator ready "):
                        got.set()
            got.set()

        threading.Thread(target=reader, name="opsman-sim-stdout", daemon=True).start()
        if (
            not got.wait(self.start_timeout)
            or not line_box
            or not line_box[-1].startswith("opsman-simulator ready")
        ):
            self._kill()
            raise SimulatorError(
                f"simulator did not become ready within {self.start_timeout}s; see {self.state_dir / 'simulator.log'}"
            )
        line = line_box[-1].strip()
        self.ready_line = line
        parts = line.split()
        self.url = parts[2]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.ca_path = parts[3].split("=", 1)[1]
        self.pid = int(parts[4].split("=", 1)[1])
        return self

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL (simulate a crash)."""
        if self._proc is not None:
            self._kill()
            self._proc = None

    def restart(self) -> SimulatorProcess:
        """Stop and start again on the same port and state dir."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------
    # helpers
    def _req(self, method: str, path: str, **kwargs: Any) -> Any:
        r = requests.request(method, f"{self.url}{path}", verify=self.ca_path, timeout=30, **kwargs)
        if r.status_code != 200:
            raise SimulatorError(f"{method} {path} -> {r.status_code}: {r.text}")
        return r.json()

    def journal(self) -> list[dict[str, Any]]:
        return self._req("GET", "/_simulator/journal")["entries"]

    def clear_journal(self) -> None:
        self._req("DELETE", "/_simulator/journal")

    def state(self) -> dict[str, Any]:
        return self._req("GET", "/_simulator/state")

    def faults(self, **kwargs: Any) -> dict[str, Any]:
        """POST the given faults (if any) and return what is armed."""
        if kwargs:
            return self._req("POST", "/_simulator/faults", json=kwargs)
        return self._req("GET", "/_simulator/faults")

    def clock(self, **body: Any) -> dict[str, Any]:
        """Move the simulated clock (one of ``advance_seconds=N``, ``now="2030-01-01T00:00:00Z"``,
        ``finish_installation=True``), or with no argument read it."""
        if body:
            return self._req("POST", "/_simulator/clock", json=body)
        return self._req("GET", "/_simulator/clock")

    def finish_installation(self) -> int | None:
        """End the running installation now (as its planned outcome); its id, or None when none runs."""
        return self.clock(finish_installation=True)["finished_installation"]

    def reset(self) -> dict[str, Any]:
        return self._req("POST", "/_simulator/reset")

    def token(self) -> str:
        """Convenience: a password-grant access token (as om does it)."""
        r = requests.post(
            f"{self.url}/uaa/oauth/token",
            auth=("opsman", ""),
            data={
                "grant_type": "password",
                "username": self.username,
                "password": self.password,
                "client_id": "opsman",
                "token_format": "jwt",
            },
            verify=self.ca_path,
            timeout=30,
        )
        if r.status_code != 200:
            raise SimulatorError(f"token -> {r.status_code}: {r.text}")
        return r.json()["access_token"]
