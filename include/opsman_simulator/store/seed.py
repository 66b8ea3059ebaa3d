"""The foundation on a fresh start or a reset.

One active root CA ``--initial-ca-age-days`` old, the catalog's products trusting it, the catalog's
leaf certificates (the services TLS CA self-signed, every other leaf signed by the root CA), and one
succeeded installation about a day ago that deployed everything.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import pki
from ..catalog import DEFAULT_FAULTS, INITIAL_INSTALL_AGE_S, INITIAL_INSTALL_DURATION_S, LEAF_DEFS, PRODUCTS
from ..config import Config
from ..persistence import STATE_VERSION
from ..timefmt import DAY_SECONDS
from .records import deployed_record, new_ca_record, set_leaf_cert


def initial_state(config: Config, now: float, keep: dict[str, Any]) -> dict[str, Any]:
    """The state document of a new foundation; ``keep`` may carry key PEMs and ``revoked_before`` over."""
    ca_created = now - float(config.initial_ca_age_days) * DAY_SECONDS
    ca = new_ca_record(ca_created, origin="initial")
    ca["active"] = True
    leaf_key = pki.load_key(keep["leaf_key_pem"]) if keep.get("leaf_key_pem") else pki.new_rsa_key()
    services_key = (
        pki.load_key(keep["services_key_pem"]) if keep.get("services_key_pem") else pki.new_rsa_key()
    )
    data: dict[str, Any] = {
        "version": STATE_VERSION,
        "created_at": now,
        "cas": [ca],
        "products": [],
        "leaves": [],
        "leaf_key_pem": pki.key_to_pem(leaf_key),
        "services_key_pem": pki.key_to_pem(services_key),
        "installations": [],
        "faults": copy.deepcopy(DEFAULT_FAULTS),
        "revoked_before": keep.get("revoked_before") or 0.0,
    }
    for p in PRODUCTS:
        data["products"].append(
            dict(
                p,
                installation_name=p["guid"],
                trusted_ca_guids=[ca["guid"]],
                pending_action="unchanged",
                last_deployed_at=now - INITIAL_INSTALL_AGE_S + INITIAL_INSTALL_DURATION_S,
            )
        )
    ca_cert = pki.load_cert(ca["cert_pem"])
    ca_key = pki.load_key(ca["key_pem"])
    for d in LEAF_DEFS:
        issued = now - min(d["issued_days_ago"], float(config.initial_ca_age_days)) * DAY_SECONDS
        if d["excluded"]:
            issued = now - d["issued_days_ago"] * DAY_SECONDS
            subject = pki.x509.Name(
                [
                    pki.x509.NameAttribute(pki.NameOID.COUNTRY_NAME, "US"),
                    pki.x509.NameAttribute(pki.NameOID.ORGANIZATION_NAME, "Pivotal"),
                    pki.x509.NameAttribute(pki.NameOID.COMMON_NAME, "services-tls-ca"),
                ]
            )
            cert = pki.make_ca(
                services_key, subject, pki.utc(issued), pki.utc(issued + d["validity_days"] * DAY_SECONDS)
            )
            issuer_guid = None
        else:
            cert = pki.make_leaf(
                leaf_key.public_key(),
                d["name"],
                ca_cert,
                ca_key,
                pki.utc(issued),
                pki.utc(issued + d["validity_days"] * DAY_SECONDS),
            )
            issuer_guid = ca["guid"]
        leaf = {k: v for k, v in d.items() if k not in ("issued_days_ago", "validity_days", "procedure")}
        leaf.update(
            rotation_procedure_name=d["procedure"][0],
            rotation_procedure_url=d["procedure"][1],
            is_ca=d["excluded"],
            pending_regeneration=False,
            regeneration_requested_at=None,
            history=[],
        )
        set_leaf_cert(leaf, cert, issuer_guid)
        data["leaves"].append(leaf)
    started = now - INITIAL_INSTALL_AGE_S
    data["installations"].append(
        {
            "id": 1,
            "user_name": config.username,
            "status": "succeeded",
            "started_at": started,
            "duration_seconds": INITIAL_INSTALL_DURATION_S,
            "finished_at": started + INITIAL_INSTALL_DURATION_S,
            "will_fail": False,
            "log_bytes_per_second": 0,
            "request": {
                "deploy_products": "all",
                "ignore_warnings": False,
                "force_latest_variables": False,
                "errands": {},
            },
            "deployed_products": [p["guid"] for p in PRODUCTS],
            "plan": {"trusted_ca_guids": [ca["guid"]], "signing_ca_guid": ca["guid"], "reissue": []},
            "deployed": deployed_record([ca["guid"]], [p["guid"] for p in PRODUCTS], [], data["leaves"]),
        }
    )
    return data
