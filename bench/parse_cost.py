"""Parse cost of the DAG folder: a trivial one-task DAG file vs dags/ with no fleet file, 1 and 100 foundations.

Each measurement is a fresh Python process with Airflow already imported (as in the DAG processor,
which imports Airflow once and parses files in child processes); timed are (a) ``DagBag`` over the
folder: importing the DAG file, our plugins and the fleet file, building the DAGs; and (b) (a) plus
serializing every DAG, as the DAG processor does before writing them to the database. The configurations
run interleaved, round after round, so machine noise hits them alike; the table shows medians.

    .venv/bin/python bench/parse_cost.py [--rounds 7]

Nothing here talks to Ops Manager or needs a database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

TRIVIAL_DAG = '''
from airflow.sdk import DAG, task

with DAG(dag_id="trivial", schedule=None):
    @task
    def hello():
        return 1

    hello()
'''

CHILD = r'''
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
t1 = time.perf_counter()
for dag in bag.dags.values():
    DagSerialization.to_dict(dag)
t2 = time.perf_counter()
print(json.dumps({"parse": t1 - t0, "serialize": t2 - t1, "dags": len(bag.dags),
                  "tasks": sum(len(d.tasks) for d in bag.dags.values()), "errors": len(bag.import_errors)}))
'''


def fleet_file(directory: Path, count: int) -> Path:
    path = directory / f"fleet-{count}.yaml"
    path.write_text(yaml.safe_dump({"foundations": [
        {"name": f"f{n:03d}", "conn_id": f"opsman_f{n:03d}", "schedule": "0 6 * * 1-4"} for n in range(count)
    ]}))
    return path


def measure(folder: Path, fleet: Path | None, home: Path) -> dict:
    env = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(folder), AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
               PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), env_path] if (env_path := os.environ.get("PYTHONPATH")) else [str(REPO / "plugins")]))
    env.pop("OPSMAN_FLEET_FILE", None)
    if fleet is not None:
        env["OPSMAN_FLEET_FILE"] = str(fleet)
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parse-cost-") as tmp:
        tmp = Path(tmp)
        (tmp / "trivial").mkdir()
        (tmp / "trivial" / "trivial.py").write_text(TRIVIAL_DAG)
        (tmp / "home").mkdir()
        configs = {
            "trivial one-task DAG file": (tmp / "trivial", None),
            "dags/, no fleet file": (REPO / "dags", None),
            "dags/, 1 foundation": (REPO / "dags", fleet_file(tmp, 1)),
            "dags/, 100 foundations": (REPO / "dags", fleet_file(tmp, 100)),
        }
        results: dict[str, list[dict]] = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, (folder, fleet) in configs.items():
                results[name].append(measure(folder, fleet, tmp / "home"))
    base = statistics.median(r["parse"] for r in results["trivial one-task DAG file"])
    base_total = statistics.median(r["parse"] + r["serialize"] for r in results["trivial one-task DAG file"])
    print(f"median of {args.rounds} rounds, each a fresh process with Airflow imported (python {sys.version.split()[0]})")
    header = f"{'configuration':<28} {'DAGs':>5} {'tasks':>6} {'parse s':>8} {'x trivial':>9} {'+serialize s':>12} {'x trivial':>9}"
    print(header)
    print("-" * len(header))
    for name, rows in results.items():
        parse = statistics.median(r["parse"] for r in rows)
        total = statistics.median(r["parse"] + r["serialize"] for r in rows)
        assert all(r["errors"] == 0 for r in rows), f"{name}: import errors"
        print(f"{name:<28} {rows[0]['dags']:>5} {rows[0]['tasks']:>6} {parse:>8.3f} {parse / base:>9.1f} {total:>12.3f} {total / base_total:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
