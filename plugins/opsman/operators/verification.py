"""Verification: prove the rotation from what Ops Manager shows after it (the verdicts are in
:mod:`opsman.verdicts`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from opsman.compat import AirflowFailException, AirflowSkipException
from opsman.constants import DEFAULT_WINDOW
from opsman.exceptions import OpsManagerApiError, OpsManagerNotFoundError, OpsManagerPermissionError
from opsman.links import OpsManagerCertificatesLink
from opsman.models import DeployedCertificate, isoformat
from opsman.operators.base import OpsManagerBaseOperator
from opsman.values import as_flag, format_table
from opsman.verdicts import (
    SIGNED_BY_NEW_CA,
    listed_ca,
    new_ca_problems,
    own_procedure,
    signer_by_issue_time,
    signer_by_key_identifier,
)

BY_KEY_IDENTIFIER, BY_ISSUE_TIME = "key identifier", "issue time"
NO_PEM_IN_CREDHUB = "CredHub: no PEM in the Ops Manager API"


def _refusal(err: OpsManagerApiError) -> str:
    return (
        f"PEM read refused: HTTP {err.status}" if err.status == 403 else f"PEM not found: HTTP {err.status}"
    )


class VerifyRotationOperator(OpsManagerBaseOperator):
    """Prove the rotation: one CA left, the new one, active and not expiring soon; every rotated leaf
    chains to it and none to the old CA.

    Leaves whose PEM the Ops Manager API serves (``location: ops_manager``) are checked by key
    identifiers: the leaf's authority key identifier against the CAs' subject key identifiers.
    CredHub leaves have no PEM in the Ops Manager API, and a restricted role may not read PEMs (403),
    nor does every Ops Manager serve every reference (404): those are checked by issue time (issued
    after the new CA was made); each row says how it was checked and why, and ``checked_by`` counts
    both. Certificates with their own procedure (CAs such as the Services TLS CA, configurable ones)
    are listed as excluded.

    :param new_ca_guid: the CA the rotation moved to (templated).
    :param old_ca_key_id: the old CA's subject key identifier, hex (templated).
    :param expires_within: the new CA must not expire within this window (templated).
    """

    operator_extra_links = (OpsManagerCertificatesLink(),)
    template_fields: Sequence[str] = (
        *OpsManagerBaseOperator.template_fields,
        "new_ca_guid",
        "old_ca_key_id",
        "expires_within",
        "dry_run",
    )

    def __init__(
        self,
        *,
        new_ca_guid: Any,
        old_ca_key_id: Any = None,
        expires_within: str = DEFAULT_WINDOW,
        dry_run: Any = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.new_ca_guid = new_ca_guid
        self.old_ca_key_id = old_ca_key_id
        self.expires_within = expires_within
        self.dry_run = dry_run

    def _pem(self, cert: DeployedCertificate, refused: str | None) -> tuple[str | None, str]:
        """The certificate's PEM, or None and why not (a restricted role's 403, a 404): then its issue time decides."""
        if refused is not None:
            return None, refused
        try:
            return self.hook.get_deployed_certificate_pem(cert.product_guid, cert.property_reference), ""
        except (OpsManagerPermissionError, OpsManagerNotFoundError) as err:
            self.log.info("Cannot read the PEM of %s (%s); checking it by issue time", cert.name, err)
            return None, _refusal(err)

    def _certificate_rows(
        self, new_ca_key_id: str | None, new_ca_made: dt.datetime | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """One row per certificate the rotation re-issued, saying which CA signed it and how that was
        told; and the certificates excluded (their own procedure)."""
        rows, excluded = [], []
        refused: str | None = None  # after one 403 every credential read of this role is refused: stop asking
        for cert in self.hook.list_deployed_certificates():
            procedure = own_procedure(cert)
            if procedure is not None:
                excluded.append({"certificate": cert.name, "procedure": procedure})
                continue
            pem, why_not = None, NO_PEM_IN_CREDHUB
            if cert.location == "ops_manager" and cert.product_guid and cert.property_reference:
                pem, why_not = self._pem(cert, refused)
                if pem is None and why_not.startswith("PEM read refused"):
                    refused = why_not
            if pem is not None:
                signer = signer_by_key_identifier(pem, new_ca_key_id, self.old_ca_key_id)
                how = BY_KEY_IDENTIFIER
            else:
                signer = signer_by_issue_time(cert.valid_from, new_ca_made)
                how = f"{BY_ISSUE_TIME} ({why_not})"
            rows.append(
                {
                    "certificate": cert.name,
                    "location": cert.location,
                    "valid_until": isoformat(cert.valid_until),
                    "signed_by": signer,
                    "checked_by": how,
                }
            )
        return rows, excluded

    def execute(self, context: Context) -> dict[str, Any]:
        if as_flag(self.dry_run, "dry_run"):
            raise AirflowSkipException("dry run: nothing was rotated, nothing to verify")
        cas = self.authorities()
        new_ca = listed_ca(cas, self.new_ca_guid)
        problems = new_ca_problems(
            cas, self.new_ca_guid, now=dt.datetime.now(dt.UTC), expires_within=self.expires_within
        )
        rows, excluded = self._certificate_rows(
            new_ca.subject_key_identifier if new_ca else None, new_ca.created_at if new_ca else None
        )
        stale = [r["certificate"] for r in rows if r["signed_by"] != SIGNED_BY_NEW_CA]
        if stale:
            problems.append(
                f"{len(stale)} deployed certificate(s) do not chain to the new CA: {', '.join(stale)}"
            )
        self.log.info(
            "Deployed certificates after the rotation:\n%s",
            format_table(
                ("CERTIFICATE", "LOCATION", "VALID UNTIL", "SIGNED BY", "CHECKED BY"),
                [list(r.values()) for r in rows],
            ),
        )
        for item in excluded:
            self.log.info(
                "Excluded, needs its own procedure: %s (%s)", item["certificate"], item["procedure"]
            )
        checked = {
            BY_KEY_IDENTIFIER: sum(r["checked_by"] == BY_KEY_IDENTIFIER for r in rows),
            BY_ISSUE_TIME: sum(r["checked_by"].startswith(BY_ISSUE_TIME) for r in rows),
        }
        self.log.info(
            "Checked %d certificate(s) by key identifier and %d by issue time",
            checked[BY_KEY_IDENTIFIER],
            checked[BY_ISSUE_TIME],
        )
        report = {
            "new_ca": new_ca.summary() if new_ca else None,
            "certificates": rows,
            "excluded": excluded,
            "checked_by": checked,
            "problems": problems,
        }
        if problems:
            raise AirflowFailException("Rotation verification failed: " + "; ".join(problems))
        self.log.info(
            "Verified: CA %s is the only CA, active, and signs all %d rotated certificates",
            self.new_ca_guid,
            len(rows),
        )
        return report
