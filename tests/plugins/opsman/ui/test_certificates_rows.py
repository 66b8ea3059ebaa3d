"""The Certificates page's row rules (pure: plain dicts in, one row out) and its timeline SVG."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from opsman.expiry import assess_expiry
from opsman.models import CertificateAuthority, DeployedCertificate
from opsman.ui.certificates_chart import render_timeline
from opsman.ui.certificates_rows import FoundationRef, foundation_row, task_log_path

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
EAST = FoundationRef("east", "opsman_east", "opsman_ca_rotation__east", "3m")


def ca(guid: str, days: float, active: bool = True) -> CertificateAuthority:
    expires = NOW + dt.timedelta(days=days)
    return CertificateAuthority(
        guid=guid,
        issuer="Pivotal",
        created_on="2024-01-01T00:00:00Z",
        expires_on=expires.isoformat().replace("+00:00", "Z"),
        active=active,
        cert_pem="",
    )


def leaf(name: str, days: float, configurable: bool = False) -> DeployedCertificate:
    """A credhub leaf whose name (its variable path) is ``name``."""
    return DeployedCertificate(
        issuer="/C=US/O=Pivotal",
        valid_from=NOW - dt.timedelta(days=300),
        valid_until=NOW + dt.timedelta(days=days),
        configurable=configurable,
        location="credhub",
        variable_path=name,
        is_ca=False,
    )


def reading(
    cas, leaves, *, checked: dt.datetime = NOW - dt.timedelta(hours=2), task_id="expiry__east", **extra
):
    """What the expiry report's task pushes (the real function, so the page follows its format)."""
    value = assess_expiry(cas, leaves, now=checked, expires_within="3m")
    value.update(foundation="east", conn_id="opsman_east", **extra)
    return {
        "value": value,
        "dag_id": "opsman_certificate_expiry_report",
        "run_id": "scheduled__1",
        "task_id": task_id,
    }


def test_a_leaf_inside_the_window_makes_it_due_with_the_soonest_leaf_and_the_ca():
    row = foundation_row(
        EAST,
        now=NOW,
        readings=[
            reading(
                [ca("ca-old", 800)],
                [leaf("diego_rep", 80), leaf("nats_server", 30), leaf("router", 60, configurable=True)],
                opsman_url="https://opsman.east",
                opsman_version="3.0.1",
            )
        ],
    )
    assert row["state"] == "due" and row["highlight"]
    assert "nats_server" in row["state_detail"]
    assert (row["ca_guid"], row["days_left"], row["ca_in_window"]) == ("ca-old", 800, False)
    assert row["ca_expires_at"].startswith((NOW + dt.timedelta(days=800)).date().isoformat())
    assert row["soonest_leaf"]["name"] == "nats_server" and row["soonest_leaf"]["days_left"] == 30
    assert [c["name"] for c in row["leaves"]] == ["nats_server", "router", "diego_rep"]
    assert (row["opsman_url"], row["opsman_version"], row["window_days"]) == (
        "https://opsman.east",
        "3.0.1",
        93,
    )
    assert row["read_at"] == "2026-12-01T10:00:00Z"


def test_nothing_expiring_is_not_due_and_the_days_count_from_now_not_from_the_reading():
    row = foundation_row(EAST, now=NOW + dt.timedelta(days=10), readings=[reading([ca("ca-1", 500)], [])])
    assert row["state"] == "not_due" and not row["highlight"]
    assert row["days_left"] == 490 and row["soonest_leaf"] is None
    assert row["state_detail"] == "root CA expires in 490 days, after the 3m window"


def test_the_newest_reading_wins_whichever_task_took_it():
    old = reading([ca("ca-1", 500)], [leaf("nats_server", 20)], checked=NOW - dt.timedelta(days=3))
    newer = reading([ca("ca-1", 500)], [], checked=NOW - dt.timedelta(hours=1), task_id="rotation_due")
    newer["dag_id"] = EAST.dag_id
    row = foundation_row(EAST, now=NOW, readings=[old, newer])
    assert row["state"] == "not_due" and row["read_from"]["task_id"] == "rotation_due"
    # A manual run's rotation_due that did not check has no CAs: not a reading.
    unchecked = {"value": {"checked": False, "due": True, "run_type": "manual"}, "task_id": "rotation_due"}
    assert foundation_row(EAST, now=NOW, readings=[old, unchecked])["read_from"]["task_id"] == "expiry__east"


