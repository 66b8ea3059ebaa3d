"""Our wheel installed into an Airflow someone already runs: the oldest supported one.

A fresh venv gets Apache Airflow 3.1.0 and providers-http from constraints/constraints-3.1.0-py3.11.txt
(what such an installation holds), then ``pip install`` of our wheel without any constraints, as a user
would. The test proves pip changed nothing that was there (Airflow's version included) and ``pip check``
is clean, that Airflow's ProvidersManager finds the ``opsman`` connection type and imports its hook
from the installed package, and that ``airflow dags test`` rotates the simulator's CA with only
``dags/opsman_ca_rotation.py`` deployed (no plugins folder).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import check_rotation_invariants

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
OLDEST_AIRFLOW = "3.1.0"
OLDEST_CONSTRAINTS = REPO / "constraints" / f"constraints-{OLDEST_AIRFLOW}-py3.11.txt"
DISTRIBUTION = "opsman-ca-rotation"
PIP_QUIET = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        env={**os.environ, **PIP_QUIET, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"{args[:4]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def freeze(python: Path) -> dict[str, str]:
    lines = run(python, "-m", "pip", "freeze", "--all").splitlines()
    return dict(line.split("==", 1) if "==" in line else (line.split(" @ ", 1)[0], line) for line in lines)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of exactly what the wheel needs, so the build leaves nothing in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "plugins" / "opsman", src / "plugins" / "opsman", ignore=ignore)
    # The simulator sits next to the provider metadata in include/; copied so "not shipped" means something.
    for package in ("opsman_ca_rotation_provider", "opsman_simulator"):
        shutil.copytree(REPO / "include" / package, src / "include" / package, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src)
    (built,) = out.glob("opsman_ca_rotation-*.whl")
    return built


@pytest.fixture(scope="module")
def existing_airflow(tmp_path_factory) -> Path:
    """A venv that already runs the oldest supported Airflow, before we arrive."""
    venv = tmp_path_factory.mktemp("existing-airflow") / "venv"
    run(sys.executable, "-m", "venv", venv)  # with pip: what the user installs us with below
    python = venv / "bin" / "python"
    # Airflow goes in with uv (about 20x faster than pip here); how it got there does not matter, only
    # what the venv holds. Our wheel goes in with pip, as a user installs it.
    from uv import find_uv_bin

    run(
        find_uv_bin(),
        "pip",
        "install",
        "--python",
        python,
        "-q",
        "-c",
        OLDEST_CONSTRAINTS,
        f"apache-airflow=={OLDEST_AIRFLOW}",
        "apache-airflow-providers-http",
    )
    return python


@pytest.fixture(scope="module")
def installed(existing_airflow: Path, wheel: Path) -> tuple[Path, dict[str, str], dict[str, str]]:
    before = freeze(existing_airflow)
    run(existing_airflow, "-m", "pip", "install", "-q", wheel)  # no constraints: what a user types
    return existing_airflow, before, freeze(existing_airflow)


def test_the_wheel_ships_the_package_and_metadata_but_no_simulator(wheel: Path):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"opsman", "opsman_ca_rotation_provider"}
    assert "opsman/hooks.py" in names and "opsman/compat.py" in names
    assert not [n for n in names if "simulator" in n]


def test_installing_changes_nothing_airflow_had(installed):
    python, before, after = installed
    assert after["apache-airflow"] == before["apache-airflow"] == OLDEST_AIRFLOW
    changed = {name: (before[name], after.get(name)) for name in before if after.get(name) != before[name]}
    assert changed == {}, f"pip changed what the existing Airflow had: {changed}"
    assert set(after) - set(before) == {DISTRIBUTION}
    assert "No broken requirements found." in run(python, "-m", "pip", "check")


def test_nothing_in_production_imports_the_simulator(installed):
    python, _, _ = installed
    out = run(python, "-c", "import importlib.util as u; print(u.find_spec('opsman_simulator') is None)")
    assert out.strip() == "True"


def test_providers_manager_finds_the_connection_type_and_its_hook(installed, tmp_path):
    python, _, _ = installed
    probe = (
        "import json\n"
        "from airflow.providers_manager import ProvidersManager\n"
        "pm = ProvidersManager()\n"
        "hook = pm.hooks['opsman']\n"  # imports the hook class named by hook-class-name
        "print(json.dumps({'provider': pm.providers['opsman-ca-rotation'].version,\n"
        "                  'hook_class': hook.hook_class_name, 'hook_name': hook.hook_name,\n"
        "                  'module': __import__('opsman.hooks').__file__}))\n"
    )
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    found = json.loads(run(python, "-c", probe, env=env).strip().splitlines()[-1])
    assert found["provider"] == "0.1.0"
    assert found["hook_class"] == "opsman.hooks.OpsManagerHook"
    assert found["hook_name"] == "VMware Tanzu Ops Manager"
    assert "site-packages" in found["module"]  # the installed package, not a checkout


def test_airflow_dags_test_rotates_with_only_the_dag_file_deployed(installed, sim, tmp_path):
    python, _, _ = installed
    (old_guid,) = [ca["guid"] for ca in sim.state()["certificate_authorities"]]
    sim.clear_journal()
    dags, plugins = tmp_path / "dags", tmp_path / "plugins"
    dags.mkdir()
    plugins.mkdir()  # empty: the package must come from site-packages
    shutil.copy(REPO / "dags" / "opsman_ca_rotation.py", dags)
    env = {
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW_CONN_OPSMAN_DEFAULT": os.environ["AIRFLOW_CONN_OPSMAN_DEFAULT"],  # set by the sim fixture
        "PYTHONPATH": "",  # nothing from this checkout
    }
    airflow = python.with_name("airflow")
    run(airflow, "db", "migrate", env=env)
    conf = json.dumps({"poll_interval_seconds": 1})
    run(airflow, "dags", "test", "opsman_ca_rotation", "--conf", conf, env=env, timeout=900)

    runs = json.loads(run(airflow, "dags", "list-runs", "opsman_ca_rotation", "-o", "json", env=env))
    assert [r["state"] for r in runs] == ["success"], runs
    check_rotation_invariants(sim, old_guid, installs_started=4)
