"""Browser test: the Certificates page on a local Airflow running a fleet of three simulated foundations.

- ``east`` is due: a fresh simulator's ``nats_server`` leaf expires in about 30 days (window 3m);
- ``west`` was rotated: its rotation DAG ran to success and emitted the root CA Asset event;
- ``lab`` failed: its simulator has a staged change of another product, so the rotation's pre-flight
  refuses (``preflight.check_pending_changes``, no retry).

The expiry report ran first, so every row's CA, leaf, Ops Manager URL and version come from the
report's XCom, and west's new CA from its Asset event. The test logs in, opens the page from Airflow's
navigation, checks every row against the simulators' own state (``/_simulator/state``), follows the
failed row's link to the task log, checks that a user who may read only east's DAG sees only east
(the API server runs :mod:`restricted_auth_manager`: SimpleAuthManager with per-user DAG lists),
then starts east's rotation and sees its row "running" in the section the run is in, and saves screenshots of the page and of its chart under
``$OPSMAN_ARTIFACTS/certificates`` (default ``.run/artifacts/certificates``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import statistics
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from support import SIM_PASSWORD, SIM_USER, connection_json
from system_support import REPO, missing
from system_support import airflow_stack as stack

from opsman.ui.certificates_rows import SECTION_LABELS
from opsman_simulator.process import SimulatorProcess

pytestmark = [pytest.mark.browser, pytest.mark.system]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("OPSMAN_ARTIFACTS", REPO / ".run" / "artifacts")) / "certificates"
COMPONENTS = ["api-server", "scheduler", "dag-processor", "triggerer"]
STOP_ORDER = ["scheduler", "triggerer", "dag-processor", "api-server"]
REPORT = "opsman_certificate_expiry_report"
FOUNDATIONS = ("east", "west", "lab")
CF_PRODUCT = "cf-0f1e2d3c4b5a69788796"
VIEWER_PASSWORD = "east-viewer-password"


def dag_id(name: str) -> str:
    return f"opsman_ca_rotation__{name}"


@pytest.fixture(scope="module")
def fleet_airflow(tmp_path_factory):
    with fleet_stack(tmp_path_factory.mktemp("certificates")) as running:
        yield running


@contextmanager
def fleet_stack(root: Path):
    """A local Airflow (SQLite + LocalExecutor, every component) on a fleet file of three simulators."""
    sims = {
        name: SimulatorProcess(
            root / f"sim-{name}", apply_seconds=1.0, username=SIM_USER, password=SIM_PASSWORD
        ).start()
        for name in FOUNDATIONS
    }
    home = root / "airflow"
    home.mkdir()
    try:
        fleet = root / "foundations.yaml"
        fleet.write_text(
            yaml.safe_dump(
                {
                    "report": {"schedule": None},
                    "foundations": [
                        {
                            "name": n,
                            "conn_id": f"opsman_{n}",
                            "schedule": None,
                            "poll_interval_seconds": 1,
                            "apply_changes": {"initial": False},
                        }
                        for n in FOUNDATIONS
                    ],
                }
            )
        )
        port = stack.free_port()
        values = stack.load_or_create_secrets(home)
        passwords = stack.write_passwords_file(home, values["admin_password"])
        passwords.write_text(json.dumps({"admin": values["admin_password"], "east_viewer": VIEWER_PASSWORD}))
        env = stack.base_env(home, port, values)
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                "OPSMAN_FLEET_FILE": str(fleet),
                # A user who may read only east's DAG (and the report): SimpleAuthManager has roles only.
                "AIRFLOW__CORE__AUTH_MANAGER": "restricted_auth_manager.DagListAuthManager",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,east_viewer:viewer",
                "OPSMAN_TEST_DAG_ACCESS": json.dumps({"east_viewer": [dag_id("east"), REPORT]}),
                "PYTHONPATH": os.pathsep.join(
                    [str(REPO / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
                **{f"AIRFLOW_CONN_OPSMAN_{n.upper()}": connection_json(s) for n, s in sims.items()},
            }
        )
        stack.prepare_database(home, env)
        stack.start_components(home, port, env)
        api = stack.Api(f"http://127.0.0.1:{port}", "admin", values["admin_password"])
        for dag in (REPORT, *map(dag_id, FOUNDATIONS)):
            stack.wait_ready(api, home, COMPONENTS, timeout=300, dag_id=dag)
        yield {"api": api, "url": api.url, "password": values["admin_password"], "sims": sims, "home": home}
    finally:
        stack.stop(home, STOP_ORDER)
        for sim in sims.values():
            sim.stop()


def run_to_end(api, dag: str, conf: dict, timeout: float = 420) -> tuple[str, str]:
    now = dt.datetime.now(dt.UTC).isoformat()
    run_id = api.request("POST", f"/api/v2/dags/{dag}/dagRuns", {"logical_date": now, "conf": conf})[
        "dag_run_id"
    ]
    return run_id, wait(api, dag, run_id, timeout)


def wait(api, dag: str, run_id: str, timeout: float = 420) -> str:
    deadline = time.monotonic() + timeout
    while (state := api.request("GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}")["state"]) not in (
        "success",
        "failed",
    ):
        assert time.monotonic() < deadline, f"{dag} {run_id} still {state} after {timeout} s"
        time.sleep(2)
    return state


def active_ca(sim) -> dict:
    return next(ca for ca in sim.state()["certificate_authorities"] if ca["active"])


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and shutil.which("chromium")):
        missing("Debian's chromium is not installed (apt-get install chromium; ./dev system-deps)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (it is in the dev extra: ./dev setup)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_the_certificates_page_shows_the_fleet_as_the_simulators_have_it(fleet_airflow, browser):
    api, url, sims = fleet_airflow["api"], fleet_airflow["url"], fleet_airflow["sims"]
    # lab: a staged change of another product; the rotation refuses to deploy it along.
    sims["lab"].faults(stage_pending_change={"product_guid": CF_PRODUCT, "action": "update"})
    old_west = active_ca(sims["west"])["guid"]

    report_run, state = run_to_end(api, REPORT, {})
    assert state == "success"
    now = dt.datetime.now(dt.UTC).isoformat()
    runs = {
        n: api.request("POST", f"/api/v2/dags/{dag_id(n)}/dagRuns", {"logical_date": now, "conf": {}})[
            "dag_run_id"
        ]
        for n in ("west", "lab")
    }
    assert wait(api, dag_id("lab"), runs["lab"]) == "failed"
    assert wait(api, dag_id("west"), runs["west"]) == "success"
    new_west = active_ca(sims["west"])["guid"]
    assert new_west != old_west

    # How long the page takes to answer (the API server reads the DB; no Ops Manager call).
    timings = []
    for _ in range(5):
        req = urllib.request.Request(
            f"{url}/opsman-certificates/", headers={"Authorization": f"Bearer {api.token()}"}
        )
        started = time.monotonic()
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200 and b'id="foundations"' in resp.read()
        timings.append(time.monotonic() - started)
    anonymous = urllib.request.Request(f"{url}/opsman-certificates/rows")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=30)
    assert refused.value.code == 401
    # On the real API server, a user without access to west's and lab's DAGs sees only east.
    viewer = stack.Api(url, "east_viewer", VIEWER_PASSWORD)
    seen = viewer.request("GET", "/opsman-certificates/rows")
    assert [r["foundation"] for r in seen["rows"]] == ["east"] and seen["hidden"] == 2
    assert seen["rows"][0]["state"] == "due"
    print(
        json.dumps(
            {
                "page_seconds_median": round(statistics.median(timings), 3),
                "page_seconds_max": round(max(timings), 3),
            }
        )
    )

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        page.goto(f"{url}/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", fleet_airflow["password"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))

        # Reachable from Airflow's navigation: Browse → Certificates.
        page.get_by_role("button", name=re.compile("Browse", re.I)).click()
        page.get_by_role("menuitem", name="Certificates").click()
        page.wait_for_url(re.compile(r"/plugin/opsman-certificates"))
        print("iframe src:", page.locator("iframe").first.get_attribute("src"))
        frame = page.frame_locator("iframe").first
        table = frame.locator("#foundations")
        table.wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "01-certificates-in-airflow.png"), full_page=True)

        rows = {n: frame.locator(f'tr[data-foundation="{n}"]') for n in FOUNDATIONS}
        states = {n: rows[n].get_attribute("data-state") for n in FOUNDATIONS}
        assert states == {"east": "due", "west": "rotated", "lab": "failed"}

        for name, sim in sims.items():
            row = rows[name]
            ca = active_ca(sim)
            assert ca["guid"] in row.locator("td.ca").inner_text()
            assert ca["expires_at"][:10] in row.locator("td.ca").inner_text()
            days = (
                dt.datetime.fromisoformat(ca["expires_at"].replace("Z", "+00:00")) - dt.datetime.now(dt.UTC)
            ).days
            assert re.search(rf"\b({days}|{days - 1}) d\b", row.locator("td.days").inner_text())
            assert "window 3m (93 d)" in row.locator("td.days").inner_text()
            assert row.locator("a.opsman-link").get_attribute("href") == sim.url
            assert "version 2.9.13-build.165" in row.locator("td.opsman").inner_text()
            assert (
                row.locator("a.dag-link").get_attribute("href") == f"/dags/{dag_id(name)}"
            )  # Airflow at the root

        # east: due because of its soonest leaf, which is the simulator's soonest non-configurable leaf.
        leaves = [
            leaf for leaf in sims["east"].state()["leaves"] if not leaf["configurable"] and not leaf["is_ca"]
        ]
        soonest = min(leaves, key=lambda leaf: leaf["valid_until"])
        leaf_text = rows["east"].locator("td.leaf").inner_text()
        assert soonest["variable_path"] in leaf_text and soonest["valid_until"][:10] in leaf_text
        assert rows["east"].get_attribute("class") == "due" and rows["west"].get_attribute("class") == ""
        # west: rotated, old → new from the Asset event, its latest run linked.
        assert f"{old_west} → {new_west}" in rows["west"].locator("td.state").inner_text()
        assert (
            rows["west"].locator("a.run-link").get_attribute("href")
            == f"/dags/{dag_id('west')}/runs/{quote(runs['west'], safe='')}"
        )
        # lab: failed, linked to the failed task's log; the CA is untouched.
        assert "preflight.check_pending_changes failed" in rows["lab"].locator("td.state").inner_text()
        timeline = frame.locator("#timeline svg")
        assert timeline.locator("g.lane.due").count() == 2  # east (due) and lab (failed)
        assert timeline.locator('g[data-foundation="west"]').get_attribute("class") == "lane"
        timeline.screenshot(path=str(ARTIFACTS / "02-timeline.png"))
        frame.locator("body").screenshot(path=str(ARTIFACTS / "03-certificates-page.png"))

        # Follow the failed row's link: the task's log in Airflow, with the reason.
        link = rows["lab"].locator("a.state-link")
        assert link.get_attribute("target") == "_top"
        link.click()
        page.wait_for_url(
            re.compile(rf"/dags/{dag_id('lab')}/runs/.+/tasks/preflight\.check_pending_changes")
        )
        page.get_by_text(
            re.compile("staged changes that an Apply Changes of this rotation would deploy")
        ).first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "04-failed-task-log.png"), full_page=True)

        # Running: east's rotation waits for an Apply Changes that takes 10 minutes; the row names the
        # section from the run's task states while the simulator has that installation running.
        sims["east"].faults(apply_seconds=600)
        now = dt.datetime.now(dt.UTC).isoformat()
        east_run = api.request(
            "POST", f"/api/v2/dags/{dag_id('east')}/dagRuns", {"logical_date": now, "conf": {}}
        )["dag_run_id"]
        deadline = time.monotonic() + 300
        while True:
            east = next(
                r
                for r in api.request("GET", "/opsman-certificates/rows")["rows"]
                if r["foundation"] == "east"
            )
            # A wait task also runs briefly when its Apply Changes found nothing to start (one that
            # succeeded after the plan's watermark): wait for the moment Ops Manager really installs.
            installing = sims["east"].state()["installations"][0]["status"] == "running"
            if (
                installing
                and east["state"] == "running"
                and "wait_for_apply_changes" in (east["state_detail"] or "")
            ):
                break
            assert time.monotonic() < deadline, f"east never reached a running Apply Changes wait: {east}"
            time.sleep(2)
        tis = api.request(
            "GET", f"/api/v2/dags/{dag_id('east')}/dagRuns/{quote(east_run, safe='')}/taskInstances"
        )
        waiting = [
            t["task_id"]
            for t in tis["task_instances"]
            if t["task_id"].endswith(".wait_for_apply_changes")
            and t["state"] in ("running", "deferred", "up_for_reschedule")
        ]
        assert len(waiting) == 1, tis
        section = SECTION_LABELS[waiting[0].split(".")[0]]
        assert east["state_detail"].startswith(f"{section} ({waiting[0]}: "), (east, waiting)
        page.goto(f"{url}/plugin/opsman-certificates")
        row = page.frame_locator("iframe").first.locator('tr[data-foundation="east"]')
        row.wait_for()
        assert row.get_attribute("data-state") == "running"
        assert section in row.locator("td.state").inner_text()
        page.screenshot(path=str(ARTIFACTS / "05-running.png"), full_page=True)
    finally:
        page.screenshot(path=str(ARTIFACTS / "last-page.png"), full_page=True)
        context.close()
