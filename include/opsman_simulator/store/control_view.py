"""``GET /_simulator/state``: the whole foundation as tests check it, including what the API hides
(trust stores, deleted CAs, leaf history, planned and deployed installations, armed faults).
"""

from __future__ import annotations

import copy
from typing import Any

from ..timefmt import rfc3339_full, rfc3339_ms, rfc3339_s
from .base import StoreBase


class ControlView(StoreBase):
    def simulator_state(self, now: float | None = None) -> dict[str, Any]:
        now = self.now() if now is None else now
        cas = []
        for c in self.cas_oldest_first():
            cas.append(
                {
                    "guid": c["guid"],
                    "active": c["active"],
                    "created_at": rfc3339_full(c["created_at"]),
                    "expires_at": rfc3339_full(c["expires_at"]),
                    "deleted": False,
                    "origin": c["origin"],
                    "issuer": c["issuer"],
                    "cert_pem": c["cert_pem"],
                    "subject_key_identifier": c["subject_key_identifier"],
                }
            )
        deleted = [c for c in self.data["cas"] if c["deleted"]]
        insts = []
        for i in self.installations_newest_first():
            rec = copy.deepcopy(i)
            rec["started_at"] = rfc3339_ms(i["started_at"])
            rec["finished_at"] = rfc3339_ms(i["finished_at"])
            rec["finishes_at"] = rfc3339_ms(i["started_at"] + i["duration_seconds"])
            insts.append(rec)
        leaves = []
        for leaf in self.data["leaves"]:
            leaves.append(
                {
                    "name": leaf["name"],
                    "location": leaf["location"],
                    "variable_path": leaf["variable_path"],
                    "product_guid": leaf["product_guid"],
                    "property_reference": leaf["property_reference"],
                    "deployment_product_guid": leaf["deployment"],
                    "configurable": leaf["configurable"],
                    "excluded": leaf["excluded"],
                    "is_ca": leaf["is_ca"],
                    "issuer_ca_guid": leaf["issuer_ca_guid"],
                    "authority_key_identifier": leaf["authority_key_identifier"],
                    "serial_number": leaf["serial_number"],
                    "valid_from": rfc3339_s(leaf["valid_from"]),
                    "valid_until": rfc3339_s(leaf["valid_until"]),
                    "cert_pem": leaf["cert_pem"],
                    "pending_regeneration": leaf["pending_regeneration"],
                    "history": leaf["history"],
                }
            )
        return {
            "now": rfc3339_full(now),
            "certificate_authorities": cas,
            "deleted_certificate_authorities": [c["guid"] for c in deleted],
            "deleted_certificate_authority_details": [
                {
                    "guid": c["guid"],
                    "deleted_at": rfc3339_full(c["deleted_at"]) if c["deleted_at"] else None,
                    "cert_pem": c["cert_pem"],
                    "subject_key_identifier": c["subject_key_identifier"],
                }
                for c in deleted
            ],
            "installations": insts,
            "leaves": leaves,
            "trusted_ca_guids": self.trusted_ca_guids(),
            "products": [
                {
                    "guid": p["guid"],
                    "type": p["type"],
                    "trusted_ca_guids": p["trusted_ca_guids"],
                    "pending_action": p["pending_action"],
                }
                for p in self.data["products"]
            ],
            "max_concurrent_requests": self.max_concurrent_requests,
            "faults": copy.deepcopy(self.faults),
            "config": {
                "apply_seconds": self.config.apply_seconds,
                "token_ttl": self.config.token_ttl,
                "ca_date_format": self.config.ca_date_format,
                "answer_style": self.config.answer_style,
                "safety_checks": self.config.safety_checks,
                "initial_ca_age_days": self.config.initial_ca_age_days,
            },
        }
