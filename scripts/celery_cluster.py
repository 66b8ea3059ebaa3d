"""The same DAGs on the CeleryExecutor: PostgreSQL + Redis (Debian's packages) + two Celery workers.

    .venv/bin/python scripts/celery_cluster.py up [--workers 2] [--foundations 3]
    .venv/bin/python scripts/celery_cluster.py down

Everything is on 127.0.0.1 and is this script's own: a private PostgreSQL cluster (``initdb`` into a
fresh directory, its own port, password auth), a private ``redis-server`` with a password and no
persistence, the api-server, scheduler, dag-processor and triggerer, and ``--workers`` Celery
workers (``worker1@%h``, ``worker2@%h``, concurrency 2). Each foundation is a bundled Ops Manager
simulator with a connection ``opsman_foundation_<n>`` (``opsman_default`` is the first).

As airflow-distributed.md prescribes: celery is pinned below 5.7 (pyproject's dev extra); the Fernet
key, JWT secret and API secret key are generated once and given to every component; the
Execution API URL is explicit; log servers are skipped (every component shares ``<home>/logs``).
The Debian packages come from ``./dev system-deps``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import airflow_stack as stack

DEFAULT_HOME = stack.REPO / ".run" / "celery-airflow"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
CORE = ["api-server", "scheduler", "dag-processor", "triggerer"]


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(home: Path, password: str) -> dict:
    pgdata = Path(tempfile.mkdtemp(prefix="opsman-celery-pg-"))  # outside home: postgres must reach it
    port = stack.free_port()
    pwfile = pgdata.with_suffix(".pw")
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        for path in (pgdata, pwfile):
            os.chown(path, pg.pw_uid, pg.pw_gid)
    log = pgdata / "postgres.log"  # copied into <home>/logs when stopped (postgres cannot write into a 0700 home)
    try:
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(pgdata / "data"), "-U", "airflow",
                                     "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"]),
                       check=True, stdout=subprocess.DEVNULL)
        pwfile.unlink()
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pgdata / "data"), "-l", str(log), "-w", "start",
                                     "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {pgdata}"]),
                       check=True, stdout=subprocess.DEVNULL)
        env = dict(os.environ, PGPASSWORD=password)
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "airflow", "airflow"],
                       check=True, env=env)
    except Exception:
        stop_postgres({"pgdata": str(pgdata)})
        raise
    pid = int((pgdata / "data" / "postmaster.pid").read_text().split()[0])
    return {"pgdata": str(pgdata), "port": port, "pid": pid, "home_logs": str(home / "logs")}


def stop_postgres(info: dict) -> None:
    data = Path(info["pgdata"]) / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = Path(info["pgdata"]) / "postgres.log"
    if log.exists() and info.get("home_logs"):
        shutil.copy(log, Path(info["home_logs"]) / "postgres.log")
    shutil.rmtree(info["pgdata"], ignore_errors=True)


def wait_workers(home: Path, names: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [n for n in names if " ready." not in (home / "logs" / f"{n}.log").read_text(errors="replace")]
        if not pending:
            return
        dead = [n for n in pending if not stack.alive(stack.recorded(home)[n])]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited; see {home / 'logs'}")
        time.sleep(1)
    raise RuntimeError(f"Celery workers not ready after {timeout} s: {pending}")


def up(home: Path, port: int, workers: int, foundations: int, apply_seconds: float) -> int:
    if any(stack.alive(p) for p in stack.recorded(home).values()):
        print(f"Already running from {home}; stop it first (down)", file=sys.stderr)
        return 1
    for tool in ("redis-server", str(PG_BIN / "initdb")):
        if not shutil.which(tool):
            print(f"{tool} is missing: run ./dev system-deps", file=sys.stderr)
            return 1
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / "logs").mkdir()
    started = time.monotonic()
    values = stack.load_or_create_secrets(home)
    values.update({"pg_password": stack.secrets.token_urlsafe(16), "redis_password": stack.secrets.token_urlsafe(16)})
    stack.write_passwords_file(home, values["admin_password"])
    info: dict = {"home": str(home), "url": f"http://127.0.0.1:{port}", "username": "admin",
                  "password": values["admin_password"], "workers": [], "foundations": {}}
    state = home / "celery-cluster.json"
    try:
        info["postgres"] = start_postgres(home, values["pg_password"])
        state.write_text(json.dumps(info, indent=2))
        redis_port = stack.free_port()
        stack.start(home, "redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                                    "--appendonly", "no", "--requirepass", values["redis_password"], "--dir", str(home)],
                    dict(os.environ))
        db = f"airflow:{values['pg_password']}@127.0.0.1:{info['postgres']['port']}/airflow"
        env = stack.base_env(home, port, values)
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:{values['redis_password']}@127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        })
        for n in range(1, foundations + 1):
            password = stack.secrets.token_urlsafe(16)
            sim_home = home / f"foundation-{n}"
            sim_home.mkdir()
            sim = stack.start_simulator(sim_home, password, apply_seconds)
            (sim_home / "pids" / "simulator.pid").rename(home / "pids" / f"simulator-{n}.pid")
            conn = stack.simulator_connection(sim, password)
            env[f"AIRFLOW_CONN_OPSMAN_FOUNDATION_{n}"] = conn
            if n == 1:
                env["AIRFLOW_CONN_OPSMAN_DEFAULT"] = conn
            info["foundations"][f"opsman_foundation_{n}"] = {"url": sim["url"], "ca_path": sim["ca_path"]}
        stack.prepare_database(home, env)
        stack.start_components(home, port, env)
        for n in range(1, workers + 1):
            name = f"worker{n}"
            stack.start(home, name, [stack.venv_bin("airflow"), "celery", "worker", "--concurrency", "2", "--skip-serve-logs",
                                     "--celery-hostname", f"{name}@%h"], env)
            info["workers"].append(name)
        api = stack.Api(info["url"], "admin", values["admin_password"])
        stack.wait_ready(api, home, CORE + info["workers"])
        wait_workers(home, info["workers"])
    except Exception as err:
        print(f"Celery cluster did not come up: {err}", file=sys.stderr)
        state.write_text(json.dumps(info, indent=2))
        down(home)
        return 1
    info["pids"] = stack.recorded(home)
    info["ready_seconds"] = round(time.monotonic() - started, 1)
    state.write_text(json.dumps(info, indent=2))
    print(f"Airflow on Celery {info['url']}  (ready in {info['ready_seconds']} s; login admin / {values['admin_password']})")
    print(f"  workers   {', '.join(info['workers'])} (concurrency 2); PostgreSQL :{info['postgres']['port']}, Redis :{redis_port}")
    for conn_id, f in info["foundations"].items():
        print(f"  {conn_id} -> Ops Manager simulator {f['url']}")
    print(f"  stop with: {Path(sys.executable).name} scripts/celery_cluster.py down --home {home}")
    return 0


def down(home: Path) -> int:
    order = ["scheduler", *[n for n in stack.recorded(home) if n.startswith("worker")], "triggerer", "dag-processor",
             "api-server", "redis"]
    stopped = stack.stop(home, order)
    state = home / "celery-cluster.json"
    if state.exists():
        info = json.loads(state.read_text())
        if info.get("postgres"):
            stop_postgres(info["postgres"])
            stopped.append("postgres")
    print(f"Stopped {', '.join(stopped) or 'nothing'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Airflow on PostgreSQL + Redis + CeleryExecutor, on 127.0.0.1")
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--port", type=int, default=28090, help="api-server port (default 28090)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--foundations", type=int, default=2, help="simulated Ops Manager foundations")
    parser.add_argument("--apply-seconds", type=float, default=2.0)
    args = parser.parse_args()
    home = args.home.resolve()
    if args.command == "up":
        return up(home, args.port, args.workers, args.foundations, args.apply_seconds)
    return down(home)


if __name__ == "__main__":
    sys.exit(main())
