"""Certificate authorities (docs/ops-manager-api.md §2): list, generate, upload, activate, regenerate, delete.

With ``--answer-style 2.10`` the write calls also answer CredHub Maestro's ``certificates`` report;
with ``--safety-checks`` they refuse (422 ``safety_violations``) a step that would break trust.
"""

from __future__ import annotations

from typing import Any

from .. import pki
from ..catalog import ACTIVE_CANNOT_DELETE, CA_NOT_FOUND, DEFAULT_WARNING
from ..config import ApiError
from ..timefmt import calendar_date, rfc3339_s
from .base import StoreBase
from .records import new_ca_record, uploaded_ca_record


class CertificateAuthorities(StoreBase):
    # ------------------------------------------------------------------------------------------
    # JSON views
    # ------------------------------------------------------------------------------------------

    def _date(self, ts: float) -> str:
        if self.config.ca_date_format == "rfc3339":
            return rfc3339_s(ts)
        return calendar_date(ts)

    def ca_json(self, ca: dict[str, Any]) -> dict[str, Any]:
        out = {
            "guid": ca["guid"],
            "issuer": ca["issuer"],
            "created_on": self._date(ca["created_at"]),
            "expires_on": self._date(ca["expires_at"]),
            "active": ca["active"],
            "cert_pem": ca["cert_pem"],
        }
        if self.answers_like_2_10:
            out["nats_cert_pem"] = ca["nats_cert_pem"]
        return out

    @staticmethod
    def _status_item(leaf: dict[str, Any], reason: str) -> dict[str, Any]:
        return {
            "location": leaf["location"],
            "product_guid": leaf["product_guid"],
            "property_reference": leaf["property_reference"],
            "variable_path": leaf["variable_path"],
            "reason": reason,
        }

    def _excluded_items(self) -> list[dict[str, Any]]:
        return [
            self._status_item(leaf, "Excluded from rotation")
            for leaf in self.data["leaves"]
            if leaf["excluded"]
        ]

    def _updated_answer(self, reason: str) -> dict[str, Any]:
        """The 2.10 answer of activate and delete: every rotated leaf ``updated`` for ``reason``."""
        updated = [self._status_item(leaf, reason) for leaf in self.rotated_leaves()]
        return {"certificates": {"updated": updated, "excluded": self._excluded_items(), "update_failed": []}}

    def _with_warnings(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.faults.get("ca_status_207"):
            body = dict(body)
            body["warnings"] = list(self.faults.get("ca_warnings") or [DEFAULT_WARNING])
            return 207, body
        return 200, body

    # ------------------------------------------------------------------------------------------
    # safety checks
    # ------------------------------------------------------------------------------------------

    @staticmethod
    def _violation(error: str, violation: str, names: list[str], mitigation: str) -> ApiError:
        return ApiError(
            422,
            {
                "error": error,
                "safety_violations": [
                    {"violation": violation, "certificate_names": names, "migitation": mitigation}
                ],
            },
        )

    @staticmethod
    def _certificate_names(leaves: list[dict[str, Any]]) -> list[str]:
        return [leaf["variable_path"] or leaf["property_reference"] for leaf in leaves]

    def _untrusting_products(self, ca_guid: str) -> list[dict[str, Any]]:
        return [p for p in self.data["products"] if ca_guid not in p["trusted_ca_guids"]]

    # ------------------------------------------------------------------------------------------
    # the endpoints
    # ------------------------------------------------------------------------------------------

    def list_cas(self) -> dict[str, Any]:
        return {"certificate_authorities": [self.ca_json(c) for c in self.cas_oldest_first()]}

    def generate_ca(self, now: float | None = None) -> tuple[int, dict[str, Any]]:
        now = self.now() if now is None else now
        ca = new_ca_record(now, origin="generated")
        self.data["cas"].append(ca)
        self.save()
        body = self.ca_json(ca)
        if self.answers_like_2_10:
            # ASSUMPTION: generating a CA regenerates nothing; excluded lists the excluded leaves.
            body["certificates"] = {
                "regenerated": [],
                "excluded": self._excluded_items(),
                "regenerate_failed": [],
            }
        return self._with_warnings(body)

    def create_ca(self, body: Any, now: float | None = None) -> tuple[int, dict[str, Any]]:
        now = self.now() if now is None else now
        # ASSUMPTION: all validation answers are 422 {"errors": [...]} (the reference has no page).
        if not isinstance(body, dict):
            raise ApiError(
                422, {"errors": ["Request body must be a JSON object with cert_pem and private_key_pem"]}
            )
        errors = []
        cert_pem, key_pem = body.get("cert_pem"), body.get("private_key_pem")
        if not isinstance(cert_pem, str) or not cert_pem.strip():
            errors.append("Cert pem can't be blank")
        if not isinstance(key_pem, str) or not key_pem.strip():
            errors.append("Private key pem can't be blank")
        if errors:
            raise ApiError(422, {"errors": errors})
        try:
            cert = pki.load_cert(cert_pem)
        except Exception:
            raise ApiError(
                422, {"errors": ["Cert pem is not a valid PEM-encoded X.509 certificate"]}
            ) from None
        try:
            key = pki.load_key(key_pem, trusted=False)
        except Exception:
            raise ApiError(
                422, {"errors": ["Private key pem is not a valid unencrypted PEM-encoded private key"]}
            ) from None
        if not pki.public_keys_match(cert, key):
            raise ApiError(422, {"errors": ["Private key pem does not match the certificate"]})
        if not pki.is_ca_cert(cert):
            raise ApiError(
                422, {"errors": ["Cert pem is not a certificate authority (basicConstraints CA:TRUE)"]}
            )
        ca = uploaded_ca_record(cert, key, now)
        self.data["cas"].append(ca)
        self.save()
        return self._with_warnings(self.ca_json(ca))

    def activate_ca(self, guid: str) -> tuple[int, dict[str, Any]]:
        ca = self.find_ca(guid)
        if ca is None:
            raise ApiError(404, CA_NOT_FOUND)
        if self.config.safety_checks and not ca["active"]:
            missing = self._untrusting_products(guid)
            if missing:
                raise self._violation(
                    "Activating this certificate authority would break trust for deployed certificates",
                    "The certificate authority has not been distributed to all trust stores: no Apply Changes "
                    "has succeeded since it was generated",
                    [f"Ops Manager Root CA {guid}"] + [f"trust store of {p['guid']}" for p in missing],
                    "Apply Changes to distribute the new CA to all trust stores, then retry. "
                    "Do not run earlier commands again.",
                )
        for c in self.existing_cas():
            c["active"] = c["guid"] == guid
        self.save()
        # ASSUMPTION: which items Maestro reports as "updated" on activate.
        body = self._updated_answer("Signing CA activated") if self.answers_like_2_10 else {}
        return self._with_warnings(body)

    def regenerate(self, now: float | None = None) -> tuple[int, dict[str, Any]]:
        now = self.now() if now is None else now
        active = self.active_ca()
        targets = self.rotated_leaves()
        if self.config.safety_checks:
            missing = self._untrusting_products(active["guid"])
            if missing:
                raise self._violation(
                    "Regenerating leaf certificates now would break trust",
                    "The active certificate authority has not been distributed to all trust stores",
                    self._certificate_names(targets),
                    "Apply Changes to distribute the active CA to all trust stores, then retry. "
                    "Do not run earlier commands again.",
                )
        failed_names = set(self.faults.get("regenerate_failed") or [])
        regenerated, failed = [], []
        for leaf in targets:
            if leaf["name"] in failed_names:
                failed.append(self._status_item(leaf, "Simulated regeneration failure"))
                continue
            leaf["pending_regeneration"] = True
            leaf["regeneration_requested_at"] = now
            regenerated.append(self._status_item(leaf, "Regenerated with the active root CA"))
        self.save()
        if self.answers_like_2_10:
            excluded = self._excluded_items() + [
                self._status_item(leaf, "Configurable certificate")
                for leaf in self.data["leaves"]
                if leaf["configurable"]
            ]
            body: dict[str, Any] = {
                "certificates": {
                    "regenerated": regenerated,
                    "excluded": excluded,
                    "regenerate_failed": failed,
                }
            }
        else:
            body = {}
        return self._with_warnings(body)

    def delete_ca(self, guid: str, now: float | None = None) -> tuple[int, dict[str, Any]]:
        now = self.now() if now is None else now
        ca = self.find_ca(guid)
        if ca is None:
            raise ApiError(404, CA_NOT_FOUND)
        if ca["active"]:
            raise ApiError(422, ACTIVE_CANNOT_DELETE)
        if self.config.safety_checks:
            still = [leaf for leaf in self.rotated_leaves() if leaf["issuer_ca_guid"] == guid]
            if still:
                raise self._violation(
                    "Deleting this certificate authority would break deployed certificates",
                    "Deployed certificates are still signed by this certificate authority: no Apply Changes "
                    "has succeeded since the certificates were regenerated",
                    self._certificate_names(still),
                    "Apply Changes to deploy the regenerated certificates, then retry. "
                    "Do not run earlier commands again.",
                )
        ca["deleted"] = True
        ca["deleted_at"] = now
        ca["active"] = False
        self.save()
        body = self._updated_answer("Certificate authority removed") if self.answers_like_2_10 else {}
        return self._with_warnings(body)
