"""The fleet file's schema: pydantic models of a foundation, its Apply Changes options, notifiers and
the report, each field typed with the rules of :mod:`opsman.values` that the trigger form's Params share,
and the message of each rule (:data:`RULES`) that :mod:`opsman.fleet` puts in its errors.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from opsman.compat import human_in_the_loop_missing
from opsman.constants import APPROVABLE_STEPS, DEFAULT_APPROVAL_TIMEOUT_MINUTES, DEFAULT_WINDOW
from opsman.values import (
    ApplyChangesMode,
    ApprovalTimeoutMinutes,
    ApproveBefore,
    ConnId,
    DeployProducts,
    Errands,
    Flag,
    IfInstallationRunning,
    PollSeconds,
    Window,
    window_days,
)

DEFAULT_SCHEDULE = "@daily"
DEFAULT_REPORT_SCHEDULE = "@daily"

MAX_WINDOW_DAYS = 366
PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
#: The trigger form of a foundation's DAG: what a person decides per run. Everything else is the fleet
#: file's (a Param is copied into every task and validated on every serialization: see docs/fleet.md, "Parse cost").
FLEET_FORM = ("dry_run", "only_if_due", "allow_pending_changes", "recent_rotation_days")
NOTIFIER_EVENTS = ("on_failure", "on_success")


class FleetFileError(ValueError):
    """The fleet file is invalid; the message names the file, the foundation and the field."""


def _fail(message: str) -> PydanticCustomError:
    """A rule's own message, shown as written (see :func:`_describe`)."""
    return PydanticCustomError("fleet", message)


def _none_is_empty(value: Any) -> Any:
    """An empty YAML key (``apply_changes:``) means the defaults."""
    return {} if value is None else value


@cache  # a fleet's foundations mostly share a schedule: check each expression once per file
def _is_cron(value: str) -> bool:
    from croniter import croniter  # what Airflow's cron timetables use (already imported by Airflow)

    return bool(croniter.is_valid(value))