def test_running_names_the_section_of_the_first_unfinished_task():
    tis = [
        {"task_id": "preflight.check_ops_manager", "state": "success"},
        {"task_id": "delete_old_ca.apply_changes", "state": None},
        {"task_id": "activate_new_ca.wait_for_apply_changes", "state": "deferred", "map_index": -1},
        {"task_id": "create_new_ca.generate_ca", "state": "success"},
    ]
    row = foundation_row(
        EAST,
        now=NOW,
        readings=[reading([ca("ca-1", 20)], [])],
        run={"run_id": "manual__1", "state": "running"},
        task_instances=tis,
    )
    assert row["state"] == "running"
    assert row["state_detail"].startswith(
        "activating the new CA (activate_new_ca.wait_for_apply_changes: deferred)"
    )
    assert (
        row["state_link"]
        == "/dags/opsman_ca_rotation__east/runs/manual__1/tasks/activate_new_ca.wait_for_apply_changes"
    )
    assert row["latest_run"] == {
        "run_id": "manual__1",
        "state": "running",
        "url": "/dags/opsman_ca_rotation__east/runs/manual__1",
    }


def test_failed_links_to_the_log_of_the_first_failed_task_not_the_upstream_failed_ones():
    tis = [
        {"task_id": "verify.verify_rotation", "state": "upstream_failed"},
        {"task_id": "regenerate_certificates.apply_changes", "state": "failed"},
        {"task_id": "preflight.check_pending_changes", "state": "failed", "map_index": -1},
    ]
    row = foundation_row(
        EAST,
        now=NOW,
        readings=[reading([ca("ca-1", 900)], [])],
        run={"run_id": "manual__2026-12-01T10:00:00+00:00", "state": "failed"},
        task_instances=tis,
    )
    assert row["state"] == "failed" and row["highlight"]
    assert row["state_detail"] == "preflight.check_pending_changes failed (pre-flight)"
    assert row["state_link"] == task_log_path(
        EAST.dag_id, "manual__2026-12-01T10:00:00+00:00", "preflight.check_pending_changes"
    )
    assert "manual__2026-12-01T10%3A00%3A00%2B00%3A00" in row["state_link"]
    assert task_log_path("d", "r", "t", 2).endswith("/tasks/t/mapped/2")


def test_a_rotation_newer_than_the_reading_shows_the_new_ca_from_its_asset_event():
    event = {
        "timestamp": NOW - dt.timedelta(minutes=5),
        "source_run_id": "manual__9",
        "extra": {
            "foundation": "east",
            "old_ca_guid": "ca-old",
            "new_ca_guid": "ca-new",
            "new_ca_expires_at": (NOW + dt.timedelta(days=1460)).isoformat(),
        },
    }
    row = foundation_row(
        EAST,
        now=NOW,
        readings=[reading([ca("ca-old", 20)], [leaf("nats_server", 30)])],
        run={"run_id": "manual__9", "state": "success"},
        rotation_event=event,
    )
    assert row["state"] == "rotated" and not row["highlight"]
    assert row["state_detail"] == "ca-old → ca-new"
    assert (row["ca_guid"], row["days_left"], row["leaves"]) == ("ca-new", 1460, [])
    assert row["last_rotation"]["at"] == "2026-12-01T11:55:00Z"
    # A reading after the rotation is the truth again; the rotation stays as "last rotated".
    later = reading([ca("ca-new", 1459)], [], checked=NOW - dt.timedelta(minutes=1))
    row = foundation_row(EAST, now=NOW, readings=[later], rotation_event=event)
    assert row["state"] == "not_due" and row["last_rotation"]["new_ca_guid"] == "ca-new"


