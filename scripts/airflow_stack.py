"""Start, watch and stop a set of Airflow processes on 127.0.0.1, each by its recorded PID.

Shared by ``local_airflow.py`` (SQLite + LocalExecutor) and ``celery_cluster.py`` (PostgreSQL + Redis +
CeleryExecutor). Stdlib and psutil only (both in the venv without importing Airflow), so it runs
before and outside the venv's Airflow imports.

Every component is started with ``setsid`` semantics (its own session and process group, so its
children can be stopped with it), its PID is written to ``<home>/pids/<name>.pid`` and its output
goes to ``<home>/logs/<name>.log``. Stopping sends SIGTERM to each recorded PID, waits, and only
then SIGKILLs that PID's own process group: nothing is ever stopped by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil  # in the venv (Airflow depends on it; pyproject's dev extra declares it)

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "opsman_ca_rotation"


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def load_or_create_secrets(home: Path) -> dict[str, str]:
    """Fernet key, JWT secret, API secret key and the admin password: made once per home, mode 0600.

    Every component gets the same values through its environment, instead of each one writing random
    ones into its own airflow.cfg: a task whose JWT was signed with another secret fails with
    ``Invalid auth token``.
    """
    path = home / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    from cryptography.fernet import Fernet  # in the venv (Airflow depends on it)

    values = {
        "fernet_key": Fernet.generate_key().decode(),
        "jwt_secret": secrets.token_urlsafe(48),
        "api_secret_key": secrets.token_urlsafe(32),
        "admin_password": secrets.token_urlsafe(12),
        "simulator_password": secrets.token_urlsafe(16),
    }
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out)
    return values


def write_passwords_file(home: Path, password: str) -> Path:
    path = home / "simple_auth_manager_passwords.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"admin": password}, out)
    return path


def base_env(home: Path, port: int, values: dict[str, str]) -> dict[str, str]:
    """What every Airflow component needs, whatever the executor and database."""
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("AIRFLOW")]:
        del env[key]  # nothing from the caller's Airflow (e.g. a test session's AIRFLOW_HOME) leaks in
    api = f"http://127.0.0.1:{port}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            # OPSMAN_DAGS_FOLDER / OPSMAN_PLUGINS_FOLDER: run another checkout's DAGs and plugins.
            "AIRFLOW__CORE__DAGS_FOLDER": os.environ.get("OPSMAN_DAGS_FOLDER") or str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": os.environ.get("OPSMAN_PLUGINS_FOLDER") or str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": values["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": values["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": values["api_secret_key"],
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                home / "simple_auth_manager_passwords.json"
            ),
            "AIRFLOW__CORE__PARALLELISM": "4",
            # Short tasks free their slot after about 1 s instead of the default 5 s heartbeat.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


#: A cluster policy Airflow loads from ``$AIRFLOW_HOME/config/airflow_local_settings.py`` in every component.
RETRY_DELAY_POLICY = """\"\"\"Written by scripts/local_airflow.py --retry-delay-seconds: every task's retries start after
{seconds} s instead of the DAG's 30 s (still doubling), so tests see a retry without waiting for it.\"\"\"

from datetime import timedelta


def task_policy(task):
    task.retry_delay = timedelta(seconds={seconds})