def _schedule(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if not isinstance(value, str):
        raise _fail(f"must be a cron expression, a preset such as @daily, or null; got {value!r}")
    value = value.strip()
    if value in PRESETS:
        return value
    if value.startswith("@") or not _is_cron(value):
        raise _fail(
            f"{value!r} is not a cron expression or one of {', '.join(sorted(PRESETS))} (or null for manual only)"
        )
    return value


def _within_a_year(window: str) -> str:
    if window_days(window) > MAX_WINDOW_DAYS:
        raise _fail(
            f"{window} is more than a year: Ops Manager issues leaf certificates for 2 years, so every run would rotate"
        )
    return window


def _approvals_available(steps: list[str]) -> list[str]:
    """Approvals are refused, not ignored, where Airflow lacks human-in-the-loop tasks."""
    if steps:
        missing = human_in_the_loop_missing()  # only fleets that ask for approvals import the HITL module
        if missing:
            raise _fail(missing)
    return steps


Schedule = Annotated[str | None, BeforeValidator(_schedule)]
#: How the Apply Changes sensors wait. deferrable: in the triggerer, no worker slot (needs a triggerer);
#: reschedule: a worker slot only during each poll; poke: a worker slot for the whole Apply Changes.
WaitMode = Literal["deferrable", "reschedule", "poke"]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class ApplyChanges(_Schema):
    """A foundation's ``apply_changes``: fields by setting (operator argument), aliases the fleet file's keys."""

    deploy_products: DeployProducts = "all"
    errands: Errands = Field(default_factory=dict)
    recreate_vms: Flag = False
    force_latest_variables: Flag = False
    ignore_warnings: Flag = False
    apply_changes_mode: ApplyChangesMode = Field("api", alias="mode")
    initial_apply_changes: Flag = Field(True, alias="initial")


class NotifierSpec(_Schema):
    """A notifier by dotted class path and keyword arguments, as written in the fleet file. The class must
    import, be a BaseNotifier and accept the kwargs (checked when the file is read; nothing is sent)."""

    class_path: str = Field(alias="class")
    kwargs: Annotated[dict[str, Any], BeforeValidator(_none_is_empty)] = Field(default_factory=dict)

    def build(self) -> Any:
        module, _, name = self.class_path.rpartition(".")
        return getattr(importlib.import_module(module), name)(**self.kwargs)

    @model_validator(mode="after")
    def _check_notifier(self) -> NotifierSpec:
        module, _, name = self.class_path.rpartition(".")
        if not module:
            raise _fail(f"{self.class_path!r} is not a dotted path such as my_pkg.notifiers.PagerNotifier")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise _fail(f"cannot import {self.class_path!r}: {err}") from None
        from airflow.sdk import BaseNotifier

        if not (isinstance(cls, type) and issubclass(cls, BaseNotifier)):
            raise _fail(f"{self.class_path!r} is not a subclass of airflow.sdk.BaseNotifier")
        try:
            self.build()
        except TypeError as err:
            raise _fail(f"{self.class_path!r} does not accept kwargs {sorted(self.kwargs)}: {err}") from None
        return self


def _notifier_list(value: Any) -> Any:
    """``on_failure: {class: ...}`` is a list of one; empty is none."""
    return (
        ()
        if value is None
        else (value,)
        if isinstance(value, dict)
        else tuple(value)
        if isinstance(value, list)
        else value
    )


NotifierList = Annotated[tuple[NotifierSpec, ...], BeforeValidator(_notifier_list)]


class Notifiers(_Schema):
    on_failure: NotifierList = ()
    on_success: NotifierList = ()


class Foundation(_Schema):
    """One foundation of the fleet file: its DAG ``opsman_ca_rotation__<name>`` takes every setting from here."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,62}$")]
    conn_id: ConnId
    schedule: Schedule = DEFAULT_SCHEDULE
    expires_within: Annotated[Window, AfterValidator(_within_a_year)] = DEFAULT_WINDOW
    poll_interval_seconds: PollSeconds = 30
    wait_mode: WaitMode = "deferrable"
    if_installation_running: IfInstallationRunning = "wait"
    custom_ca_conn_id: ConnId | None = None
    apply_changes_options: Annotated[ApplyChanges, BeforeValidator(_none_is_empty)] = Field(
        default_factory=ApplyChanges, alias="apply_changes"
    )
    notifiers: Annotated[Notifiers, BeforeValidator(_none_is_empty)] = Field(default_factory=Notifiers)
    approve_before: Annotated[ApproveBefore, AfterValidator(_approvals_available)] = Field(
        default_factory=list
    )
    approval_timeout_minutes: ApprovalTimeoutMinutes = DEFAULT_APPROVAL_TIMEOUT_MINUTES

    @property
    def dag_id(self) -> str:
        return f"opsman_ca_rotation__{self.name}"

    @property
    def pool(self) -> str:
        """One slot per foundation: everything that talks to its Ops Manager queues here."""
        return f"opsman_{self.name}"

    @property
    def window_days(self) -> int:
        return window_days(self.expires_within)

    @property
    def apply_changes(self) -> dict[str, Any]:
        """``apply_changes`` as written in the fleet file, by setting (operator argument) name."""
        return self.apply_changes_options.model_dump(exclude_unset=True)

    @property
    def on_failure(self) -> tuple[NotifierSpec, ...]:
        return self.notifiers.on_failure

    @property
    def on_success(self) -> tuple[NotifierSpec, ...]:
        return self.notifiers.on_success

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting of this foundation's rotation by operator argument: the fleet file's, else the default."""
        return {
            "opsman_conn_id": self.conn_id,
            **{name: getattr(self, name) for name in FOUNDATION_SETTINGS},
            **self.apply_changes_options.model_dump(),
        }


class Report(_Schema):
    """The ``report`` section: the opsman_certificate_expiry_report DAG."""

    schedule: Schedule = DEFAULT_REPORT_SCHEDULE
    trigger_due_rotations: Flag = False


class Fleet(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    foundations: tuple[Foundation, ...]
    report_schedule: str | None = DEFAULT_REPORT_SCHEDULE
    trigger_due_rotations: bool = False


#: The foundation fields that are settings of the rotation (operator arguments of the same name).
FOUNDATION_SETTINGS = (
    "expires_within",
    "poll_interval_seconds",
    "if_installation_running",
    "custom_ca_conn_id",
    "approve_before",
    "approval_timeout_minutes",
)
#: Every setting of a rotation by operator argument, and its default: the fleet file's values override
#: these, and the single opsman_ca_rotation DAG's trigger form starts from them.
DEFAULT_SETTINGS: dict[str, Any] = {
    **{
        name: Foundation.model_fields[name].get_default(call_default_factory=True)
        for name in FOUNDATION_SETTINGS
    },
    **ApplyChanges().model_dump(),
}
#: The message of each rule, by the fleet file's key, for errors the types above find.
RULES = {
    "name": "must be lower-case letters, digits and _, at most 63, starting with a letter or digit",
    "conn_id": "must be an Airflow connection id (letters, digits, _ . -)",
    "custom_ca_conn_id": "must be an Airflow connection id or null",
    "expires_within": "must be a number and d, w, m or y, e.g. 3m",
    "poll_interval_seconds": "must be an integer from 1 to 3600",
    "wait_mode": "must be one of deferrable, reschedule, poke",
    "if_installation_running": "must be wait or fail",
    "mode": "must be api or manual",
    "deploy_products": "must be all, none or a list of product GUIDs or names",
    "errands": "must map a product GUID or name to {run_post_deploy: {errand: true/false}}",
    "apply_changes": "must be a mapping",
    "notifiers": f"must be a mapping with {' and/or '.join(NOTIFIER_EVENTS)}",
    "on_failure": "must be a list of {class: dotted.path, kwargs: {...}}",
    "on_success": "must be a list of {class: dotted.path, kwargs: {...}}",
    "notifier": "must be {class: dotted.path.ToNotifier, kwargs: {...}}",
    "kwargs": "must be a mapping",
    "flag": "must be true or false",
    "approve_before": f"must be a list of steps among {', '.join(APPROVABLE_STEPS)}, each named once",
    "approval_timeout_minutes": "must be a number of minutes, 0 or more (0: no limit)",
}
#: The fleet file's true/false keys: their errors say "must be true or false".
FLAGS = {
    f.alias or name
    for m in (ApplyChanges, Report)
    for name, f in m.model_fields.items()
    if f.annotation is bool
}
