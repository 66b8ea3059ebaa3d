"""README's "Supported versions" table says what CI installs: the two constraints files, and the bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROWS = {
    "Apache Airflow": "apache-airflow",
    "apache-airflow-providers-http": "apache-airflow-providers-http",
    "apache-airflow-providers-standard": "apache-airflow-providers-standard",
}


def readme_table() -> dict[str, tuple[str, str]]:
    section = REPO.joinpath("README.md").read_text().split("### Supported versions", 1)[1]
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| ([^|]+?) \|$", section, re.MULTILINE)
    return {name: (oldest, newest) for name, oldest, newest in rows if name in {*ROWS, "Python"}}


def pins(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if "==" in line and not line.startswith("#")]
    return {name.lower(): version for name, version in (line.split("==", 1) for line in lines)}


def test_the_table_names_the_constraints_files_versions():
    table = readme_table()
    assert set(table) == {*ROWS, "Python"}
    oldest_airflow, newest_airflow = table["Apache Airflow"]
    python = table["Python"]
    oldest = pins(REPO / "constraints" / f"constraints-{oldest_airflow}-py{python[0]}.txt")
    newest = pins(REPO / "constraints" / f"constraints-{newest_airflow}-py{python[1]}.txt")
    for row, dist in ROWS.items():
        assert table[row] == (oldest[dist], newest[dist]), row


def test_the_oldest_column_is_the_lower_bound_we_declare():
    table = readme_table()
    declared = tomllib.loads(REPO.joinpath("pyproject.toml").read_text())["project"]
    bounds = dict(re.match(r"([A-Za-z0-9_.-]+)>=([^,]+)", dep).groups() for dep in declared["dependencies"])
    for row, dist in ROWS.items():
        assert bounds[dist] == table[row][0], row
    assert declared["requires-python"] == f">={table['Python'][0]}"
