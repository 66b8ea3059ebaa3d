"""Runs of the real rotation DAG, task by task, without a scheduler: what a history is made of.

The tasks come from ``dags/opsman_ca_rotation.py`` (``build_rotation_dag()``), their templates are
rendered by Airflow with the DAG's own (native) Jinja environment against this run's XComs and
Params, and each try calls the operator's ``execute`` on a fresh copy of the task, as a worker does.
What stands in for Airflow's scheduler here is only its bookkeeping: which task is next (the DAG is
one chain with ``trigger_rule=none_failed``), XComs cleared at the start of every try, a failed try
retried unless it raised ``AirflowFailException``, a cleared task run again with everything after it.

The Apply Changes sensors run in ``reschedule`` mode (one poke per try, the fleet file's
``wait_mode: reschedule``): a history can then interleave anything between two pokes, and the Apply
Changes operators with ``deferrable=False`` (as the DAG builds them for that wait mode). The deferrable
trigger path is not driven here (it is async and covered by tests/plugins/opsman/test_sensors.py and
test_operators.py).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from airflow.sdk._shared.secrets_masker import reset_secrets_masker
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException, AirflowSkipException
from inprocess import WorkerKilled

#: Tasks of the rotation DAG in dependency order (the DAG is a chain); the summary task only reports.
REPORT_ONLY = {"summary"}
RETRIES = 3  # the DAG's default_args


def rotation_tasks():
    """The rotation DAG, its tasks in order, and its Jinja environment (compiled templates kept)."""
    from opsman_ca_rotation import build_rotation_dag

    dag = build_rotation_dag()
    order = [t for t in dag.topological_sort() if t.task_id not in REPORT_ONLY]
    for a, b in pairwise(order):
        assert b.task_id in a.downstream_task_ids, (
            f"the DAG is no longer one chain: {a.task_id} -> {b.task_id}"
        )
    env = dag.get_template_env()
    # The same few templates render thousands of times: compile each once (a worker compiles per try).
    env.from_string = functools.lru_cache(maxsize=None)(env.from_string)
    return dag, order, env


class HistoryTI:
    """The task instance a try sees: XComs of this run, pushes recorded for the running task."""

    def __init__(self, run: Run, task_id: str) -> None:
        self.run = run
        self.task_id = task_id

    def xcom_push(self, key: str, value: Any) -> None:
        self.run.xcoms[(self.task_id, key)] = value

    def xcom_pull(
        self, task_ids: Any = None, key: str = "return_value", default: Any = None, **_: Any
    ) -> Any:
        if isinstance(task_ids, (list, tuple)):
            return [self.run.xcoms.get((t, key), default) for t in task_ids]
        return self.run.xcoms.get((task_ids or self.task_id, key), default)

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


@dataclass
class TryResult:
    task_id: str
    state: str  # success | skipped | failed | up_for_retry | up_for_reschedule | killed
    error: BaseException | None = None
    value: Any = None

    @property
    def message(self) -> str:
        return str(self.error) if self.error is not None else ""


@dataclass
class Run:
    """One DAG run: its Params, XComs and each task's state and tries."""

    dag: Any
    tasks: list
    env: Any
    params: dict[str, Any]
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)
    results: list[TryResult] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [t.task_id for t in self.tasks]

    def next_task(self) -> str | None:
        """The first task not yet successful or skipped (a chain: everything before it is done)."""
        for task_id in self.ids:
            if self.states.get(task_id) not in ("success", "skipped"):
                return task_id
        return None

    @property
    def finished(self) -> bool:
        return self.next_task() is None

    def runnable(self) -> str | None:
        """The next task if the scheduler would run it now (not failed for good)."""
        task_id = self.next_task()
        if task_id is None or self.states.get(task_id) == "failed":
            return None
        return task_id

    def clear(self, task_id: str) -> None:
        """Clear a task and everything downstream (the UI's default for a chain)."""
        for later in self.ids[self.ids.index(task_id) :]:
            self.states.pop(later, None)
            self.tries.pop(later, None)

    def run_try(self, task_id: str) -> TryResult:
        original = self.dag.task_dict[task_id]
        task = copy.copy(original)
        if hasattr(task, "deferrable"):
            task.deferrable = False
        if hasattr(task, "poke"):
            task.mode = "reschedule"
        for key in [k for k in self.xcoms if k[0] == task_id]:
            del self.xcoms[key]
        ti = HistoryTI(self, task_id)
        # Every try is a new worker process: it starts with no secrets to mask (and the masker's
        # pattern, recompiled for every token, would otherwise grow with each try of the history).
        reset_secrets_masker()
        context = {"ti": ti, "params": self.params, "task": task, "dag": self.dag}
        self.tries[task_id] = self.tries.get(task_id, 0) + 1
        try:
            task.render_template_fields(context, self.env)
            value = task.execute(context)
        except AirflowSkipException as err:
            result = TryResult(task_id, "skipped", err)
        except AirflowRescheduleException as err:
            result = TryResult(task_id, "up_for_reschedule", err)
        except AirflowFailException as err:
            result = TryResult(task_id, "failed", err)
        except WorkerKilled as err:
            result = TryResult(task_id, self._retry_state(task_id), err)
        except Exception as err:  # noqa: BLE001 - any other error is a failed try, retried by Airflow
            result = TryResult(task_id, self._retry_state(task_id), err)
        else:
            if value is not None:
                self.xcoms[(task_id, "return_value")] = value
                if task.multiple_outputs:  # as Airflow does: each key of the returned mapping, an XCom
                    self.xcoms.update({(task_id, key): v for key, v in value.items()})
            result = TryResult(task_id, "success", value=value)
        self.states[task_id] = (
            "failed"
            if result.state == "failed"
            else ("up_for_retry" if result.state == "up_for_retry" else result.state)
        )
        self.results.append(result)
        return result

    def _retry_state(self, task_id: str) -> str:
        return "up_for_retry" if self.tries[task_id] <= RETRIES else "failed"
