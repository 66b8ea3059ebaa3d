"""Run one real CA rotation against the bundled Ops Manager simulator and print what happened.

Starts the simulator on 127.0.0.1 (fresh state, HTTPS with its own CA), points the
``opsman_default`` connection at it, runs ``airflow dags test opsman_ca_rotation``, then reads Ops
Manager's state back and prints the old and new CA and every Apply Changes with its duration.
The simulator is stopped by its PID at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / ".run"
os.environ["AIRFLOW_HOME"] = str(RUN / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from opsman_simulator.process import SimulatorProcess  # noqa: E402


def airflow(*args: str, log: Path) -> int:
    with log.open("a") as out:
        return subprocess.call([str(Path(sys.executable).with_name("airflow")), *args], stdout=out, stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apply-seconds", type=float, default=3.0, help="duration of each simulated Apply Changes")
    args = parser.parse_args()

    shutil.rmtree(RUN / "simulator", ignore_errors=True)
    RUN.mkdir(exist_ok=True)
    log = RUN / "rotate.log"
    log.write_text("")
    password = secrets.token_urlsafe(16)  # this run's simulator only; never printed
    started = time.monotonic()
    with SimulatorProcess(RUN / "simulator", apply_seconds=args.apply_seconds, password=password) as sim:
        os.environ["AIRFLOW_CONN_OPSMAN_DEFAULT"] = json.dumps(
            {"conn_type": "opsman", "host": sim.url, "login": "admin", "password": password, "extra": {"ca_cert": sim.ca_path}}
        )
        from opsman.hooks import OpsManagerHook

        hook = OpsManagerHook()
        before = hook.list_certificate_authorities()
        first_new_install = hook.list_installations()[0].id + 1
        print(f"Ops Manager simulator: {sim.url} (pid {sim.pid}, TLS verified with {sim.ca_path})")
        print(f"Before: {len(before)} CA, active {', '.join(ca.guid for ca in before if ca.active)}")
        print(f"Running `airflow dags test opsman_ca_rotation` (full log: {log.relative_to(REPO)}) ...", flush=True)
        if airflow("db", "migrate", log=log) != 0:
            print(f"airflow db migrate failed; see {log}", file=sys.stderr)
            return 1
        code = airflow("dags", "test", "opsman_ca_rotation", "--conf", json.dumps({"poll_interval_seconds": 1}), log=log)

        after = hook.list_certificate_authorities()
        installs = [i for i in hook.list_installations() if i.id >= first_new_install]
    elapsed = time.monotonic() - started

    old = {ca.guid for ca in before} - {ca.guid for ca in after}
    new = [ca for ca in after if ca.guid not in {b.guid for b in before}]
    print()
    print("Rotation summary")
    print(f"  old CA : {', '.join(sorted(old)) or '-'} (deleted)")
    for ca in new:
        print(f"  new CA : {ca.guid} (active={ca.active}, expires {ca.expires_on})")
    print("  Apply Changes:")
    for i in sorted(installs, key=lambda i: i.id):
        print(f"    installation {i.id}: {i.status.value}, {i.duration_seconds:.1f} s" if i.duration_seconds is not None
              else f"    installation {i.id}: {i.status.value}")
    print(f"  wall time: {elapsed:.1f} s; airflow dags test exit code {code}")
    rotated = code == 0 and len(after) == 1 and after[0].active and len(new) == 1 and len(old) == 1
    if not rotated:
        print(f"\nThe rotation did not complete; the last lines of {log}:", file=sys.stderr)
        print("\n".join(log.read_text().splitlines()[-40:]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
