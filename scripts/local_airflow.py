"""A local Airflow for this project in one command, on 127.0.0.1 only.

    ./dev airflow-up      # api-server (UI + REST), scheduler, dag-processor, triggerer; SQLite + LocalExecutor
    ./dev airflow-down    # stops all of it by the recorded PIDs

``up`` also starts the bundled Ops Manager simulator and wires the ``opsman_default`` connection to
it (as ``AIRFLOW_CONN_OPSMAN_DEFAULT`` in every component), waits until every component is healthy
and the DAG is parsed and unpaused, then prints the UI address and the login. State lives in
``.run/local-airflow`` (``--home``): SQLite DB, logs, PID files, the secrets shared by the components.

Pitfalls handled: the scheduler and triggerer run with
``--skip-serve-logs`` (their log servers would bind every interface; the api-server reads task
logs from the shared logs folder); the Execution API URL follows the chosen port; the JWT secret,
API secret key and Fernet key are set once per home for every component; parallelism is 4.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import airflow_stack as stack

DEFAULT_HOME = stack.REPO / ".run" / "local-airflow"
COMPONENTS = ["api-server", "scheduler", "dag-processor", "triggerer"]
# Stop order: no new work first, then the API the others report to, then the simulator.
STOP_ORDER = ["scheduler", "triggerer", "dag-processor", "api-server", "simulator"]


def up(
    home: Path, port: int, apply_seconds: float, fresh: bool, timeout: float, retry_delay: float | None = None
) -> int:
    if stack.recorded(home):
        running = {n: p for n, p in stack.recorded(home).items() if stack.alive(p)}
        if running:
            print(
                f"Already running from {home} ({', '.join(f'{n}={p}' for n, p in running.items())}); "
                f"stop it first with ./dev airflow-down",
                file=sys.stderr,
            )
            return 1
        stack.stop(home)  # stale PID files of a crashed run
    if fresh and home.exists():
        shutil.rmtree(home)
    if not stack.port_is_free(port):
        print(f"Port {port} on 127.0.0.1 is taken; choose another with --port", file=sys.stderr)
        return 1
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    values = stack.load_or_create_secrets(home)
    stack.write_passwords_file(home, values["admin_password"])
    stack.write_retry_delay_policy(home, retry_delay)
    env = stack.base_env(home, port, values)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home.resolve()}/airflow.db",
        }
    )
    try:
        sim = stack.start_simulator(home, values["simulator_password"], apply_seconds)
        env["AIRFLOW_CONN_OPSMAN_DEFAULT"] = stack.simulator_connection(sim, values["simulator_password"])
        stack.prepare_database(home, env)
        stack.start_components(home, port, env)
        api = stack.Api(f"http://127.0.0.1:{port}", "admin", values["admin_password"])
        stack.wait_ready(api, home, COMPONENTS, timeout=timeout)
    except Exception as err:
        print(f"Local Airflow did not come up: {err}", file=sys.stderr)
        stack.stop(home, STOP_ORDER)
        return 1
    info = {
        "url": f"http://127.0.0.1:{port}",
        "username": "admin",
        "password": values["admin_password"],
        "home": str(home),
        "simulator_url": sim["url"],
        "simulator_ca": sim["ca_path"],
        "pids": stack.recorded(home),
        "ready_seconds": round(time.monotonic() - started, 1),
    }
    (home / "local-airflow.json").write_text(json.dumps(info, indent=2))
    print(f"Airflow {info['url']}  (UI and REST API /api/v2; ready in {info['ready_seconds']} s)")
    print(f"  login     admin / {values['admin_password']}")
    print(
        f'  DAG       {stack.DAG_ID} (unpaused); trigger it from the UI with conf {{"poll_interval_seconds": 1}}'
    )
    print(f"  opsman_default -> Ops Manager simulator {sim['url']} (CA {sim['ca_path']})")
    print(f"  processes {', '.join(f'{n}={p}' for n, p in info['pids'].items())}; logs in {home / 'logs'}")
    print("  stop with ./dev airflow-down")
    return 0


def down(home: Path) -> int:
    if not stack.recorded(home):
        print(f"Nothing recorded as running in {home}")
        return 0
    stopped = stack.stop(home, STOP_ORDER)
    print(f"Stopped {', '.join(stopped) or 'nothing (already gone)'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Local Airflow (SQLite + LocalExecutor) with the Ops Manager simulator"
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--home", type=Path, default=DEFAULT_HOME, help="AIRFLOW_HOME and state (default .run/local-airflow)"
    )
    parser.add_argument(
        "--port", type=int, default=28080, help="api-server port on 127.0.0.1 (default 28080)"
    )
    parser.add_argument(
        "--apply-seconds", type=float, default=3.0, help="length of each simulated Apply Changes"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start from an empty home (new DB, new simulator)"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    parser.add_argument(
        "--retry-delay-seconds",
        type=float,
        help="every task's first retry after this many seconds instead of the DAG's 30 (a task policy; for tests)",
    )
    args = parser.parse_args()
    home = args.home.resolve()
    if args.command == "up":
        return up(home, args.port, args.apply_seconds, args.fresh, args.timeout, args.retry_delay_seconds)
    if args.command == "down":
        return down(home)
    info = home / "local-airflow.json"
    running = {n: p for n, p in stack.recorded(home).items() if stack.alive(p)}
    print(info.read_text() if info.exists() and running else "not running")
    return 0 if running else 3


if __name__ == "__main__":
    sys.exit(main())
