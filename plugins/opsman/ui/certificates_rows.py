"""One row per foundation for the Certificates page, computed from what Airflow already holds.

Pure: inputs are plain dicts read from Airflow's database by :mod:`opsman.ui.certificates_app`
(or built by tests), so every rule here is unit-tested without Airflow or Ops Manager.

Inputs per foundation:

- ``reports``: expiry readings, each ``{"value": <XCom>, "dag_id", "run_id", "task_id"}``. The value is
  :func:`opsman.expiry.assess_expiry`'s JSON (the expiry report's ``expiry__<name>`` task or a fleet
  rotation's ``rotation_due`` task) or ``preflight.check_ops_manager``'s (CAs only). The newest
  (``checked_at``, else the XCom's timestamp) wins.
- ``run``: the rotation DAG's latest run ``{"run_id", "state", "start_date", "end_date", "run_after"}``;
  ``task_instances``: that run's ``[{"task_id", "state", "map_index", "try_number"}]``.
- ``rotation_event``: the latest event of Asset ``opsman_root_ca__<name>``: ``{"timestamp", "extra",
  "source_run_id"}`` with extra ``{foundation, old_ca_guid, new_ca_guid, new_ca_expires_at}``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from opsman.constants import DEFAULT_WINDOW
from opsman.values import window_days

REPORT_DAG_ID = "opsman_certificate_expiry_report"
#: The rotation DAG's sections in the order they run: "running (which section)" and "the failed
#: task" are the first matching task in this order.
SECTIONS = (
    "rotation_due",
    "preflight",
    "initial_apply_changes",
    "create_new_ca",
    "activate_new_ca",
    "regenerate_certificates",
    "delete_old_ca",
    "verify",
    "summary",
)
SECTION_LABELS = {
    "rotation_due": "checking whether due",
    "preflight": "pre-flight",
    "initial_apply_changes": "initial Apply Changes",
    "create_new_ca": "creating the new CA",
    "activate_new_ca": "activating the new CA",
    "regenerate_certificates": "regenerating leaf certificates",
    "delete_old_ca": "deleting the old CA",
    "verify": "verifying",
    "summary": "summary",
}
ACTIVE_TI_STATES = (
    "running",
    "deferred",
    "queued",
    "scheduled",
    "up_for_retry",
    "up_for_reschedule",
    "restarting",
)
ACTIVE_RUN_STATES = ("queued", "running")

NOT_DUE, DUE, RUNNING, FAILED, ROTATED, UNKNOWN = "not_due", "due", "running", "failed", "rotated", "unknown"
STATE_LABELS = {
    NOT_DUE: "not due",
    DUE: "due",
    RUNNING: "running",
    FAILED: "failed",
    ROTATED: "rotated",
    UNKNOWN: "no data",
}


@dataclass(frozen=True)
class FoundationRef:
    """What the page knows about a foundation without reading anything: the fleet file's entry."""

    name: str
    conn_id: str
    dag_id: str
    expires_within: str = DEFAULT_WINDOW

    @property
    def asset_name(self) -> str:
        return f"opsman_root_ca__{self.name}"

    @property
    def window_days(self) -> int:
        return window_days(self.expires_within)


