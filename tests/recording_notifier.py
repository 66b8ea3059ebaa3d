"""A notifier for tests: appends one JSON line per call to a file (importable by the DAG file at parse time)."""

from __future__ import annotations

import json
from pathlib import Path

from airflow.sdk import BaseNotifier


class RecordingNotifier(BaseNotifier):
    def __init__(self, path: str, label: str = "") -> None:
        super().__init__()
        self.path = path
        self.label = label

    def notify(self, context) -> None:
        ti = context.get("ti")
        record = {
            "label": self.label,
            "dag_id": context["dag"].dag_id,
            "task_id": getattr(ti, "task_id", None),
            "run_id": getattr(context.get("dag_run"), "run_id", None),
        }
        with open(self.path, "a") as out:
            out.write(json.dumps(record) + "\n")


def calls(path: str | Path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
