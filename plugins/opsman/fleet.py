"""The fleet file: which foundations to rotate, on what schedule, with which options.

Read at DAG-parse time, so it is cheap on purpose: YAML and a pydantic schema, no network, no hook.
The schema's rules are the types of :mod:`opsman.values`, which the trigger form's Params share. The
first problem raises one :class:`FleetFileError` naming the file, the foundation and the field (in
the rule's own words, :data:`RULES`), which the DAG processor shows as the DAG file's import error.

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
        approve_before: [activate_ca, delete_ca]  # a person approves these steps in Airflow first
        approval_timeout_minutes: 1440             # no answer by then is a Reject; 0: no limit
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from opsman.fleet_schema import (  # re-exported: the fleet's public names live here
    DEFAULT_SETTINGS,
    FLAGS,
    FLEET_FORM,
    NOTIFIER_EVENTS,
    RULES,
    ApplyChanges,
    Fleet,
    FleetFileError,
    Foundation,
    Notifiers,
    NotifierSpec,
    Report,
    _none_is_empty,
)

DEFAULT_FLEET_FILE = Path(__file__).resolve().parents[2] / "include" / "foundations.yaml"
FLEET_FILE_ENV = "OPSMAN_FLEET_FILE"

__all__ = [
    "DEFAULT_FLEET_FILE",
    "DEFAULT_SETTINGS",
    "FLEET_FILE_ENV",
    "FLEET_FORM",
    "RULES",
    "Fleet",
    "FleetFileError",
    "Foundation",
    "fleet_file_path",
    "load_fleet",
    "parse_fleet",
]


def _where(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the fleet file's path: ``notifiers.on_failure[1].kwargs``."""
    return "".join(f"[{p + 1}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _keys(model: type[BaseModel]) -> str:
    return ", ".join(sorted(f.alias or name for name, f in model.model_fields.items()))


def _describe(error: Any, model: type[BaseModel]) -> tuple[str, str]:
    """One pydantic error of validating ``model`` as (field, message), in the rule's own words."""
    loc = tuple(p for p in error["loc"] if isinstance(p, int) or not p.startswith("function-"))
    if error["type"] == "fleet":
        return _where(loc), error["msg"]
    if error["type"] == "extra_forbidden":
        parent = loc[-2] if len(loc) > 1 else None
        kind = {"apply_changes": ApplyChanges, "notifiers": Notifiers}.get(parent, model)
        kind = NotifierSpec if isinstance(parent, int) else kind
        noun = "option" if kind is ApplyChanges else "field"
        return _where(loc), f"unknown {noun} (expected {_keys(kind)})"
    # The innermost part of the location that has a rule: errands.cf is the errands' rule.
    for depth in range(len(loc), 0, -1):
        key = loc[depth - 1]
        if isinstance(key, int):  # an item of a list: a notifier has its own rule, others their list's
            key = "notifier" if depth > 1 and loc[depth - 2] in NOTIFIER_EVENTS else None
        rule = RULES.get("flag" if key in FLAGS else key)
        if rule:
            break
    else:
        depth, rule = len(loc), "is not valid: " + error["msg"]
    got = "it is missing" if error["type"] == "missing" and depth == len(loc) else f"got {error['input']!r}"
    return _where(loc[:depth]), f"{rule}; {got}"


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
        # libyaml's loader when PyYAML has it: about 8x faster than the pure-Python one, same documents.
        document = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise FleetFileError(f"{path}: not valid YAML: {err}") from None
    return parse_fleet(document, path)


def parse_fleet(document: Any, path: str | os.PathLike[str] = "<fleet>") -> Fleet:
    """The fleet of a fleet file's ``document``; the first problem raises one :class:`FleetFileError`."""
    path = Path(path)

    def fail(field_name: str, message: str, foundation: str | None = None) -> FleetFileError:
        subject = f"foundation {foundation!r}, " if foundation is not None else ""
        return FleetFileError(f"{path}: {subject}field {field_name!r}: {message}")

    def validate(model: type[BaseModel], value: Any, prefix: str = "", foundation: str | None = None) -> Any:
        try:
            return model.model_validate(value)
        except ValidationError as err:
            where, message = _describe(err.errors()[0], model)
            raise fail(f"{prefix}{where}", message, foundation) from None

    if not isinstance(document, dict):
        raise FleetFileError(
            f"{path}: expected a mapping with a 'foundations' list, got {type(document).__name__}"
        )
    unknown = set(document) - {"defaults", "report", "foundations"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown top-level field (expected defaults, report, foundations)")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise fail("defaults", "must be a mapping")
    if {"name", "conn_id"} & set(defaults):
        raise fail("defaults", "name and conn_id are per foundation and cannot have defaults")
    report = validate(Report, _none_is_empty(document.get("report")), "report.")
    items = document.get("foundations")
    if not isinstance(items, list) or not items:
        raise fail("foundations", "must be a non-empty list of foundations")
    foundations: dict[str, Foundation] = {}
    names_by_conn: dict[str, str] = {}
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise fail("foundations", f"entry #{index} must be a mapping, got {type(item).__name__}")
        label = item["name"] if isinstance(item.get("name"), str) and item["name"] else f"#{index}"
        merged = {**defaults, **item}
        for nested in ("apply_changes", "notifiers"):  # merged key by key
            if isinstance(defaults.get(nested), dict) and isinstance(item.get(nested), dict):
                merged[nested] = {**defaults[nested], **item[nested]}
        found = validate(Foundation, merged, foundation=label)
        if found.name in foundations:
            raise fail("name", "duplicate foundation name", label)
        if found.conn_id in names_by_conn:
            raise fail(
                "conn_id",
                f"connection {found.conn_id!r} is already foundation {names_by_conn[found.conn_id]!r}: one Ops Manager, "
                "one entry (two entries would get two pools and could call it at the same time)",
                label,
            )
        foundations[found.name] = found
        names_by_conn[found.conn_id] = found.name
    return Fleet(
        path=path,
        foundations=tuple(foundations.values()),
        report_schedule=report.schedule,
        trigger_due_rotations=report.trigger_due_rotations,
    )