def parse_time(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def days_until(when: dt.datetime | None, now: dt.datetime) -> int | None:
    """Whole days from now (floor): negative once expired."""
    return None if when is None else (when - now) // dt.timedelta(days=1)


def section_of(task_id: str) -> str:
    return task_id.split(".", 1)[0]


def _order(task_id: str) -> tuple[int, str]:
    section = section_of(task_id)
    return (SECTIONS.index(section) if section in SECTIONS else len(SECTIONS), task_id)


def task_log_path(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """The Airflow UI's page of one task instance (its log tab is the default)."""
    path = f"/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id)}"
    return path + (f"/mapped/{map_index}" if map_index is not None and map_index >= 0 else "")


def _reading_time(reading: dict[str, Any]) -> dt.datetime | None:
    value = reading.get("value") or {}
    return parse_time(value.get("checked_at")) or parse_time(reading.get("timestamp"))


def latest_reading(readings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest usable expiry reading (a dict XCom naming certificate authorities)."""
    usable = [
        r
        for r in readings
        if isinstance(r.get("value"), dict)
        and "certificate_authorities" in r["value"]
        and r["value"].get("checked", True) is not False
        and _reading_time(r) is not None
    ]
    return max(usable, key=_reading_time, default=None)


def _leaves(value: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for procedure, certs in (value.get("expiring_by_procedure") or {}).items():
        for cert in certs:
            when = parse_time(cert.get("valid_until"))
            if when is not None:
                out.append(
                    {
                        "name": cert.get("name"),
                        "location": cert.get("location"),
                        "valid_until": when,
                        "procedure": procedure,
                        "rotated_by_ca_rotation": bool(cert.get("rotated_by_ca_rotation")),
                    }
                )
    return sorted(out, key=lambda c: (c["valid_until"], c["name"] or ""))


def foundation_row(
    foundation: FoundationRef,
    *,
    now: dt.datetime,
    readings: list[dict[str, Any]] = (),  # type: ignore[assignment]
    run: dict[str, Any] | None = None,
    task_instances: list[dict[str, Any]] = (),  # type: ignore[assignment]
    rotation_event: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The foundation's row: CA, days left against its window, soonest leaf, rotation state, links.

    State, first match wins: the latest run is queued/running → ``running`` (its section); it failed
    → ``failed`` (its first failed task); the rotation's Asset event is newer than the newest expiry
    reading → ``rotated`` (the CA is the event's new one); the reading says due → ``due``; a reading
    → ``not_due``; nothing read yet → ``unknown``.
    """
    readings = list(readings)
    # The CAs from the newest reading of any kind; what expires (and due or not) from the newest
    # full expiry reading; the Ops Manager URL and version from the newest reading that has them
    # (a rotation's pre-flight reads only the CAs).
    reading = latest_reading(readings)
    full = latest_reading([r for r in readings if "expiring_by_procedure" in (r.get("value") or {})])
    meta = (latest_reading([r for r in readings if (r.get("value") or {}).get("opsman_url")]) or {}).get(
        "value"
    ) or {}
    ca_value: dict[str, Any] = (reading or {}).get("value") or {}
    value: dict[str, Any] = (full or {}).get("value") or {}
    read_at = _reading_time(reading) if reading else None
    active = [ca for ca in ca_value.get("certificate_authorities") or [] if ca.get("active")]
    ca_guid = active[0].get("guid") if len(active) == 1 else None
    ca_expires = (
        parse_time(active[0].get("expires_at"))
        if len(active) == 1
        else parse_time(ca_value.get("active_ca_expires_at"))
    )
    leaves = _leaves(value)
    ca_source = f"expiry reading of {iso(read_at)}" if reading else None

    event = None
    if rotation_event:
        extra = rotation_event.get("extra") or {}
        event = {
            "at": parse_time(rotation_event.get("timestamp")),
            "old_ca_guid": extra.get("old_ca_guid"),
            "new_ca_guid": extra.get("new_ca_guid"),
            "new_ca_expires_at": parse_time(extra.get("new_ca_expires_at")),
            "run_id": rotation_event.get("source_run_id"),
        }
    event_is_newest = bool(event and event["at"] and (read_at is None or event["at"] > read_at))
    if event_is_newest:
        # The rotation replaced the CA and re-issued the leaves after the last reading: what that
        # reading said about them is history. The event names the new CA; leaves wait for a new report.
        ca_guid, ca_expires, leaves = event["new_ca_guid"], event["new_ca_expires_at"], []
        ca_source = f"rotation of {iso(event['at'])} (Asset event)"

    days_left = days_until(ca_expires, now)
    ca_in_window = days_left is not None and days_left <= foundation.window_days
    soonest = leaves[0] if leaves else None

    run_state = (run or {}).get("state")
    tis = sorted(task_instances or [], key=lambda t: _order(t["task_id"]))
    detail, link = None, None
    if run and run_state in ACTIVE_RUN_STATES:
        state = RUNNING
        current = next((t for t in tis if t.get("state") in ACTIVE_TI_STATES), None)
        section = section_of(current["task_id"]) if current else None
        detail = (
            f"{SECTION_LABELS.get(section, section)} ({current['task_id']}: {current['state']})"
            if current
            else "starting"
        )
        link = (
            task_log_path(foundation.dag_id, run["run_id"], current["task_id"], current.get("map_index"))
            if current
            else None
        )
    elif run and run_state == "failed":
        state = FAILED
        failed = next((t for t in tis if t.get("state") == "failed"), None)
        if failed:
            detail = f"{failed['task_id']} failed ({SECTION_LABELS.get(section_of(failed['task_id']), '')})"
            link = task_log_path(foundation.dag_id, run["run_id"], failed["task_id"], failed.get("map_index"))
        else:
            detail = "the run failed without a failed task (timed out or marked failed)"
    elif event_is_newest:
        state = ROTATED
        detail = f"{event['old_ca_guid'] or '?'} → {event['new_ca_guid'] or '?'}"
    elif reading:
        cas = len(ca_value.get("certificate_authorities") or [])
        due = bool(value.get("due")) or ca_in_window or cas > 1
        state = DUE if due else NOT_DUE
        if not due:
            detail = f"root CA expires in {days_left} days, after the {foundation.expires_within} window"
        elif value.get("reasons"):
            detail = "; ".join(value["reasons"])
        elif ca_in_window:
            detail = f"root CA expires in {days_left} days, within the {foundation.expires_within} window"
        else:
            detail = f"{cas} CAs: a rotation was started and not finished"
    else:
        state = UNKNOWN
        detail = "nothing read yet: trigger the expiry report"

    run_link = f"/dags/{quote(foundation.dag_id)}/runs/{quote(run['run_id'], safe='')}" if run else None
    return {
        "foundation": foundation.name,
        "conn_id": foundation.conn_id,
        "dag_id": foundation.dag_id,
        "expires_within": foundation.expires_within,
        "window_days": foundation.window_days,
        "opsman_url": meta.get("opsman_url"),
        "opsman_version": meta.get("opsman_version"),
        "ca_guid": ca_guid,
        "ca_expires_at": iso(ca_expires),
        "ca_source": ca_source,
        "ca_count": len(ca_value.get("certificate_authorities") or [])
        if reading and not event_is_newest
        else None,
        "days_left": days_left,
        "ca_in_window": ca_in_window,
        "soonest_leaf": (
            {
                "name": soonest["name"],
                "valid_until": iso(soonest["valid_until"]),
                "days_left": days_until(soonest["valid_until"], now),
                "procedure": soonest["procedure"],
            }
            if soonest
            else None
        ),
        "leaves": [
            {
                "name": c["name"],
                "valid_until": iso(c["valid_until"]),
                "rotated_by_ca_rotation": c["rotated_by_ca_rotation"],
            }
            for c in leaves
        ],
        "state": state,
        "state_label": STATE_LABELS[state],
        "state_detail": detail,
        "state_link": link,
        "highlight": state in (DUE, FAILED) or (state != ROTATED and ca_in_window),
        "last_rotation": (
            {
                "at": iso(event["at"]),
                "old_ca_guid": event["old_ca_guid"],
                "new_ca_guid": event["new_ca_guid"],
                "run_id": event["run_id"],
            }
            if event
            else None
        ),
        "read_at": iso(read_at),
        "read_from": (
            {
                "dag_id": reading.get("dag_id"),
                "run_id": reading.get("run_id"),
                "task_id": reading.get("task_id"),
            }
            if reading
            else None
        ),
        "latest_run": ({"run_id": run["run_id"], "state": run_state, "url": run_link} if run else None),
        "dag_url": f"/dags/{quote(foundation.dag_id)}",
    }