def test_a_root_ca_inside_the_window_is_highlighted_and_no_data_says_how_to_get_it():
    row = foundation_row(EAST, now=NOW, readings=[reading([ca("ca-1", 40)], [])])
    assert row["state"] == "due" and row["ca_in_window"] and "the active root CA ca-1" in row["state_detail"]
    empty = foundation_row(EAST, now=NOW)
    assert empty["state"] == "unknown" and "trigger the expiry report" in empty["state_detail"]
    assert empty["ca_guid"] is None and empty["latest_run"] is None


def test_the_timeline_is_valid_svg_with_a_lane_per_foundation_and_the_due_one_highlighted():
    due = foundation_row(EAST, now=NOW, readings=[reading([ca("ca-old", 800)], [leaf("nats_server", 30)])])
    calm = foundation_row(
        FoundationRef("west", "opsman_west", "opsman_ca_rotation__west", "6m"),
        now=NOW,
        readings=[reading([ca("ca-w", 1000)], [])],
    )
    svg = ET.fromstring(render_timeline([due, calm], NOW))
    ns = {"s": "http://www.w3.org/2000/svg"}
    lanes = svg.findall("s:g", ns)
    assert [(g.get("data-foundation"), g.get("class")) for g in lanes] == [
        ("east", "lane due"),
        ("west", "lane"),
    ]
    assert len(lanes[0].findall("s:circle", ns)) == 1 and not lanes[1].findall("s:circle", ns)
    windows = [float(g.find("s:rect[@class='window']", ns).get("width")) for g in lanes]
    assert windows[1] > windows[0] * 1.8  # 6m is about twice 3m on the same axis
    assert "today 2026-12-01" in "".join(svg.itertext())


def test_a_preflight_reading_newer_than_the_report_updates_the_ca_but_keeps_the_reports_leaves_and_url():
    report = reading(
        [ca("ca-1", 500)], [leaf("nats_server", 30)], opsman_url="https://opsman.east", opsman_version="3.0.1"
    )
    preflight = {
        "dag_id": EAST.dag_id,
        "run_id": "manual__1",
        "task_id": "preflight.check_ops_manager",
        "timestamp": NOW - dt.timedelta(minutes=1),
        "value": {
            "certificate_authorities": [
                ca("ca-1", 500, active=False).summary() | {"active": True},
                ca("ca-2", 1400, active=False).summary(),
            ],
            "expiring_certificates": ["nats_server"],
            "installation_watermark": 3,
        },
    }
    row = foundation_row(EAST, now=NOW, readings=[report, preflight])
    assert row["read_from"]["task_id"] == "preflight.check_ops_manager" and row["ca_count"] == 2
    assert (row["ca_guid"], row["days_left"]) == ("ca-1", 500)
    assert row["soonest_leaf"]["name"] == "nats_server" and row["opsman_url"] == "https://opsman.east"
    assert row["state"] == "due"
    # Without the report: two CAs alone make it due (a rotation left half done).
    row = foundation_row(EAST, now=NOW, readings=[preflight])
    assert row["state"] == "due" and row["state_detail"] == "2 CAs: a rotation was started and not finished"
    assert row["opsman_url"] is None and row["soonest_leaf"] is None


def test_names_from_ops_manager_are_escaped_in_the_page_and_the_chart():
    from opsman.ui.certificates_app import render_page

    evil = '<script>alert("x")</script>'
    row = foundation_row(
        EAST,
        now=NOW,
        readings=[reading([ca("ca-1", 800)], [leaf(evil, 30)], opsman_url='https://opsman.east/"><b>')],
    )
    html = render_page(
        {
            "rows": [row],
            "hidden": 0,
            "problem": None,
            "generated_at": "2026-12-01T12:00:00Z",
            "report_dag_id": "opsman_certificate_expiry_report",
        }
    )
    assert evil not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert '"><b>' not in html
    ET.fromstring(render_timeline([row], NOW))  # still well-formed XML
