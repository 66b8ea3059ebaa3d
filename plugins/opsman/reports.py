"""What a run reports at its end: the rotation's summary, and the fleet's expiry table.

- :class:`RotationSummaryOperator` is the last task of a rotation DAG: the two CAs, each Apply Changes
  the run waited for and who approved which step; on a foundation of the fleet file, the root-CA
  Asset event.
- :class:`FleetReportOperator` is the last task of the expiry report DAG: one table for the fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator, Context

from opsman.compat import AirflowSkipException
from opsman.models import isoformat
from opsman.operators import OpsManagerBaseOperator
from opsman.values import as_flag, format_table


class RotationSummaryOperator(OpsManagerBaseOperator):
    """What the rotation did: the old and the new CA, each Apply Changes it waited for with its
    duration, and the answers to its approvals; a table in the log, JSON as XCom. Reads only.

    A rejected approval (:mod:`opsman.approvals`) stopped the rotation: the summary says where and how
    to resume, returns ``stopped_before``, and ends skipped (no Asset event, no success notification).

    :param old_ca_guid: the CA the rotation moved from (templated; usually an XCom).
    :param new_ca_guid: the CA the rotation moved to (templated; usually an XCom).
    :param installations: the installation each Apply Changes wait ended with, by step (templated;
        usually the waits' XComs). A step whose wait found nothing to do maps to None.
    :param approvals: the approval tasks' XComs, in procedure order (templated; None where a task
        asked nothing).
    :param dry_run: a dry run rotates nothing (templated).
    :param foundation: the fleet foundation's name: then a successful run emits an event of ``asset``
        (an outlet of this task) and a dry run is skipped, so no Asset event and no success
        notification announce a rotation that did not happen.
    """

    template_fields: Sequence[str] = (
        *OpsManagerBaseOperator.template_fields,
        "old_ca_guid",
        "new_ca_guid",
        "installations",
        "approvals",
        "dry_run",
    )

    def __init__(
        self,
        *,
        old_ca_guid: Any,
        new_ca_guid: Any,
        installations: Mapping[str, Any],
        approvals: Sequence[Any] = (),
        dry_run: Any = False,
        foundation: str | None = None,
        asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(outlets=[asset] if asset else [], **kwargs)
        self.old_ca_guid = old_ca_guid
        self.new_ca_guid = new_ca_guid
        self.installations = installations
        self.approvals = approvals
        self.dry_run = dry_run
        self.foundation = foundation
        self.asset = asset

    def execute(self, context: Context) -> dict[str, Any]:
        if self.asset is not None and as_flag(self.dry_run, "dry_run"):
            raise AirflowSkipException(
                "dry run: nothing was rotated, so no Asset event and no success notification"
            )
        known = {i.id: i for i in self.hook.list_installations()}
        report: dict[str, Any] = {
            "old_ca_guid": self.old_ca_guid,
            "new_ca_guid": self.new_ca_guid,
            "installations": {
                step: known[i].summary() if i in known else None for step, i in self.installations.items()
            },
        }
        lines = [f"Root CA: {self.old_ca_guid or '(already deleted)'} -> {self.new_ca_guid} (active)"]
        for step, info in report["installations"].items():
            done = (
                f"installation {info['id']}: {info['status']}, {info['duration_seconds']} s"
                if info
                else "not needed"
            )
            lines.append(f"  {step:<24} {done}")
        stopped = self.add_approvals(report, lines) if self.approvals else ""
        if stopped:
            self.log.info("%s", "\n".join(lines))
            # A skip pushes no return value: the report goes to XCom first.
            context["ti"].xcom_push(key="return_value", value=report)
            raise AirflowSkipException(stopped)
        if self.asset is not None:
            new_ca = next(
                (ca for ca in self.hook.list_certificate_authorities() if ca.guid == self.new_ca_guid), None
            )
            event = {
                "foundation": self.foundation,
                "old_ca_guid": self.old_ca_guid,
                "new_ca_guid": self.new_ca_guid,
                "new_ca_expires_at": isoformat(new_ca.expires_at) if new_ca else None,
            }
            if report.get("approvals"):
                event["approvals"] = report["approvals"]
            context["outlet_events"][self.asset].extra = event
            report["asset_event"] = event
            lines.append(f"Asset event {self.asset.name}: {event}")
        self.log.info("%s", "\n".join(lines))
        return report

    def add_approvals(self, report: dict[str, Any], lines: list[str]) -> str:
        """Who approved which step, into the report and its lines; when a rejection stopped the
        rotation, where and how to resume (returned, empty otherwise)."""
        from opsman.approvals import REJECTED, answers, describe, resume_hint  # only DAGs that can ask

        approvals = answers(self.approvals)
        if not approvals:
            return ""
        report["approvals"] = approvals
        lines += ["Approvals:", *(f"  {describe(a)}" for a in approvals)]
        stopped = next((a for a in approvals if a["decision"] == REJECTED), None)
        if stopped is None:
            return ""
        report["stopped_before"] = stopped["step"]
        lines[0] = f"Rotation stopped: root CA {self.old_ca_guid or '-'}, new CA {self.new_ca_guid or 'none'}"
        lines.append(resume_hint(stopped))
        return resume_hint(stopped)


class FleetReportOperator(BaseOperator):
    """One table for the fleet, soonest expiry first; the whole report as JSON in XCom. Reads only
    XComs: a foundation whose report task failed is listed as missing.

    :param reports: each foundation's report (templated; the report tasks' XComs, None where one failed).
    :param foundations: the fleet's foundation names.
    """

    template_fields: Sequence[str] = ("reports",)

    def __init__(self, *, reports: Sequence[Any], foundations: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reports = reports
        self.foundations = foundations

    def execute(self, context: Context) -> dict[str, Any]:
        reports = sorted((r for r in self.reports if r), key=lambda r: r["active_ca_expires_at"] or "")
        missing = sorted(set(self.foundations) - {r["foundation"] for r in reports})
        rows = [
            (
                r["foundation"],
                r["conn_id"],
                r["active_ca_expires_at"],
                r["days_left"],
                r["expires_within"],
                sum(len(c) for c in r["expiring_by_procedure"].values()),
                "DUE" if r["due"] else "no",
            )
            for r in reports
        ]
        lines = [
            format_table(
                ("FOUNDATION", "CONNECTION", "ROOT CA EXPIRES", "DAYS", "WINDOW", "EXPIRING", "ROTATE"), rows
            ),
            *(f"{name}: no report (its task failed; see its log)" for name in missing),
        ]
        self.log.info("%s", "\n".join(lines))
        return {"foundations": reports, "missing": missing}
