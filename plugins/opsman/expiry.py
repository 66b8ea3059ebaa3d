"""Expiry: is a rotation due, and what expires when (reads only).

- :func:`assess_expiry` decides from the CA list and the deployed certificates expiring within a
  window whether a foundation needs its root CA rotated, and why.
- :class:`RotationDueOperator` is the first task of a fleet rotation DAG: a scheduled run (or a
  manual one with ``only_if_due``) that finds nothing due skips every later task, with the reason
  in its log, before any write call.
- :class:`ExpiryReportOperator` is one foundation's part of the expiry report DAG.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from opsman.compat import AirflowFailException, SkipMixin
from opsman.models import CertificateAuthority, DeployedCertificate, isoformat
from opsman.operators import OpsManagerBaseOperator, as_flag, format_table, window_days

#: Run types that only rotate when due; manual runs rotate unless asked to check (``only_if_due``).
CHECKED_RUN_TYPES = ("scheduled", "backfill")
ROTATED_LEAVES = "Non-configurable leaf certificates (rotated with the root CA)"
CONFIGURABLE = "Configurable certificates (rotate in the Ops Manager UI)"
OWN_PROCEDURE = "CAs with their own procedure"


def procedure_of(cert: DeployedCertificate) -> str:
    """The procedure Ops Manager names for a certificate (2.10+), else one derived from its flags."""
    if cert.rotation_procedure_name:
        return cert.rotation_procedure_name
    if cert.configurable:
        return CONFIGURABLE
    return OWN_PROCEDURE if cert.is_ca else ROTATED_LEAVES


def rotated_by_ca_rotation(cert: DeployedCertificate) -> bool:
    """A leaf the CA rotation re-issues (the regenerate step): non-configurable and not a CA itself."""
    return not cert.configurable and not cert.is_ca


def assess_expiry(
    cas: Sequence[CertificateAuthority],
    expiring: Sequence[DeployedCertificate],
    *,
    now: dt.datetime,
    expires_within: str,
) -> dict[str, Any]:
    """Whether a rotation is due, why, and what expires within the window, grouped by procedure.

    Due when any of: the active root CA expires within the window; a leaf that the rotation
    re-issues expires within it; or there is more than one CA (a rotation was left half done; the
    rotation's planner finishes it). JSON-safe, for XCom.
    """
    deadline = now + dt.timedelta(days=window_days(expires_within))
    reasons: list[str] = []
    active = [ca for ca in cas if ca.active]
    for ca in active:
        if ca.expires_at is not None and ca.expires_at <= deadline:
            reasons.append(f"the active root CA {ca.guid} expires {isoformat(ca.expires_at)}, within {expires_within}")
    if len(cas) > 1:
        reasons.append(f"{len(cas)} CAs on Ops Manager: a rotation was started and not finished")
    if len(active) != 1:
        reasons.append(f"{len(active)} active CAs (exactly one expected): the rotation's pre-flight will report it")
    leaves = sorted((c for c in expiring if rotated_by_ca_rotation(c)), key=lambda c: (c.valid_until, c.name))
    if leaves:
        names = ", ".join(f"{c.name} ({isoformat(c.valid_until)})" for c in leaves)
        reasons.append(f"{len(leaves)} leaf certificate(s) the rotation re-issues expire within {expires_within}: {names}")
    groups: dict[str, list[dict[str, Any]]] = {}
    for cert in sorted(expiring, key=lambda c: (c.valid_until, c.name)):
        groups.setdefault(procedure_of(cert), []).append(
            {"name": cert.name, "location": cert.location, "valid_until": isoformat(cert.valid_until),
             "rotated_by_ca_rotation": rotated_by_ca_rotation(cert)}
        )
    active_expiry = min((ca.expires_at for ca in active if ca.expires_at), default=None)
    return {
        "due": bool(reasons),
        "reasons": reasons,
        "expires_within": expires_within,
        "checked_at": isoformat(now),
        "active_ca_expires_at": isoformat(active_expiry),
        "days_left": (active_expiry - now).days if active_expiry else None,
        "certificate_authorities": [
            {"guid": ca.guid, "active": ca.active, "expires_at": isoformat(ca.expires_at)} for ca in cas
        ],
        "expiring_by_procedure": groups,
    }


def format_expiry(report: dict[str, Any]) -> str:
    lines = [format_table(("CA GUID", "ACTIVE", "EXPIRES"),
                          [(c["guid"], "yes" if c["active"] else "no", c["expires_at"]) for c in report["certificate_authorities"]])]
    if not report["expiring_by_procedure"]:
        lines.append(f"No deployed certificate expires within {report['expires_within']}.")
    for procedure, certs in report["expiring_by_procedure"].items():
        lines.append(f"{procedure}: {len(certs)} expiring within {report['expires_within']}")
        lines.append(format_table(("  CERTIFICATE", "LOCATION", "VALID UNTIL"),
                                  [(f"  {c['name']}", c["location"], c["valid_until"]) for c in certs]))
    return "\n".join(lines)


class _ExpiryReader(OpsManagerBaseOperator):
    template_fields: Sequence[str] = (*OpsManagerBaseOperator.template_fields, "expires_within")

    def __init__(self, *, expires_within: str = "3m", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expires_within = expires_within

    def read_expiry(self) -> dict[str, Any]:
        window_days(self.expires_within)  # a bad window fails before any call
        cas = self.hook.list_certificate_authorities()
        expiring = self.hook.list_deployed_certificates(expires_within=self.expires_within)
        return assess_expiry(cas, expiring, now=dt.datetime.now(dt.timezone.utc), expires_within=self.expires_within)


class RotationDueOperator(_ExpiryReader, SkipMixin):
    """Rotate only when due: for scheduled runs (and manual runs with ``only_if_due``), read the CAs
    and the certificates expiring within ``expires_within``; when nothing is due, skip every task
    after this one (whatever their trigger rules) and log why. Reads only.

    :param expires_within: the window, e.g. ``3m`` (templated).
    :param only_if_due: check on a manual run too (templated). Scheduled and backfill runs always check.
    :param form: the names a run's conf may set; any other key fails the run here, before any call (a
        foundation's settings are its fleet file's, and a run must not look as if it changed one).
    """

    inherits_from_skipmixin = True
    template_fields: Sequence[str] = (*_ExpiryReader.template_fields, "only_if_due")
    ui_color = "#f6efd9"

    def __init__(self, *, only_if_due: Any = False, form: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.only_if_due = only_if_due
        self.form = form

    def execute(self, context: Context) -> dict[str, Any]:
        extra = sorted(set(getattr(context["dag_run"], "conf", None) or {}) - set(self.form or ()))
        if self.form is not None and extra:
            raise AirflowFailException(
                f"this run's conf sets {', '.join(extra)}: a foundation's settings come from its fleet file (the DAG's "
                f"docs show them); change the fleet file instead. A run can set only {', '.join(self.form)}. Nothing was done."
            )
        run_type = getattr(context["dag_run"], "run_type", None)
        run_type = str(getattr(run_type, "value", run_type))
        if run_type not in CHECKED_RUN_TYPES and not as_flag(self.only_if_due, "only_if_due"):
            self.log.info("A %s run rotates regardless of expiry (trigger with only_if_due=true to check first)", run_type)
            return {"checked": False, "due": True, "run_type": run_type}
        report = self.read_expiry()
        report.update(checked=True, run_type=run_type)
        self.log.info("Expiry on Ops Manager (window %s):\n%s", self.expires_within, format_expiry(report))
        if report["due"]:
            self.log.info("Rotation due: %s", "; ".join(report["reasons"]))
            return report
        self.log.info(
            "Rotation not due: the active root CA expires %s (%s days), after the %s window, and no certificate the "
            "rotation re-issues expires within it. Skipping the rotation; nothing was changed.",
            report["active_ca_expires_at"], report["days_left"], self.expires_within,
        )
        # skip() ends execute() by raising, so the report is pushed first.
        context["ti"].xcom_push(key="return_value", value=report)
        downstream = [t for t in context["task"].get_flat_relatives(upstream=False) if not t.is_teardown]
        self.skip(ti=context["ti"], tasks=downstream)
        return report


class ExpiryReportOperator(_ExpiryReader):
    """One foundation's expiry report: its CAs and the certificates expiring within the window,
    grouped by the rotation procedure Ops Manager names; a table in the log, JSON as XCom.

    :param foundation: the foundation's name, for the report.
    :param expires_within: the window, e.g. ``3m`` (templated).
    """

    def __init__(self, *, foundation: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.foundation = foundation

    def execute(self, context: Context) -> dict[str, Any]:
        report = self.read_expiry()
        report.update(foundation=self.foundation, conn_id=self.opsman_conn_id)
        self.log.info(
            "Foundation %s (%s), window %s: rotation %s\n%s", self.foundation, self.opsman_conn_id, self.expires_within,
            "DUE: " + "; ".join(report["reasons"]) if report["due"] else "not due", format_expiry(report),
        )
        return report
