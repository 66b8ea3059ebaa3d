"""Every Airflow import whose home differs across the supported Airflow versions (tested: 3.1.0, 3.3.2).

The rest of the package imports these names from here, so one file records what moved:

- ``AirflowSkipException``, ``AirflowFailException`` and ``TaskDeferred`` (what ``defer()`` raises;
  the tests catch it) are in ``airflow.sdk.exceptions`` on newer Airflows; on 3.1 only
  ``airflow.exceptions`` has them. Where both exist (3.3) they are the very same classes, so the task
  runner recognises whichever one we raise.
- ``SkipMixin`` is exported by ``airflow.sdk`` on newer Airflows; on 3.1 it lives in
  ``airflow.models.skipmixin``.
- :data:`DOUBLING_BACKOFF`: ``retry_exponential_backoff`` is a bool on 3.1 (``True`` doubles the
  delay per try) and a float multiplier on 3.3, where ``True`` would mean a multiplier of 1 (no growth)
  and 3.1 refuses a float at DAG parse time.
- :func:`aget_connection`: Airflow 3.1.0's ``BaseHook.aget_connection`` only works where a supervisor
  set up its comms channel (a task, the triggerer); anywhere else (a trigger run inline, a script) it
  raises ``ImportError`` for ``SUPERVISOR_COMMS`` before trying any secrets backend. 3.3 tries the
  backends without one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

try:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowFailException,
        AirflowSkipException,
        TaskDeferred,
    )

try:
    from airflow.sdk import SkipMixin
except ImportError:  # Airflow 3.1
    from airflow.models.skipmixin import SkipMixin  # type: ignore[no-redef,attr-defined]

from airflow.sdk.bases.operator import BASEOPERATOR_ARGS_EXPECTED_TYPES

#: ``retry_exponential_backoff`` that doubles the retry delay on every Airflow we support.
DOUBLING_BACKOFF: float | bool = (
    True if BASEOPERATOR_ARGS_EXPECTED_TYPES.get("retry_exponential_backoff") is bool else 2.0  # bool: 3.1
)

if TYPE_CHECKING:
    from airflow.sdk import BaseHook


async def aget_connection(hook: BaseHook, conn_id: str) -> Any:
    """``hook.aget_connection(conn_id)``; on Airflow 3.1.0 without a supervisor, a sync lookup in a thread."""
    try:
        return await hook.aget_connection(conn_id)
    except ImportError:  # Airflow 3.1.0: no SUPERVISOR_COMMS in this process
        return await asyncio.to_thread(hook.get_connection, conn_id)


__all__ = [
    "DOUBLING_BACKOFF",
    "AirflowFailException",
    "AirflowSkipException",
    "SkipMixin",
    "TaskDeferred",
    "aget_connection",
]


def human_in_the_loop_missing() -> str:
    """Why ``approve_before`` cannot work on this Airflow; "" where it has human-in-the-loop tasks.

    Imports the standard provider's HITL module only when asked (parse cost a fleet without approvals
    does not pay). Airflow < 3.1 raises AirflowOptionalProviderFeatureException, old providers ImportError.
    """
    try:
        from airflow.providers.standard.operators import hitl  # noqa: F401
    except Exception as err:
        return (
            "approve_before needs Airflow's human-in-the-loop tasks (Airflow >= 3.1 with "
            f"apache-airflow-providers-standard >= 1.8.0), which this Airflow lacks ({err}). Upgrade Airflow "
            "and the standard provider, or leave approve_before empty and approve changes outside Airflow."
        )
    return ""