"""


def write_retry_delay_policy(home: Path, seconds: float | None) -> None:
    """A task policy in ``home`` that shortens every task's retry delay to ``seconds``: what a retry does is
    the same, only sooner (the DAG file is untouched). ``None`` removes a policy written here before, so
    a later ``up`` on the same home gets the DAG's own delays back; anyone else's file is left alone."""
    path = home / "config" / "airflow_local_settings.py"
    ours = path.exists() and path.read_text().startswith(RETRY_DELAY_POLICY[:40])
    if seconds is None:
        if ours:
            path.unlink()
        return
    if path.exists() and not ours:
        raise RuntimeError(
            f"{path} exists and was not written by this script; remove it or drop --retry-delay-seconds"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RETRY_DELAY_POLICY.format(seconds=seconds))


def prepare_database(home: Path, env: dict[str, str]) -> None:
    """``airflow db migrate``, then one pool slot per foundation of the fleet file (none without one)."""
    migrate = subprocess.run(
        [venv_bin("airflow"), "db", "migrate"],
        env=env,
        cwd=str(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "logs" / "db-migrate.log").write_text(migrate.stdout)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed; see {home / 'logs' / 'db-migrate.log'}")
    # One conversation per Ops Manager: a one-slot pool per foundation.
    subprocess.run([sys.executable, str(REPO / "scripts" / "create_pools.py")], env=env, check=True)


def start(home: Path, name: str, args: list[str], env: dict[str, str]) -> int:
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "pids").mkdir(parents=True, exist_ok=True)
    with open(home / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(home),
            start_new_session=True,
        )
    (home / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def start_components(home: Path, port: int, env: dict[str, str]) -> None:
    """api-server (UI, REST and Execution API) on 127.0.0.1:``port``, scheduler, dag-processor, triggerer.

    The scheduler and triggerer skip their log servers (they would bind every interface); the
    api-server reads task logs from the shared logs folder.
    """
    airflow = venv_bin("airflow")
    start(
        home,
        "api-server",
        [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env,
    )
    start(home, "scheduler", [airflow, "scheduler", "--skip-serve-logs"], env)
    start(home, "dag-processor", [airflow, "dag-processor"], env)
    start(home, "triggerer", [airflow, "triggerer", "--skip-serve-logs"], env)


def _exited(proc: psutil.Process) -> bool:
    # A zombie has exited and only waits for its parent to reap it, and that parent need not be us
    # (a test that started a component in-process and had ``down`` stop it).
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie."""
    try:
        return not _exited(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def wait_exited(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Waits until every process has exited (reaping those that are our children); returns the rest.

    ``psutil.wait_procs`` alone waits out its whole timeout for a zombie whose parent is another
    process, so it runs in short rounds and zombies count as exited between them.
    """
    deadline = time.monotonic() + timeout
    running = list(procs)
    while True:  # at least one round, even with timeout 0: it reaps our children that have exited
        _, running = psutil.wait_procs(running, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
        running = [p for p in running if not _exited(p)]
        if not running or time.monotonic() >= deadline:
            return running


def group_members(pgid: int) -> list[psutil.Process]:
    """The processes of process group ``pgid`` (psutil has no process-group lookup of its own)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, PermissionError):
            pass
    return members


def stop_group(pid: int, timeout: float = 30.0) -> bool:
    """SIGTERM ``pid``, wait for it, then SIGKILL what is left of its own process group.

    ``pid`` is a session leader started by :func:`start`, so its group is the component's workers
    and helpers. Returns whether ``pid`` was still running.
    """
    try:
        leader: psutil.Process | None = psutil.Process(pid)
    except psutil.NoSuchProcess:
        leader = None
    was_running = leader is not None and not _exited(leader)
    if leader is not None and was_running:
        with contextlib.suppress(psutil.NoSuchProcess):
            leader.terminate()
        wait_exited([leader], timeout)
    members = group_members(pid)
    try:  # killpg, not one kill per member: a member forking meanwhile cannot leave a child behind
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    wait_exited(members, timeout)  # the leader too, if it outlived the SIGTERM
    return was_running


def recorded(home: Path) -> dict[str, int]:
    pids = {}
    for path in sorted((home / "pids").glob("*.pid")) if (home / "pids").is_dir() else []:
        try:
            pids[path.stem] = int(path.read_text().strip())
        except ValueError:
            path.unlink()
    return pids


def stop(home: Path, names: list[str] | None = None, timeout: float = 30.0) -> list[str]:
    """SIGTERM each recorded PID (in the given order), then SIGKILL what is left of its own group."""
    pids = recorded(home)
    order = [n for n in (names or []) if n in pids] + [n for n in pids if n not in (names or [])]
    stopped = []
    for name in order:
        if stop_group(pids[name], timeout):
            stopped.append(name)
        (home / "pids" / f"{name}.pid").unlink(missing_ok=True)
    return stopped


class Api:
    """A tiny client of Airflow's REST API with the simple auth manager's token."""

    def __init__(self, url: str, username: str = "admin", password: str = "") -> None:
        self.url = url.rstrip("/")
        self.username, self.password = username, password
        self._token: str | None = None

    def request(
        self, method: str, path: str, body: Any = None, auth: bool = True, timeout: float = 30
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def token(self) -> str:
        if self._token is None:
            body = self.request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = body["access_token"]
        return self._token

    def health(self) -> dict[str, Any] | None:
        try:
            return self.request("GET", "/api/v2/monitor/health", auth=False, timeout=5)
        except (urllib.error.URLError, OSError, ValueError):
            return None


def wait_ready(
    api: Api, home: Path, components: list[str], timeout: float = 180.0, dag_id: str = DAG_ID
) -> float:
    """Until health shows every component healthy and the DAG is parsed; returns the seconds waited."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        dead = [n for n, pid in recorded(home).items() if n in components and not alive(pid)]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited; see {home / 'logs'}")
        health = api.health()
        last = health
        if health and all(
            (health.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        ):
            try:
                dag = api.request("GET", f"/api/v2/dags/{dag_id}")
                if dag.get("is_paused"):
                    api.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
                return time.monotonic() - started
            except urllib.error.HTTPError as err:
                if err.code != 404:
                    raise
                last = f"DAG {dag_id} not parsed yet"
        time.sleep(1)
    raise RuntimeError(f"Airflow not ready after {timeout:.0f} s (last: {last}); see {home / 'logs'}")


def start_simulator(
    home: Path, password: str, apply_seconds: float, port: int = 0, timeout: float = 30.0
) -> dict[str, Any]:
    """The bundled Ops Manager simulator as a recorded component; returns url, ca path and pid."""
    state_dir = home / "simulator"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "include")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONUNBUFFERED"] = "1"
    ready = home / "logs" / "simulator.log"
    (home / "logs").mkdir(parents=True, exist_ok=True)
    ready.write_text("")
    pid = start(
        home,
        "simulator",
        [
            sys.executable,
            "-m",
            "opsman_simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
            "--apply-seconds",
            str(apply_seconds),
            f"--password={password}",
        ],  # "=": a generated password may start with "-"
        env,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in ready.read_text().splitlines():
            if line.startswith("opsman-simulator ready "):
                parts = line.split()
                return {"url": parts[2], "ca_path": parts[3].split("=", 1)[1], "pid": pid}
        if not alive(pid):
            break
        time.sleep(0.2)
    raise RuntimeError(f"the simulator did not start; see {ready}")


def simulator_connection(sim: dict[str, Any], password: str) -> str:
    return json.dumps(
        {
            "conn_type": "opsman",
            "host": sim["url"],
            "login": "admin",
            "password": password,
            "extra": {"ca_cert": sim["ca_path"]},
        }
    )
