"""Browser test: the rotation as a user does it in the Airflow UI, in Debian's chromium via Playwright.

Log in, open the DAG's trigger form, check that our Params are there with their titles and
descriptions (read from the DAG through the REST API, so the test follows the DAG), set the poll
interval, trigger, wait for success, open a sensor's task log (installation log lines) and an
extra link. Screenshots go to ``$OPSMAN_ARTIFACTS`` (default ``.run/artifacts/browser``).

The browser is Debian's ``chromium`` (apt) started through ``executable_path``: never a browser
downloaded by ``playwright install``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from system_support import DAG_ID, REPO, SENSORS, missing

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
ARTIFACTS = Path(os.environ.get("OPSMAN_ARTIFACTS", REPO / ".run" / "artifacts")) / "browser"


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and shutil.which("chromium")):
        missing("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
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


@pytest.fixture
def page(browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, ignore_https_errors=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        try:  # the last state of the page, whatever happened (overwritten by each test)
            page.screenshot(path=str(ARTIFACTS / "last-page.png"), full_page=True)
        finally:
            context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_rotation_from_the_ui(local_airflow, page):
    url = local_airflow.url
    local_airflow.reset_simulator()
    params = local_airflow.api.request("GET", f"/api/v2/dags/{DAG_ID}/details")["params"]
    assert {"opsman_conn_id", "poll_interval_seconds"} <= set(params)

    # 1. Log in (simple auth manager).
    page.goto(f"{url}/")
    page.fill("input[name=username]", local_airflow.username)
    page.fill("input[name=password]", local_airflow.password)
    shot(page, "01-login")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))

    # 2. The DAG and its trigger form, every section opened.
    page.goto(f"{url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    by_section: dict[str, list[str]] = {}
    for name, param in params.items():
        by_section.setdefault(param["schema"].get("section") or "", []).append(name)
    dialog.locator('[name="element_opsman_conn_id"]').wait_for(state="attached")
    for section, names in by_section.items():
        if section:  # sections are accordion items; open each one (the form may keep only one open)
            trigger = dialog.locator(f'[id$=":trigger:{section}"]')
            if trigger.get_attribute("aria-expanded") != "true":
                trigger.click()
            content = dialog.locator(f'[id$=":content:{section}"]')
            content.wait_for()
            page.wait_for_timeout(300)
        else:
            content = dialog
        text = content.inner_text()
        assert dialog.locator('[name="element_opsman_conn_id"]').count() == 1
        shot(page, f"02-trigger-form-{section or 'params'}".replace(" ", "-"))
        for name in names:
            param = params[name]
            title = param["schema"].get("title")
            if title:
                assert title in text, f"Param {name}: title {title!r} not shown in section {section!r}"
            if param.get("description"):
                assert param["description"] in text, (
                    f"Param {name}: description not shown in section {section!r}"
                )

    # 3. Trigger with a 1 s poll interval (the simulator's Apply Changes takes 1 s).
    section = params["poll_interval_seconds"]["schema"].get("section")
    if section and dialog.locator(f'[id$=":trigger:{section}"]').get_attribute("aria-expanded") != "true":
        dialog.locator(f'[id$=":trigger:{section}"]').click()
    poll = dialog.locator('[id="number-input:element_poll_interval_seconds:inc"]').get_attribute(
        "aria-controls"
    )
    poll_input = dialog.locator(f'[id="{poll}"]')
    poll_input.fill("1")
    poll_input.press("Tab")
    run_id = f"ui_{uuid.uuid4().hex[:8]}"
    advanced = dialog.locator('[id$=":trigger:advancedOptions"]')
    if advanced.get_attribute("aria-expanded") != "true":
        advanced.click()
    dialog.locator('input[name="dagRunId"]').fill(run_id)
    shot(page, "03-trigger-filled")
    started = time.monotonic()
    dialog.get_by_test_id("trigger-dag-submit").click()
    dialog.wait_for(state="hidden")

    # 4. Wait for the run to succeed; the run's conf came from the form.
    state = local_airflow.wait_for_run(run_id)
    print(f"UI-triggered run {run_id}: {state} in {time.monotonic() - started:.1f} s")
    assert state == "success"
    run = local_airflow.api.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    assert run["conf"]["poll_interval_seconds"] == 1
    page.goto(f"{url}/dags/{DAG_ID}/runs/{run_id}")
    page.get_by_text("success").first.wait_for()
    shot(page, "04-run-succeeded")

    # 5. A sensor's task log shows Ops Manager's installation log lines.
    sensor = SENSORS[-1]
    page.goto(f"{url}/dags/{DAG_ID}/runs/{run_id}/tasks/{sensor}")
    page.get_by_text(re.compile(r"\[installation \d+\]")).first.wait_for(timeout=60_000)
    shot(page, "05-sensor-log")

    # 6. An extra link: the Apply Changes task's link to the installation in Ops Manager.
    links = local_airflow.links(run_id, "delete_old_ca.apply_changes")
    if "Ops Manager installation" not in links:
        pytest.skip(
            "OpsManagerInstallationLink is not wired on ApplyChangesOperator yet (operator_extra_links)"
        )
    page.goto(f"{url}/dags/{DAG_ID}/runs/{run_id}/tasks/delete_old_ca.apply_changes/details")
    link = page.get_by_role("link", name="Ops Manager installation")
    link.wait_for()
    link.scroll_into_view_if_needed()
    shot(page, "06-extra-link")
    expected = links["Ops Manager installation"]
    assert link.get_attribute("href") == expected
    assert expected.startswith(local_airflow.info["simulator_url"] + "/installation_logs/")
    if link.get_attribute("target") == "_blank":
        with page.context.expect_page() as new_page:
            link.click()
        target = new_page.value
    else:
        link.click()
        target = page
    target.wait_for_url(expected)
    target.screenshot(path=str(ARTIFACTS / "07-extra-link-target.png"))


def test_approve_a_step_in_the_ui(local_airflow, page):
    """Change control: the approval page of a step (what will happen, the CAs, the plan), approved by clicking."""
    from approval_support import ACTIVATE, start_rotation, wait_for_approval_request

    url = local_airflow.url
    sim, old_guid, _, run_id = start_rotation(
        local_airflow, {"approve_before": ["activate_ca"]}, "ui_approve"
    )
    page.goto(f"{url}/")
    page.fill("input[name=username]", local_airflow.username)
    page.fill("input[name=password]", local_airflow.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))

    wait_for_approval_request(local_airflow, run_id, ACTIVATE)
    (new_guid,) = set(sim.cas()) - {old_guid}
    page.goto(f"{url}/dags/{DAG_ID}/runs/{run_id}/tasks/{ACTIVATE}/required_actions")
    page.get_by_text("Activate the new CA").first.wait_for()
    page.get_by_text(new_guid).first.wait_for()
    approve = page.get_by_role("button", name="Approve")
    approve.scroll_into_view_if_needed()
    page.set_viewport_size({"width": 1400, "height": 1400})  # the whole page, the answer buttons included
    shot(page, "08-approval-page")
    approve.click()

    assert local_airflow.wait_for_run(run_id) == "success"
    record = local_airflow.xcom(run_id, ACTIVATE)
    assert record["decision"] == "approved" and record["by"]["name"] == local_airflow.username
    assert sim.cas() == {new_guid: True}
    page.goto(f"{url}/dags/{DAG_ID}/runs/{run_id}/tasks/{ACTIVATE}/required_actions")
    page.get_by_text(re.compile("Approval Received|Response received", re.I)).first.wait_for()
    shot(page, "09-approval-answered")
