"""The fleet file: which foundations to rotate, on what schedule, with which options.

Read at DAG-parse time, so it is cheap on purpose: YAML, a few checks, no network, no hook. Every
problem raises one :class:`FleetFileError` naming the file, the foundation and the field, which the
DAG processor shows as the DAG file's import error.

A foundation's DAG takes every setting from here (:attr:`Foundation.settings`, plain operator
arguments); its trigger form keeps only the per-run choices in :data:`FLEET_FORM`.

Format (see ``include/foundations.example.yaml``)::

    defaults:                      # optional; any foundation field except name and conn_id
                                   # (apply_changes and notifiers merge key by key)
      schedule: "@daily"
      expires_within: 3m
    report:                        # optional; the opsman_certificate_expiry_report DAG
      schedule: "@daily"
      trigger_due_rotations: false
    foundations:
      - name: prod_east            # DAG opsman_ca_rotation__prod_east, pool opsman_prod_east
        conn_id: opsman_prod_east  # Airflow connection (type opsman)
        schedule: "0 6 * * 1-5"    # cron or preset; null: manual runs only
        expires_within: 3m         # rotate when the CA or a rotated leaf expires within this
        poll_interval_seconds: 30
        wait_mode: deferrable      # how Apply Changes waits: deferrable (triggerer), reschedule or poke
        if_installation_running: wait   # or fail: an Apply Changes already running at the start
        custom_ca_conn_id: null    # or a connection holding the CA to upload instead of generating one
        apply_changes: {deploy_products: all, errands: {}, recreate_vms: false,
                        force_latest_variables: false, ignore_warnings: false, mode: api, initial: true}
        notifiers:
          on_failure: [{class: my_pkg.notifiers.Pager, kwargs: {...}}]
          on_success: [...]
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_FLEET_FILE = Path(__file__).resolve().parents[2] / "include" / "foundations.yaml"
FLEET_FILE_ENV = "OPSMAN_FLEET_FILE"
DEFAULT_SCHEDULE = "@daily"
#: Rotate when the active CA, or a leaf certificate the rotation re-issues, expires within this.
#: om's `expiring-certificates` default; see README "A fleet of foundations" for why.
DEFAULT_WINDOW = "3m"
DEFAULT_REPORT_SCHEDULE = "@daily"

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")
CONN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
WINDOW_PATTERN = re.compile(r"^[1-9][0-9]*[dwmy]$")
WINDOW_DAYS = {"d": 1, "w": 7, "m": 31, "y": 366}
MAX_WINDOW_DAYS = 366
PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
#: Every setting of a rotation by operator argument, and its default: the fleet file's values override
#: these, and the single opsman_ca_rotation DAG's trigger form starts from them.
DEFAULT_SETTINGS: dict[str, Any] = {
    "poll_interval_seconds": 30,
    "expires_within": DEFAULT_WINDOW,
    "custom_ca_conn_id": None,
    "initial_apply_changes": True,
    "if_installation_running": "wait",
    "apply_changes_mode": "api",
    "deploy_products": "all",
    "errands": {},
    "recreate_vms": False,
    "force_latest_variables": False,
    "ignore_warnings": False,
}
#: The trigger form of a foundation's DAG: what a person decides per run. Everything else is the fleet
#: file's (a Param is copied into every task and validated on every serialization: see README "Parse cost").
FLEET_FORM = ("dry_run", "only_if_due", "allow_pending_changes", "recent_rotation_days")
APPLY_CHANGES_FIELDS = {
    # fleet key -> setting (operator argument)
    "deploy_products": "deploy_products",
    "errands": "errands",
    "recreate_vms": "recreate_vms",
    "force_latest_variables": "force_latest_variables",
    "ignore_warnings": "ignore_warnings",
    "mode": "apply_changes_mode",
    "initial": "initial_apply_changes",
}
FOUNDATION_FIELDS = {
    "name", "conn_id", "schedule", "expires_within", "poll_interval_seconds", "wait_mode", "apply_changes", "notifiers",
    "if_installation_running", "custom_ca_conn_id",
}
#: How the Apply Changes sensors wait. deferrable: in the triggerer, no worker slot (needs a triggerer);
#: reschedule: a worker slot only during each poll; poke: a worker slot for the whole Apply Changes.
WAIT_MODES = ("deferrable", "reschedule", "poke")
NOTIFIER_EVENTS = ("on_failure", "on_success")


class FleetFileError(ValueError):
    """The fleet file is invalid; the message names the file, the foundation and the field."""


@dataclass(frozen=True)
class NotifierSpec:
    """A notifier by dotted class path and keyword arguments, as written in the fleet file."""

    class_path: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        module, _, name = self.class_path.rpartition(".")
        return getattr(importlib.import_module(module), name)(**self.kwargs)


@dataclass(frozen=True)
class Foundation:
    name: str
    conn_id: str
    schedule: str | None = DEFAULT_SCHEDULE
    expires_within: str = DEFAULT_WINDOW
    poll_interval_seconds: int = 30
    wait_mode: str = WAIT_MODES[0]
    if_installation_running: str = "wait"
    custom_ca_conn_id: str | None = None
    #: ``apply_changes`` as written in the fleet file, by setting (operator argument) name
    apply_changes: dict[str, Any] = field(default_factory=dict)
    on_failure: tuple[NotifierSpec, ...] = ()
    on_success: tuple[NotifierSpec, ...] = ()

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
    def settings(self) -> dict[str, Any]:
        """Every setting of this foundation's rotation by operator argument: the fleet file's, else the default."""
        return {
            **DEFAULT_SETTINGS,
            "opsman_conn_id": self.conn_id,
            "expires_within": self.expires_within,
            "poll_interval_seconds": self.poll_interval_seconds,
            "if_installation_running": self.if_installation_running,
            "custom_ca_conn_id": self.custom_ca_conn_id,
            **self.apply_changes,
        }


@dataclass(frozen=True)
class Fleet:
    path: Path
    foundations: tuple[Foundation, ...]
    report_schedule: str | None = DEFAULT_REPORT_SCHEDULE
    trigger_due_rotations: bool = False


def window_days(value: str) -> int:
    return int(value[:-1]) * WINDOW_DAYS[value[-1]]


def fleet_file_path() -> Path:
    """``$OPSMAN_FLEET_FILE`` if set, else ``include/foundations.yaml``."""
    return Path(os.environ.get(FLEET_FILE_ENV) or DEFAULT_FLEET_FILE)


def load_fleet(path: str | os.PathLike[str] | None = None) -> Fleet | None:
    """The fleet in ``path`` (default: :func:`fleet_file_path`); None when there is no fleet file.

    An explicitly named file that does not exist (``$OPSMAN_FLEET_FILE``) is an error, not "no fleet".
    """
    explicit = path is not None or bool(os.environ.get(FLEET_FILE_ENV))
    path = Path(path) if path is not None else fleet_file_path()
    if not path.exists():
        if explicit:
            raise FleetFileError(f"{path}: fleet file not found (set by {FLEET_FILE_ENV} or the caller)")
        return None
    import yaml  # an Airflow dependency; imported only when there is a fleet file

    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise FleetFileError(f"{path}: not valid YAML: {err}") from None
    return parse_fleet(document, path)


def parse_fleet(document: Any, path: str | os.PathLike[str] = "<fleet>") -> Fleet:
    path = Path(path)
    where = str(path)

    def fail(field_name: str, message: str, foundation: str | None = None) -> FleetFileError:
        subject = f"foundation {foundation!r}, " if foundation is not None else ""
        return FleetFileError(f"{where}: {subject}field {field_name!r}: {message}")

    if not isinstance(document, dict):
        raise FleetFileError(f"{where}: expected a mapping with a 'foundations' list, got {type(document).__name__}")
    unknown = set(document) - {"defaults", "report", "foundations"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown top-level field (expected defaults, report, foundations)")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise fail("defaults", "must be a mapping")
    if {"name", "conn_id"} & set(defaults):
        raise fail("defaults", "name and conn_id are per foundation and cannot have defaults")
    report = document.get("report") or {}
    if not isinstance(report, dict) or set(report) - {"schedule", "trigger_due_rotations"}:
        raise fail("report", "must be a mapping with only schedule and trigger_due_rotations")
    report_schedule = _schedule(report.get("schedule", DEFAULT_REPORT_SCHEDULE), lambda m: fail("report.schedule", m))
    trigger = report.get("trigger_due_rotations", False)
    if not isinstance(trigger, bool):
        raise fail("report.trigger_due_rotations", f"must be true or false, got {trigger!r}")

    items = document.get("foundations")
    if not isinstance(items, list) or not items:
        raise fail("foundations", "must be a non-empty list of foundations")
    foundations: list[Foundation] = []
    seen_names: set[str] = set()
    seen_conns: dict[str, str] = {}
    for index, item in enumerate(items, start=1):
        label = f"#{index}"
        if not isinstance(item, dict):
            raise fail("foundations", f"entry {label} must be a mapping, got {type(item).__name__}")
        name = item.get("name")
        if isinstance(name, str) and name:
            label = name
        merged = {**defaults, **item}
        for nested in ("apply_changes", "notifiers"):  # merged key by key
            if isinstance(defaults.get(nested), dict) and isinstance(item.get(nested), dict):
                merged[nested] = {**defaults[nested], **item[nested]}
        foundations.append(_foundation(merged, lambda f, m, _l=label: fail(f, m, _l)))
        found = foundations[-1]
        if found.name in seen_names:
            raise fail("name", "duplicate foundation name", label)
        if found.conn_id in seen_conns:
            raise fail(
                "conn_id",
                f"connection {found.conn_id!r} is already foundation {seen_conns[found.conn_id]!r}: one Ops Manager, "
                "one entry (two entries would get two pools and could call it at the same time)",
                label,
            )
        seen_names.add(found.name)
        seen_conns[found.conn_id] = found.name
    return Fleet(path=path, foundations=tuple(foundations), report_schedule=report_schedule, trigger_due_rotations=trigger)


def _schedule(value: Any, fail: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if not isinstance(value, str):
        raise fail(f"must be a cron expression, a preset such as @daily, or null; got {value!r}")
    value = value.strip()
    if value in PRESETS:
        return value
    from croniter import croniter  # what Airflow's cron timetables use (already imported by Airflow)

    if value.startswith("@") or not croniter.is_valid(value):
        raise fail(f"{value!r} is not a cron expression or one of {', '.join(sorted(PRESETS))} (or null for manual only)")
    return value


def _foundation(item: dict[str, Any], fail: Any) -> Foundation:
    unknown = set(item) - FOUNDATION_FIELDS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown field (expected {', '.join(sorted(FOUNDATION_FIELDS))})")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise fail("name", f"must be lower-case letters, digits and _, at most 63, starting with a letter or digit; got {name!r}")
    conn_id = item.get("conn_id")
    if not isinstance(conn_id, str) or not CONN_ID_PATTERN.match(conn_id):
        raise fail("conn_id", f"must be an Airflow connection id (letters, digits, _ . -); got {conn_id!r}")
    schedule = _schedule(item.get("schedule", DEFAULT_SCHEDULE), lambda m: fail("schedule", m))
    window = item.get("expires_within", DEFAULT_WINDOW)
    if not isinstance(window, str) or not WINDOW_PATTERN.match(window):
        raise fail("expires_within", f"must be a number and d, w, m or y, e.g. 3m; got {window!r}")
    if window_days(window) > MAX_WINDOW_DAYS:
        raise fail(
            "expires_within",
            f"{window} is more than a year: Ops Manager issues leaf certificates for 2 years, so every run would rotate",
        )
    poll = item.get("poll_interval_seconds", 30)
    if isinstance(poll, bool) or not isinstance(poll, int) or not 1 <= poll <= 3600:
        raise fail("poll_interval_seconds", f"must be an integer from 1 to 3600; got {poll!r}")
    wait_mode = item.get("wait_mode", WAIT_MODES[0])
    if wait_mode not in WAIT_MODES:
        raise fail("wait_mode", f"must be one of {', '.join(WAIT_MODES)}; got {wait_mode!r}")
    running = item.get("if_installation_running", "wait")
    if running not in ("wait", "fail"):
        raise fail("if_installation_running", f"must be wait or fail; got {running!r}")
    custom_ca = item.get("custom_ca_conn_id")
    if custom_ca is not None and (not isinstance(custom_ca, str) or not CONN_ID_PATTERN.match(custom_ca)):
        raise fail("custom_ca_conn_id", f"must be an Airflow connection id or null; got {custom_ca!r}")
    return Foundation(
        name=name,
        conn_id=conn_id,
        schedule=schedule,
        expires_within=window,
        poll_interval_seconds=poll,
        wait_mode=wait_mode,
        if_installation_running=running,
        custom_ca_conn_id=custom_ca,
        apply_changes=_apply_changes(item.get("apply_changes") or {}, fail),
        **_notifiers(item.get("notifiers") or {}, fail),
    )


def _apply_changes(options: Any, fail: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise fail("apply_changes", "must be a mapping")
    settings: dict[str, Any] = {}
    for key, value in options.items():
        where = f"apply_changes.{key}"
        if key not in APPLY_CHANGES_FIELDS:
            raise fail(where, f"unknown option (expected {', '.join(sorted(APPLY_CHANGES_FIELDS))})")
        if key in ("recreate_vms", "force_latest_variables", "ignore_warnings", "initial") and not isinstance(value, bool):
            raise fail(where, f"must be true or false; got {value!r}")
        if key == "mode" and value not in ("api", "manual"):
            raise fail(where, f"must be api or manual; got {value!r}")
        if key == "deploy_products" and not (
            value in ("all", "none") or (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value))
        ):
            raise fail(where, f"must be all, none or a list of product GUIDs or names; got {value!r}")
        if key == "errands" and not (isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())):
            raise fail(where, f"must map a product GUID or name to {{run_post_deploy: {{errand: true/false}}}}; got {value!r}")
        settings[APPLY_CHANGES_FIELDS[key]] = value
    return settings


def _notifiers(value: Any, fail: Any) -> dict[str, tuple[NotifierSpec, ...]]:
    if not isinstance(value, dict) or set(value) - set(NOTIFIER_EVENTS):
        raise fail("notifiers", f"must be a mapping with {' and/or '.join(NOTIFIER_EVENTS)}")
    out: dict[str, tuple[NotifierSpec, ...]] = {}
    for event in NOTIFIER_EVENTS:
        entries = value.get(event) or []
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list):
            raise fail(f"notifiers.{event}", "must be a list of {class: dotted.path, kwargs: {...}}")
        specs = []
        for n, entry in enumerate(entries, start=1):
            where = f"notifiers.{event}[{n}]"
            if not isinstance(entry, dict) or set(entry) - {"class", "kwargs"} or not isinstance(entry.get("class"), str):
                raise fail(where, "must be {class: dotted.path.ToNotifier, kwargs: {...}}")
            kwargs = entry.get("kwargs") or {}
            if not isinstance(kwargs, dict):
                raise fail(f"{where}.kwargs", "must be a mapping")
            spec = NotifierSpec(entry["class"], dict(kwargs))
            _check_notifier(spec, lambda m, _w=where: fail(_w, m))
            specs.append(spec)
        out[event] = tuple(specs)
    return out


def _check_notifier(spec: NotifierSpec, fail: Any) -> None:
    """The class imports, is a BaseNotifier, and accepts the kwargs (nothing is sent)."""
    module, _, name = spec.class_path.rpartition(".")
    if not module:
        raise fail(f"{spec.class_path!r} is not a dotted path such as my_pkg.notifiers.PagerNotifier")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise fail(f"cannot import {spec.class_path!r}: {err}") from None
    from airflow.sdk import BaseNotifier

    if not (isinstance(cls, type) and issubclass(cls, BaseNotifier)):
        raise fail(f"{spec.class_path!r} is not a subclass of airflow.sdk.BaseNotifier")
    try:
        spec.build()
    except TypeError as err:
        raise fail(f"{spec.class_path!r} does not accept kwargs {sorted(spec.kwargs)}: {err}") from None
