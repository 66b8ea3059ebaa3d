"""The Certificates page's FastAPI app, mounted by the API server at ``/opsman-certificates``.

``GET /opsman-certificates/`` is the page (HTML table and SVG timeline), ``GET /opsman-certificates/rows``
the same rows as JSON. Both:

- authenticate like Airflow's own API: the ``Authorization: Bearer`` token or the UI's ``_token``
  cookie, resolved by Airflow's auth manager (``airflow.api_fastapi.core_api.security.get_user``);
  no session → 401;
- show a foundation only when the auth manager lets the user read its rotation DAG
  (``filter_authorized_dag_ids``, method GET); the expiry report's data is used only when the user
  may also read the report DAG;
- read only Airflow's database: the latest expiry readings (XCom), the rotation DAG's latest run and
  its task instances, and the latest event of Asset ``opsman_root_ca__<name>``. Never Ops Manager;
  never a connection (no passwords, no keys: the Ops Manager URL comes from the expiry report's XCom).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from html import escape
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from opsman.ui.certificates_chart import STATE_COLOURS, render_timeline
from opsman.ui.certificates_rows import REPORT_DAG_ID, FoundationRef, foundation_row, iso

log = logging.getLogger(__name__)

URL_PREFIX = "/opsman-certificates"
SINGLE_DAG_ID = "opsman_ca_rotation"
READING_TASKS = ("rotation_due", "preflight.check_ops_manager")


def _get_user():  # resolved lazily: importing the security module needs a configured Airflow
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


async def current_user(request: Request) -> Any:
    """Airflow's own authentication (bearer token or the UI's ``_token`` cookie); 401 without one."""
    from fastapi.security import HTTPAuthorizationCredentials

    get_user = _get_user()
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    bearer = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)
        if scheme.lower() == "bearer"
        else None
    )
    return await get_user(request, None, bearer)


UserDep = Annotated[Any, Depends(current_user)]


def fleet_foundations() -> tuple[list[FoundationRef], str | None, bool]:
    """The fleet file's foundations (or the single DAG on ``opsman_default``), a problem if any, and
    whether there is an expiry report DAG (only with a fleet file)."""
    from opsman.fleet import FleetFileError, load_fleet

    try:
        fleet = load_fleet()
    except FleetFileError as err:
        return [], str(err), False
    if fleet is None:
        return [FoundationRef(name="default", conn_id="opsman_default", dag_id=SINGLE_DAG_ID)], None, False
    return (
        [FoundationRef(f.name, f.conn_id, f.dag_id, f.expires_within) for f in fleet.foundations],
        None,
        True,
    )


def read_inputs(foundations: list[FoundationRef], with_report: bool) -> dict[str, dict[str, Any]]:
    """Per foundation, what :func:`foundation_row` needs, from Airflow's database (a handful of queries each)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    def latest_xcom(session: Any, dag_id: str, task_id: str) -> dict[str, Any] | None:
        row = session.execute(
            select(XComModel.value, XComModel.timestamp, XComModel.run_id)
            .where(XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == "return_value")
            .order_by(XComModel.timestamp.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return {
            "value": XComModel.deserialize_value(row),
            "timestamp": row.timestamp,
            "run_id": row.run_id,
            "dag_id": dag_id,
            "task_id": task_id,
        }

    out: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        for f in foundations:
            readings = []
            if with_report:
                readings.append(latest_xcom(session, REPORT_DAG_ID, f"expiry__{f.name}"))
            readings += [latest_xcom(session, f.dag_id, task_id) for task_id in READING_TASKS]
            run = session.execute(
                select(DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.end_date, DagRun.run_after)
                .where(DagRun.dag_id == f.dag_id)
                .order_by(DagRun.run_after.desc(), DagRun.id.desc())
                .limit(1)
            ).first()
            tis = []
            if run is not None:
                tis = [
                    dict(t._mapping)
                    for t in session.execute(
                        select(
                            TaskInstance.task_id,
                            TaskInstance.state,
                            TaskInstance.map_index,
                            TaskInstance.try_number,
                        ).where(TaskInstance.dag_id == f.dag_id, TaskInstance.run_id == run.run_id)
                    )
                ]
            event = session.execute(
                select(AssetEvent.timestamp, AssetEvent.extra, AssetEvent.source_run_id)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                # Only events the foundation's own DAG produced: the user was authorized for that DAG.
                .where(AssetModel.name == f.asset_name, AssetEvent.source_dag_id == f.dag_id)
                .order_by(AssetEvent.timestamp.desc())
                .limit(1)
            ).first()
            out[f.name] = {
                "readings": [r for r in readings if r],
                "run": dict(run._mapping) if run is not None else None,
                "task_instances": [
                    {**t, "state": str(getattr(t["state"], "value", t["state"]) or "")} for t in tis
                ],
                "rotation_event": dict(event._mapping) if event is not None else None,
            }
            if out[f.name]["run"]:
                state = out[f.name]["run"]["state"]
                out[f.name]["run"]["state"] = str(getattr(state, "value", state))
    return out


def page_data(user: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """The rows the user may see; the fleet problem if any; when the data was read."""
    from airflow.api_fastapi.app import get_auth_manager

    now = now or dt.datetime.now(dt.UTC)
    started = time.monotonic()
    foundations, problem, has_report = fleet_foundations()
    allowed = get_auth_manager().filter_authorized_dag_ids(
        dag_ids={f.dag_id for f in foundations} | {REPORT_DAG_ID}, user=user, method="GET"
    )
    visible = [f for f in foundations if f.dag_id in allowed]
    with_report = has_report and REPORT_DAG_ID in allowed
    inputs = read_inputs(visible, with_report=with_report)
    rows = [foundation_row(f, now=now, **inputs[f.name]) for f in visible]
    return {
        "rows": rows,
        "hidden": len(foundations) - len(visible),
        "problem": problem,
        "generated_at": iso(now),
        "report_dag_id": REPORT_DAG_ID if with_report else None,
        "read_seconds": round(time.monotonic() - started, 3),
    }


def create_app() -> FastAPI:
    app = FastAPI(title="Ops Manager certificates", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/rows")
    def rows(user: UserDep) -> dict[str, Any]:
        return page_data(user)

    @app.get("/", response_class=HTMLResponse)
    def page(user: UserDep) -> HTMLResponse:
        return HTMLResponse(render_page(page_data(user), airflow_base_path()))

    return app


def airflow_base_path() -> str:
    """The path Airflow's UI is served under ("" at the root), for links to its pages."""
    from urllib.parse import urlparse

    from airflow.configuration import conf

    return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


#: The UI shows external views in an iframe sandboxed without allow-top-navigation and allow-popups,
#: so a plain target="_top"/"_blank" link does nothing there. The frame is same-origin
#: (allow-same-origin, allow-scripts): a click is replayed on an anchor in the UI's own document,
#: which may navigate. Opened on its own (no frame), the page's links work without this.
FRAME_LINKS_JS = """
document.addEventListener("click", function (event) {
  var link = event.target.closest("a[href]");
  if (!link || window.top === window) return;
  try {
    var proxy = window.top.document.createElement("a");
    proxy.href = link.href; proxy.target = link.target; proxy.rel = "noopener";
    window.top.document.body.appendChild(proxy); proxy.click(); proxy.remove();
    event.preventDefault();
  } catch (err) { /* not same-origin: leave the link to the browser */ }
});
"""


def _link(base: str, path: str | None, text: str, cls: str = "") -> str:
    if not path:
        return escape(text)
    href = path if path.startswith("http") else base + path
    # The page lives in the UI's iframe: links to Airflow's pages replace the whole UI, not the frame.
    target = "_blank" if path.startswith("http") else "_top"
    return f'<a class="{cls}" href="{escape(href)}" target="{target}" rel="noopener">{escape(text)}</a>'


def _day(value: str | None) -> str:
    return value[:10] if value else "—"


def render_page(data: dict[str, Any], base: str = "") -> str:
    now = dt.datetime.fromisoformat(data["generated_at"].replace("Z", "+00:00"))
    body = []
    for r in data["rows"]:
        colour = STATE_COLOURS.get(r["state"], "#9e9e9e")
        rotation = r["last_rotation"]
        last = (
            f'<div class="sub">last rotated {_day(rotation["at"])}: {escape(rotation["old_ca_guid"] or "?")} → '
            f"{escape(rotation['new_ca_guid'] or '?')}</div>"
            if rotation and r["state"] != "rotated"
            else ""
        )
        detail = escape(r["state_detail"] or "")
        if r["state_link"]:
            detail = _link(base, r["state_link"], r["state_detail"] or "task log", "state-link")
        leaf = r["soonest_leaf"]
        leaf_cell = (
            f'{escape(leaf["name"])}<div class="sub">{_day(leaf["valid_until"])} ({leaf["days_left"]} d)</div>'
            if leaf
            else (
                '<span class="sub">re-issued by the rotation</span>'
                if r["state"] == "rotated"
                else f'<span class="sub">none within {escape(r["expires_within"])}</span>'
            )
        )
        days = "—" if r["days_left"] is None else f"{r['days_left']} d"
        run = r["latest_run"]
        body.append(
            f'<tr class="{"due" if r["highlight"] else ""}" data-foundation="{escape(r["foundation"])}" data-state="{r["state"]}">'
            f'<td><b>{escape(r["foundation"])}</b><div class="sub">{escape(r["conn_id"])}</div></td>'
            f'<td class="opsman">{_link(base, r["opsman_url"], r["opsman_url"] or "—", "opsman-link")}'
            f'<div class="sub">version {escape(r["opsman_version"] or "—")}</div></td>'
            f'<td class="ca"><code>{escape(r["ca_guid"] or "—")}</code><div class="sub">expires {_day(r["ca_expires_at"])}</div></td>'
            f'<td class="days">{days}<div class="sub">window {escape(r["expires_within"])} ({r["window_days"]} d)</div></td>'
            f'<td class="leaf">{leaf_cell}</td>'
            f'<td class="state"><span class="badge" style="background:{colour}">{escape(r["state_label"])}</span>'
            f'<div class="sub detail">{detail}</div>{last}</td>'
            f'<td class="links">{_link(base, r["dag_url"], "DAG", "dag-link")}'
            f"{' · ' + _link(base, run['url'], 'latest run (' + run['state'] + ')', 'run-link') if run else ''}"
            f'<div class="sub">read {escape((r["read_at"] or "never").replace("T", " "))}</div></td></tr>'
        )
    hidden = (
        f'<p class="note">{data["hidden"]} foundation(s) hidden: you may not read their DAGs.</p>'
        if data["hidden"]
        else ""
    )
    problem = f'<p class="problem">{escape(data["problem"])}</p>' if data["problem"] else ""
    refresh = (
        f"Refresh: trigger {_link(base, '/dags/' + data['report_dag_id'], data['report_dag_id'])} "
        "(reads every foundation in its own pool), then reload this page."
        if data["report_dag_id"]
        else "Refresh: run the foundation's DAG (its pre-flight reads the CAs)."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ops Manager certificates</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 16px; color: #263238; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
table {{ border-collapse: collapse; width: 100%; margin: 12px 0 20px; font-size: 14px; }}
th, td {{ text-align: left; padding: 6px 8px; border-bottom: 1px solid #e0e0e0; vertical-align: top; }}
th {{ background: #f5f7f8; font-weight: 600; }}
tr.due td {{ background: #ffebee; }}
.sub {{ color: #607d8b; font-size: 12px; margin-top: 2px; }}
.badge {{ color: #fff; border-radius: 10px; padding: 1px 9px; font-size: 12px; font-weight: 600; }}
.note, .meta {{ color: #546e7a; font-size: 13px; }} .problem {{ color: #b71c1c; font-weight: 600; }}
code {{ font-size: 12px; }} a {{ color: #1565c0; }}
</style></head><body>
<h1>Ops Manager certificates</h1>
<p class="meta" id="generated">Data as Airflow held it at {escape(data["generated_at"].replace("T", " "))} (the expiry report's
latest readings, the rotation DAGs' latest runs and the root CA Asset events; Ops Manager is never called from this page).
{refresh}</p>
{problem}{hidden}
<table id="foundations"><thead><tr><th>Foundation</th><th>Ops Manager</th><th>Active root CA</th><th>Days left</th>
<th>Soonest leaf expiry</th><th>Rotation</th><th>Links</th></tr></thead>
<tbody>{"".join(body) or '<tr><td colspan="7">No foundation you may read.</td></tr>'}</tbody></table>
<div id="timeline">{render_timeline(data["rows"], now) if data["rows"] else ""}</div>
<script>{FRAME_LINKS_JS}</script>
</body></html>"""


app = create_app()
