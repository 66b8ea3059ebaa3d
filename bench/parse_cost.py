"""Parse cost of the DAG folder: a trivial one-task DAG file vs dags/ with no fleet file, 1 and 100 foundations.

Three more rows show Airflow's own floor for the 100-foundation shape: 100 DAGs of 21 chained
``EmptyOperator`` tasks, without Params, with the 17 Params a fleet DAG's form had before it was cut
to the short form, and with the short form's 4 Params, each built the ordinary way (``DAG(params=...)``:
Airflow deep-copies a DAG's Params into every operator, once per ``__init__`` in its class chain, and
validates every task's copy when it serializes). Our DAGs attach their Params once the tasks exist,
so their tasks carry none. The *x floor* columns compare with the floor without Params.

Each measurement is a fresh Python process with Airflow already imported (as in the DAG processor,
which imports Airflow once and parses files in child processes); timed are (a) ``DagBag`` over the
folder: importing the DAG file, our plugins and the fleet file, building the DAGs; and (b) (a) plus
serializing every DAG, as the DAG processor does before writing them to the database. The configurations
run interleaved, round after round, so machine noise hits them alike; the tables show medians, of
CPU time (what parsing costs a core; barely affected by other processes on a shared machine) and of
wall-clock time.

    .venv/bin/python bench/parse_cost.py [--rounds 7] [--only SUBSTRING ...]

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
TRIVIAL = "trivial one-task DAG file"
FLOOR = "floor: 100x21 EmptyOperator"

TRIVIAL_DAG = '''
from airflow.sdk import DAG, task

with DAG(dag_id="trivial", schedule=None):
    @task
    def hello():
        return 1

    hello()
'''

SHAPE_ONLY_DAGS = '''
import json
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

params = {{name: Param(p["value"], p["description"], schema=p["schema"]) for name, p in json.loads({params!r}).items()}}
for n in range(100):
    with DAG(dag_id=f"shape_{{n:03d}}", schedule=None, params=params) as dag:
        previous = None
        for i in range(21):
            task = EmptyOperator(task_id=f"t{{i:02d}}")
            if previous is not None:
                previous >> task
            previous = task
    globals()[dag.dag_id] = dag
'''

# Params as JSON (value, description, schema), read in a child with the DAG file importable: the fleet
# DAG's form before the short form (the full form plus only_if_due, 17 Params naming the draft-07
# meta-schema, as they did), and the short form.
DUMP_PARAMS = r'''
import json, sys
sys.path[:0] = sys.argv[1:3]
from opsman.fleet import parse_fleet
from opsman_ca_rotation import rotation_params
foundation = parse_fleet({"foundations": [{"name": "f000", "conn_id": "opsman_f000"}]}).foundations[0]
short = rotation_params(foundation)
old = {**rotation_params(), "only_if_due": short["only_if_due"]}
draft07 = {"$schema": "http://json-schema.org/draft-07/schema#"}
dump = lambda params, extra: {k: {"value": p.value, "description": p.description, "schema": {**p.schema, **extra}}
                              for k, p in params.items()}
print(json.dumps({"old": dump(old, draft07), "short": dump(short, {})}))
'''

CHILD = r'''
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
t0, c0 = time.perf_counter(), time.process_time()
bag = DagBag(dag_folder=sys.argv[1])
t1, c1 = time.perf_counter(), time.process_time()
for dag in bag.dags.values():
    DagSerialization.to_dict(dag)
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"parse": t1 - t0, "serialize": t2 - t1, "cpu_parse": c1 - c0, "cpu_serialize": c2 - c1, "dags": len(bag.dags),
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
    parser.add_argument("--only", nargs="*", default=[], help="measure only the configurations containing one of these "
                        "(the trivial file and the floor without Params always run: the ratios need them)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parse-cost-") as tmp:
        tmp = Path(tmp)
        (tmp / "trivial").mkdir()
        (tmp / "trivial" / "trivial.py").write_text(TRIVIAL_DAG)
        (tmp / "home").mkdir()
        env = dict(os.environ, AIRFLOW_HOME=str(tmp / "home"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
        env.pop("OPSMAN_FLEET_FILE", None)
        ours = json.loads(subprocess.run([sys.executable, "-c", DUMP_PARAMS, str(REPO / "dags"), str(REPO / "plugins")],
                                         env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        for kind, params in (("shape", {}), ("shape_old", ours["old"]), ("shape_short", ours["short"])):
            (tmp / kind).mkdir()
            (tmp / kind / f"{kind}.py").write_text(SHAPE_ONLY_DAGS.format(params=json.dumps(params)))
        configs = {
            TRIVIAL: (tmp / "trivial", None),
            "dags/, no fleet file": (REPO / "dags", None),
            "dags/, 1 foundation": (REPO / "dags", fleet_file(tmp, 1)),
            "dags/, 100 foundations": (REPO / "dags", fleet_file(tmp, 100)),
            FLOOR: (tmp / "shape", None),
            f"floor, with the old {len(ours['old'])} Params": (tmp / "shape_old", None),
            f"floor, with the short {len(ours['short'])} Params": (tmp / "shape_short", None),
        }
        configs = {name: c for name, c in configs.items()
                   if name in (TRIVIAL, FLOOR) or not args.only or any(o in name for o in args.only)}
        results: dict[str, list[dict]] = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, (folder, fleet) in configs.items():
                results[name].append(measure(folder, fleet, tmp / "home"))
    for name, rows in results.items():
        assert all(r["errors"] == 0 for r in rows), f"{name}: import errors"
    print(f"median of {args.rounds} rounds, each a fresh process with Airflow imported (python {sys.version.split()[0]})")
    # Wall clock is what the DAG processor waits; CPU time is what it costs a core, and on a shared machine
    # it hardly moves with other people's load, so the ratios are read from it.
    for clock, prefix in (("CPU", "cpu_"), ("wall", "")):
        def medians(name: str, prefix: str = prefix) -> tuple[float, float]:
            rows = results[name]
            return (statistics.median(r[f"{prefix}parse"] for r in rows),
                    statistics.median(r[f"{prefix}parse"] + r[f"{prefix}serialize"] for r in rows))

        base, base_total = medians(TRIVIAL)
        floor, floor_total = medians(FLOOR)
        header = (f"{clock + ' seconds':<32} {'DAGs':>5} {'tasks':>6} {'parse s':>8} {'x trivial':>9} {'x floor':>8} "
                  f"{'+serialize s':>12} {'x trivial':>9} {'x floor':>8}")
        print()
        print(header)
        print("-" * len(header))
        for name, rows in results.items():
            parse, total = medians(name)
            print(f"{name:<32} {rows[0]['dags']:>5} {rows[0]['tasks']:>6} {parse:>8.3f} {parse / base:>9.1f} {parse / floor:>8.2f} "
                  f"{total:>12.3f} {total / base_total:>9.1f} {total / floor_total:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
