"""Products and what they deploy (docs/ops-manager-api.md §3, §5): staged/deployed products, pending
changes, deployed certificates (with ``?expires_within=``) and the credentials Ops Manager stores.
"""

from __future__ import annotations

from typing import Any

from .. import pki
from ..catalog import PROC_ROOT_CA
from ..checks import flag
from ..config import ApiError
from ..timefmt import expiry_cutoff, rfc3339_s
from .base import StoreBase

#: Where a deployed-certificates entry lives, in the order the answer lists the fields.
_PLACE_FIELDS = (
    "configurable",
    "property_reference",
    "property_type",
    "product_guid",
    "location",
    "variable_path",
    "is_ca",
)
#: Where the Ops Manager root CAs live (2.10 and later list them among the deployed certificates).
_ROOT_CA_PLACE = {
    "configurable": False,
    "property_reference": None,
    "property_type": None,
    "product_guid": None,
    "location": "ops_manager",
    "variable_path": None,
    "is_ca": True,
}
# The subject of every root CA Ops Manager makes; the entry shows it for uploaded CAs too.
_ROOT_CA_ISSUER = pki.openssl_oneline(pki.OPSMAN_CA_SUBJECT)


class Products(StoreBase):
    def products_json(self) -> list[dict[str, Any]]:
        return [
            {
                "installation_name": p["installation_name"],
                "guid": p["guid"],
                "type": p["type"],
                "product_version": p["product_version"],
            }
            for p in self.data["products"]
        ]

    def pending_changes(self) -> dict[str, Any]:
        out = []
        for p in self.data["products"]:
            errands = (
                [] if p["type"] == "p-bosh" else [{"name": "smoke_tests", "post_deploy": "when-changed"}]
            )
            out.append(
                {
                    "guid": p["guid"],
                    "errands": errands,
                    "action": p["pending_action"],
                    "completeness_checks": {
                        "configuration_complete": True,
                        "stemcell_present": True,
                        "configurable_properties_valid": True,
                    },
                }
            )
        return {"product_changes": out}

    # ------------------------------------------------------------------------------------------
    # deployed certificates
    # ------------------------------------------------------------------------------------------

    def _certificate_entry(
        self, issuer: str, valid_from: float, valid_until: float, place: dict[str, Any], procedure: tuple
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "issuer": issuer,
            "valid_from": rfc3339_s(valid_from),
            "valid_until": rfc3339_s(valid_until),
        }
        item.update((field, place[field]) for field in _PLACE_FIELDS)
        if self.answers_like_2_10:
            item["rotation_procedure_name"], item["rotation_procedure_url"] = procedure
        return item

    def deployed_certificates(
        self,
        expires_within: str | None,
        show_excluded_only: str | None,
        with_root_cas: bool = False,
        now: float | None = None,
    ) -> dict[str, Any]:
        """``GET /api/v0/deployed/certificates``; ``with_root_cas``: the root CAs first (``is_ca: true``)."""
        now = self.now() if now is None else now
        until = expiry_cutoff(expires_within, now)
        items = []
        if with_root_cas:
            # ASSUMPTION: no source shows the root CA's entry; fields follow the leaf entries of §3.1.
            for ca in self.existing_cas():
                if until is not None and float(ca["expires_at"]) > until:
                    continue
                items.append(
                    self._certificate_entry(
                        _ROOT_CA_ISSUER,
                        float(ca["created_at"]),
                        float(ca["expires_at"]),
                        _ROOT_CA_PLACE,
                        PROC_ROOT_CA,
                    )
                )
        for leaf in self.data["leaves"]:
            if until is not None and leaf["valid_until"] > until:
                continue
            if flag(show_excluded_only) is True and not leaf["excluded"]:
                continue
            procedure = (leaf["rotation_procedure_name"], leaf["rotation_procedure_url"])
            items.append(
                self._certificate_entry(
                    leaf["issuer_dn"], leaf["valid_from"], leaf["valid_until"], leaf, procedure
                )
            )
        return {"certificates": items}

    # ------------------------------------------------------------------------------------------
    # credentials
    # ------------------------------------------------------------------------------------------

    def _deployed_product(self, guid: str) -> dict[str, Any]:
        for p in self.data["products"]:
            if p["guid"] == guid:
                return p
        # ASSUMPTION: wording of the unknown-product 404.
        raise ApiError(404, {"errors": [f"Product with guid '{guid}' not found"]})

    def _stored_credentials(self, guid: str) -> list[dict[str, Any]]:
        """The product's leaves that Ops Manager (not CredHub) stores; 404 for an unknown product."""
        self._deployed_product(guid)
        return [
            leaf
            for leaf in self.data["leaves"]
            if leaf["location"] == "ops_manager" and leaf["product_guid"] == guid
        ]

    def list_credentials(self, guid: str) -> dict[str, Any]:
        return {"credentials": [leaf["property_reference"] for leaf in self._stored_credentials(guid)]}

    def get_credential(self, guid: str, ref: str) -> dict[str, Any]:
        for leaf in self._stored_credentials(guid):
            if leaf["property_reference"] == ref:
                return {
                    "credential": {
                        "type": leaf["property_type"] or "rsa_cert_credentials",
                        "value": {"cert_pem": leaf["cert_pem"], "private_key_pem": self.data["leaf_key_pem"]},
                    }
                }
        raise ApiError(404, {"errors": [f"Credential '{ref}' not found for product '{guid}'"]})
