"""Parsing and formatting rules shared by the operators, sensor, expiry report, fleet file and UI page.

One definition per rule, at the bottom of the import graph: it imports nothing of ours but the
constants and the exceptions. The rules of a rotation's settings are types: the fleet file's schema
(:mod:`opsman.fleet`) validates with them, and the trigger form's Params take their JSON schema from
them (:func:`param_schema`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, Strict, TypeAdapter

from opsman.constants import APPROVABLE_STEPS, EXPIRES_WITHIN_PATTERN
from opsman.exceptions import OpsManagerConfigError

#: An expiry window such as ``3m``.
Window = Annotated[str, Field(pattern=EXPIRES_WITHIN_PATTERN.pattern)]
#: How often to ask Ops Manager whether an Apply Changes has finished.
PollSeconds = Annotated[int, Strict(), Field(ge=1, le=3600)]
#: true or false, nothing else ("yes" and 1 are mistakes, not flags).
Flag = Annotated[bool, Strict()]
#: An Airflow connection id.
ConnId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]
#: api: the DAG starts each Apply Changes; manual: a person clicks Apply Changes and the DAG waits.
ApplyChangesMode = Literal["api", "manual"]
#: wait: let a running Apply Changes finish, then start; fail: stop without changing anything.
IfInstallationRunning = Literal["wait", "fail"]
#: Which products an Apply Changes deploys: all (what the rotation docs require), none (the director
#: only), or a non-empty list of product GUIDs or names.
DeployProducts = (
    Literal["all", "none"] | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
)
#: Errands per product GUID or name: ``{"p-redis": {"run_post_deploy": {"errand": true}}}``.
Errands = dict[str, dict[str, Any]]


def _each_once(steps: list[str]) -> list[str]:
    if len(set(steps)) != len(steps):
        raise ValueError("a step is named twice")
    return steps


#: Steps a person approves in Airflow before they run (opsman.approvals), each named once; empty: none.
ApproveBefore = Annotated[
    list[Literal[APPROVABLE_STEPS]],  # the step names of opsman.constants, not listed again
    AfterValidator(_each_once),
    Field(json_schema_extra={"uniqueItems": True}),
]
#: Minutes a person has to answer an approval; no answer by then is a Reject. 0: no limit.
ApprovalTimeoutMinutes = Annotated[float, Field(ge=0)]


@cache  # once per process: the DAG file builds a form per foundation (bench/parse_cost.py)
def _adapter(rule: Any) -> TypeAdapter:
    return TypeAdapter(rule)


@cache
def param_schema(rule: Any) -> dict[str, Any]:
    """The JSON schema of a rule above, for a trigger-form Param (shared: do not change it)."""
    return _adapter(rule).json_schema()


def conforming(rule: Any, value: Any) -> Any:
    """``value`` as a rule above reads it, for a task's rendered argument; pydantic's ValidationError if not."""
    return _adapter(rule).validate_python(value)


#: Days per unit of an expiry window (``3m``), counted generously: a month is 31 days, a year 366,
#: so a window never ends before the calendar one it names.
WINDOW_DAYS = {"d": 1, "w": 7, "m": 31, "y": 366}


def window_days(expires_within: str) -> int:
    """Days in an ``expires_within`` value such as ``3m``."""
    if not isinstance(expires_within, str) or not EXPIRES_WITHIN_PATTERN.match(expires_within):
        raise OpsManagerConfigError(
            f"expiry window {expires_within!r} must be a number and d, w, m or y, e.g. 3m"
        )
    return int(expires_within[:-1]) * WINDOW_DAYS[expires_within[-1]]


def optional_int(value: Any, name: str) -> int | None:
    """An int from an XCom or template value; ``None``/``"None"``/``""`` mean "not given"."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise OpsManagerConfigError(f"{name} must be an integer, got {value!r}") from None


def as_flag(value: Any, name: str) -> bool:
    """A boolean from a Param or a rendered template (``True``, ``"true"``, ``"False"``...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise OpsManagerConfigError(f"{name} must be true or false, got {value!r}")


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a plain-text table with aligned columns, for task logs."""
    table = [tuple(str(c) for c in header), *(tuple("" if c is None else str(c) for c in r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table)
