"""The simulated Ops Manager: domain state, its rules, and its persistence.

Everything here is synchronous and is only ever called from the event loop thread while the
request lock (see :mod:`opsman_simulator.app`) is held, so every operation is atomic with respect to
other requests.  Every mutation is written to ``<state-dir>/state.json`` atomically
(temporary file + fsync + ``os.replace``) before the HTTP answer is sent.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import pki

STATE_VERSION = 1

# Fixed product GUIDs so that tests and scripts can name them.
P_BOSH_GUID = "p-bosh-4a5b6c7d8e9f0a1b2c3d"
CF_GUID = "cf-0f1e2d3c4b5a69788796"

PRODUCTS = [
    {"guid": P_BOSH_GUID, "type": "p-bosh", "product_version": "2.10.60-build.4", "label": "BOSH Director"},
    {"guid": CF_GUID, "type": "cf", "product_version": "2.11.42", "label": "Small Footprint TAS"},
]

# ASSUMPTION: procedure names/URLs for the 2.10 `rotation_procedure_*` fields (the reference only
# shows "Services TLS CA Procedure").
_DOCS = (
    "https://docs.vmware.com/en/VMware-Tanzu-Operations-Manager/3.0/vmware-tanzu-ops-manager/"
    "security-pcf-infrastructure-rotate-cas-and-leaf-certs.html"
)
PROC_NON_CONFIGURABLE = ("Non-Configurable Leaf Certificates Procedure", _DOCS + "#rotate-non-configurable")
PROC_CONFIGURABLE = ("Configurable Leaf Certificates Procedure", _DOCS + "#rotate-configurable")
PROC_SERVICES = ("Services TLS CA Procedure", _DOCS + "#rotate-services-tls-ca")

# The initial deployed leaf certificates.  `deployment` is the product whose Apply Changes
# (re)deploys the certificate; `product_guid` is what the deployed-certificates API shows.
LEAF_DEFS: list[dict[str, Any]] = [
    dict(
        name="nats_server",
        location="credhub",
        variable_path="/p-bosh/director/nats_server_tls",
        product_guid=None,
        property_reference=None,
        property_type=None,
        deployment=P_BOSH_GUID,
        configurable=False,
        excluded=False,
        issued_days_ago=700,
        validity_days=730,
        procedure=PROC_NON_CONFIGURABLE,
    ),
    dict(
        name="diego_rep",
        location="credhub",
        variable_path=f"/p-bosh/{CF_GUID}/diego_rep_agent_v2",
        product_guid=None,
        property_reference=None,
        property_type=None,
        deployment=CF_GUID,
        configurable=False,
        excluded=False,
        issued_days_ago=400,
        validity_days=730,
        procedure=PROC_NON_CONFIGURABLE,
    ),
    dict(
        name="director_ssl",
        location="ops_manager",
        variable_path=None,
        product_guid=P_BOSH_GUID,
        property_reference=".properties.director_ssl",
        property_type="rsa_cert_credentials",
        deployment=P_BOSH_GUID,
        configurable=False,
        excluded=False,
        issued_days_ago=400,
        validity_days=730,
        procedure=PROC_NON_CONFIGURABLE,
    ),
    dict(
        name="cf_credhub_internal",
        location="ops_manager",
        variable_path=None,
        product_guid=CF_GUID,
        property_reference=".properties.credhub_internal_tls",
        property_type="rsa_cert_credentials",
        deployment=CF_GUID,
        configurable=False,
        excluded=False,
        issued_days_ago=400,
        validity_days=730,
        procedure=PROC_NON_CONFIGURABLE,
    ),
    dict(
        name="cf_router_wildcard",
        location="ops_manager",
        variable_path=None,
        product_guid=CF_GUID,
        property_reference=".properties.networking_poe_ssl_certs",
        property_type="rsa_cert_credentials",
        deployment=CF_GUID,
        configurable=True,
        excluded=False,
        issued_days_ago=200,
        validity_days=730,
        procedure=PROC_CONFIGURABLE,
    ),
    dict(
        name="services_tls_ca",
        location="credhub",
        variable_path="/services/tls_ca",
        product_guid=None,
        property_reference=None,
        property_type=None,
        deployment=CF_GUID,
        configurable=False,
        excluded=True,
        issued_days_ago=1000,
        validity_days=1461,
        procedure=PROC_SERVICES,
    ),
]
LEAF_NAMES = [d["name"] for d in LEAF_DEFS]

REISSUE_VALIDITY_DAYS = 730
INITIAL_INSTALL_AGE_S = 86400.0
INITIAL_INSTALL_DURATION_S = 1500.0

INVALID_TOKEN_BODY = {
    "errors": {
        "base": [
            "Unable to successfully verify the access token with UAA.  Error: 'CF::UAA::InvalidToken - error response'"
        ]
    }
}
CA_NOT_FOUND = {"errors": ["Certificate with specified guid not found"]}
ACTIVE_CANNOT_DELETE = {"errors": ["Active certificates cannot be deleted"]}
# ASSUMPTION: the reference does not show the answer to a POST while an installation runs.
INSTALL_IN_PROGRESS = {"errors": ["An installation is already in progress"]}

DEFAULT_WARNING = "Simulated warning: some certificates could not be processed by CredHub Maestro"

DEFAULT_FAULTS: dict[str, Any] = {
    "fail_next_installs": 0,
    "status_burst": None,
    "drop_next": None,
    "latency": None,
    "token_ttl": None,
    "ca_status_207": False,
    "ca_warnings": [DEFAULT_WARNING],
    "regenerate_failed": [],
    "log_bytes_per_second": 0,
    "apply_seconds": None,
}


class ApiError(Exception):
    """An Ops Manager API error answer."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Config:
    state_dir: Path
    apply_seconds: float = 5.0
    token_ttl: float = 3600.0
    username: str = "admin"
    password: str = "admin-password"
    client_id: str | None = None
    client_secret: str | None = None
    ca_date_format: str = "date"  # "date" | "rfc3339"
    initial_ca_age_days: float = 1200
    answer_style: str = "legacy"  # "legacy" | "2.10"
    safety_checks: bool = False
    # Version profile (profiles.py), role of --username/--client-id, more users.
    profile: str | None = None  # None | "2.9" | "2.10" | "3.0"
    role: str = "admin"
    extra_users: tuple = ()  # ((name, password, role), ...)
    info_version: str | None = None  # overrides the profile's /api/v0/info version
    #: False: state and journal live in memory only (no state.json, no journal.jsonl, no fsync).
    #: For tests that run thousands of short histories in-process; a restart then starts fresh.
    persist: bool = True


# --------------------------------------------------------------------------------------------
# time formatting
# --------------------------------------------------------------------------------------------


def rfc3339_ms(ts: float | None) -> str | None:
    if ts is None:
        return None
    d = pki.utc(ts)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def rfc3339_s(ts: float) -> str:
    return pki.utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_full(ts: float) -> str:
    return pki.utc(ts).isoformat().replace("+00:00", "Z")


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir + fsync + os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


_EXPIRES_WITHIN_RE = re.compile(r"^[1-9]+\d*[dwmy]$")
# ASSUMPTION: m = 30 days, y = 365 days.
_UNIT_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}


def parse_expires_within(value: str) -> float:
    """Return the window in seconds, or raise ApiError 422."""
    if not _EXPIRES_WITHIN_RE.match(value or ""):
        # ASSUMPTION: status and wording; the reference documents only the format.
        raise ApiError(
            422,
            {
                "errors": [
                    f"Invalid expires_within '{value}': expected an integer followed by d, w, m or y (e.g. 3m)"
                ]
            },
        )
    return int(value[:-1]) * _UNIT_DAYS[value[-1]] * 86400.0


class Store:
    """All simulated Ops Manager state plus the operations on it."""

    def __init__(self, config: Config, now: float | None = None):
        self.config = config
        self.path = Path(config.state_dir) / "state.json"
        self.max_concurrent_requests = 0
        if config.persist and self.path.exists():
            self.data = json.loads(self.path.read_text())
            if self.data.get("version") != STATE_VERSION:
                raise RuntimeError(f"unsupported state version in {self.path}")
        else:
            self.data = self._initial_state(now if now is not None else time.time(), keep={})
            self.save()

    # ----------------------------------------------------------------------------------------
    # persistence
    # ----------------------------------------------------------------------------------------

    def save(self) -> None:
        if not self.config.persist:
            return
        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())

    def reset(self, now: float | None = None) -> None:
        # The root CA is always new; the leaf and services-CA key pairs are reused (RSA key
        # generation is the slow part of a reset).
        keep = {k: self.data.get(k) for k in ("revoked_before", "leaf_key_pem", "services_key_pem")}
        self.data = self._initial_state(now if now is not None else time.time(), keep=keep)
        self.max_concurrent_requests = 0
        self.save()

    def _initial_state(self, now: float, keep: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        ca_created = now - float(cfg.initial_ca_age_days) * 86400.0
        ca = self._new_ca_record(ca_created, origin="initial")
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
            issued = now - min(d["issued_days_ago"], float(cfg.initial_ca_age_days)) * 86400.0
            if d["excluded"]:
                issued = now - d["issued_days_ago"] * 86400.0
                key = services_key
                subject = pki.x509.Name(
                    [
                        pki.x509.NameAttribute(pki.NameOID.COUNTRY_NAME, "US"),
                        pki.x509.NameAttribute(pki.NameOID.ORGANIZATION_NAME, "Pivotal"),
                        pki.x509.NameAttribute(pki.NameOID.COMMON_NAME, "services-tls-ca"),
                    ]
                )
                cert = pki.make_ca(
                    key, subject, pki.utc(issued), pki.utc(issued + d["validity_days"] * 86400.0)
                )
                issuer_guid = None
            else:
                cert = pki.make_leaf(
                    leaf_key.public_key(),
                    d["name"],
                    ca_cert,
                    ca_key,
                    pki.utc(issued),
                    pki.utc(issued + d["validity_days"] * 86400.0),
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
            self._set_leaf_cert(leaf, cert, issuer_guid)
            data["leaves"].append(leaf)
        # One succeeded installation about a day ago that deployed everything.
        started = now - INITIAL_INSTALL_AGE_S
        data["installations"].append(
            {
                "id": 1,
                "user_name": cfg.username,
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
                "deployed": {
                    "trusted_ca_guids": [ca["guid"]],
                    "products": [p["guid"] for p in PRODUCTS],
                    "reissued_leaves": [],
                    "leaf_issuers": {leaf["name"]: leaf["issuer_ca_guid"] for leaf in data["leaves"]},
                },
            }
        )
        return data

    # ----------------------------------------------------------------------------------------
    # helpers
    # ----------------------------------------------------------------------------------------

    @property
    def faults(self) -> dict[str, Any]:
        return self.data["faults"]

    def _new_ca_record(self, created_at: float, origin: str) -> dict[str, Any]:
        key = pki.new_rsa_key()
        nb = pki.utc(created_at)
        na = pki.add_years(nb, 4)
        cert = pki.make_ca(key, pki.OPSMAN_CA_SUBJECT, nb, na)
        nats = pki.make_ca(key, pki.NATS_CA_SUBJECT, nb, na)
        return {
            "guid": secrets.token_hex(10),
            "issuer": "Pivotal",
            "created_at": created_at,
            "expires_at": na.timestamp(),
            "active": False,
            "deleted": False,
            "deleted_at": None,
            "origin": origin,
            "cert_pem": pki.cert_to_pem(cert),
            "nats_cert_pem": pki.cert_to_pem(nats),
            "key_pem": pki.key_to_pem(key),
            "subject_key_identifier": pki.ski_of(cert),
        }

    @staticmethod
    def _set_leaf_cert(leaf: dict[str, Any], cert: Any, issuer_guid: str | None) -> None:
        leaf["cert_pem"] = pki.cert_to_pem(cert)
        leaf["issuer_ca_guid"] = issuer_guid
        leaf["authority_key_identifier"] = pki.aki_of(cert)
        leaf["issuer_dn"] = pki.openssl_oneline(cert.issuer)
        leaf["valid_from"] = cert.not_valid_before_utc.timestamp()
        leaf["valid_until"] = cert.not_valid_after_utc.timestamp()
        leaf["serial_number"] = format(cert.serial_number, "x")

    def existing_cas(self) -> list[dict[str, Any]]:
        return [c for c in self.data["cas"] if not c["deleted"]]

    def find_ca(self, guid: str) -> dict[str, Any] | None:
        for c in self.existing_cas():
            if c["guid"] == guid:
                return c
        return None

    def active_ca(self) -> dict[str, Any]:
        for c in self.existing_cas():
            if c["active"]:
                return c
        raise RuntimeError("no active CA")  # cannot happen: the active CA cannot be deleted

    def find_leaf(self, name: str) -> dict[str, Any] | None:
        for leaf in self.data["leaves"]:
            if leaf["name"] == name:
                return leaf
        return None

    def product_guids(self) -> list[str]:
        return [p["guid"] for p in self.data["products"]]

    def trusted_ca_guids(self) -> list[str]:
        """CAs present in the deployed trust store of *every* product."""
        sets = [set(p["trusted_ca_guids"]) for p in self.data["products"]]
        common = set.intersection(*sets) if sets else set()
        order = [c["guid"] for c in self.data["cas"]]
        return sorted(common, key=lambda g: order.index(g) if g in order else len(order))

    def running_installation(self) -> dict[str, Any] | None:
        for i in self.data["installations"]:
            if i["status"] == "running":
                return i
        return None

    def find_installation(self, install_id: int) -> dict[str, Any] | None:
        for i in self.data["installations"]:
            if i["id"] == install_id:
                return i
        return None

    def now(self) -> float:
        """Simulated time (epoch seconds): the wall clock plus how far the control surface moved it.

        Tests move it forward (``POST /_simulator/clock``) to finish an installation at once, age a CA
        or expire a token exactly, instead of waiting in real time; a reset puts it back to the wall clock.
        """
        return time.time() + float(self.data.get("clock_offset_seconds", 0.0))

    def move_clock(self, body: Any) -> dict[str, Any]:
        """Apply a ``POST /_simulator/clock`` body; raises ValueError on bad input. The clock only moves forward.

        ``{"advance_seconds": N}``, ``{"now": "2030-01-01T00:00:00Z"}`` or ``{"finish_installation": true}``
        (to the moment the running installation ends; nothing to do when none runs).
        """
        if not isinstance(body, dict) or len(body) != 1:
            raise ValueError(
                'body must be one of {"advance_seconds": N}, {"now": RFC 3339}, {"finish_installation": true}'
            )
        ((key, value),) = body.items()
        now = self.now()
        finished = None
        if key == "advance_seconds":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError("advance_seconds must be a non-negative number")
            step = float(value)
        elif key == "now":
            try:
                target = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(
                    f"now must be an RFC 3339 time such as 2030-01-01T00:00:00Z; got {value!r}"
                ) from None
            if target.tzinfo is None:
                raise ValueError("now must carry a time zone, e.g. 2030-01-01T00:00:00Z")
            step = target.timestamp() - now
            if step < 0:
                raise ValueError(
                    f"the clock only moves forward; it is {rfc3339_full(now)} (reset to go back)"
                )
        elif key == "finish_installation":
            if value is not True:
                raise ValueError("finish_installation must be true")
            inst = self.running_installation()
            step = 0.0
            if inst is not None:
                finished = inst["id"]
                step = max(0.0, inst["started_at"] + inst["duration_seconds"] - now)
        else:
            raise ValueError(f"unknown clock key {key!r}; use advance_seconds, now or finish_installation")
        self.data["clock_offset_seconds"] = float(self.data.get("clock_offset_seconds", 0.0)) + step
        self.tick()
        self.save()
        return {
            "now": rfc3339_full(self.now()),
            "offset_seconds": self.data["clock_offset_seconds"],
            "finished_installation": finished,
        }

    def token_ttl(self) -> float:
        ttl = self.faults.get("token_ttl")
        return float(ttl) if ttl is not None else float(self.config.token_ttl)

    # ----------------------------------------------------------------------------------------
    # JSON views
    # ----------------------------------------------------------------------------------------

    def _date(self, ts: float) -> str:
        if self.config.ca_date_format == "rfc3339":
            return rfc3339_s(ts)
        return pki.utc(ts).strftime("%Y-%m-%d")

    def ca_json(self, ca: dict[str, Any]) -> dict[str, Any]:
        out = {
            "guid": ca["guid"],
            "issuer": ca["issuer"],
            "created_on": self._date(ca["created_at"]),
            "expires_on": self._date(ca["expires_at"]),
            "active": ca["active"],
            "cert_pem": ca["cert_pem"],
        }
        if self.config.answer_style == "2.10":
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

    def _with_warnings(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.faults.get("ca_status_207"):
            body = dict(body)
            body["warnings"] = list(self.faults.get("ca_warnings") or [DEFAULT_WARNING])
            return 207, body
        return 200, body

    # ----------------------------------------------------------------------------------------
    # installations: time-driven progress
    # ----------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> bool:
        """Finish every installation whose wall-clock time is up.  Returns True if state changed."""
        now = self.now() if now is None else now
        changed = False
        for inst in self.data["installations"]:
            if inst["status"] == "running" and now >= inst["started_at"] + inst["duration_seconds"]:
                self._finish(inst, inst["started_at"] + inst["duration_seconds"])
                changed = True
        if changed:
            self.save()
        return changed

    def _finish(self, inst: dict[str, Any], finished_at: float) -> None:
        inst["finished_at"] = finished_at
        if inst["will_fail"]:
            inst["status"] = "failed"
            inst["deployed"] = None
            return
        inst["status"] = "succeeded"
        plan = inst["plan"]
        deployed = set(inst["deployed_products"])
        for p in self.data["products"]:
            if p["guid"] in deployed:
                p["trusted_ca_guids"] = list(plan["trusted_ca_guids"])
                p["pending_action"] = "unchanged"
                p["last_deployed_at"] = finished_at
        reissued = []
        for item in plan["reissue"]:
            leaf = self.find_leaf(item["name"])
            if leaf is None:
                continue
            old = {k: leaf[k] for k in ("issuer_ca_guid", "authority_key_identifier", "serial_number")}
            self._set_leaf_cert(leaf, pki.load_cert(item["cert_pem"]), item["issuer_ca_guid"])
            leaf["history"].append(dict(old, replaced_at=finished_at, installation_id=inst["id"]))
            req = leaf.get("regeneration_requested_at")
            if leaf["pending_regeneration"] and req is not None and req <= inst["started_at"]:
                leaf["pending_regeneration"] = False
                leaf["regeneration_requested_at"] = None
            reissued.append(item["name"])
        inst["deployed"] = {
            "trusted_ca_guids": list(plan["trusted_ca_guids"]),
            "products": list(inst["deployed_products"]),
            "reissued_leaves": reissued,
            "leaf_issuers": {leaf["name"]: leaf["issuer_ca_guid"] for leaf in self.data["leaves"]},
        }

    # ----------------------------------------------------------------------------------------
    # certificate authorities (§2)
    # ----------------------------------------------------------------------------------------

    def list_cas(self) -> dict[str, Any]:
        cas = sorted(self.existing_cas(), key=lambda c: c["created_at"])
        return {"certificate_authorities": [self.ca_json(c) for c in cas]}

    def generate_ca(self, now: float | None = None) -> tuple[int, dict[str, Any]]:
        now = self.now() if now is None else now
        ca = self._new_ca_record(now, origin="generated")
        self.data["cas"].append(ca)
        self.save()
        body = self.ca_json(ca)
        if self.config.answer_style == "2.10":
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
        org = cert.subject.get_attributes_for_oid(pki.NameOID.ORGANIZATION_NAME)
        cn = cert.subject.get_attributes_for_oid(pki.NameOID.COMMON_NAME)
        issuer = str(org[0].value) if org else (str(cn[0].value) if cn else "Customer")
        ca = {
            "guid": secrets.token_hex(10),
            "issuer": issuer,
            # ASSUMPTION: created_on = upload time, expires_on = the certificate's notAfter.
            "created_at": now,
            "expires_at": cert.not_valid_after_utc.timestamp(),
            "active": False,
            "deleted": False,
            "deleted_at": None,
            "origin": "uploaded",
            "cert_pem": pki.cert_to_pem(cert),
            "nats_cert_pem": pki.cert_to_pem(cert),  # ASSUMPTION: an uploaded CA serves as its own NATS CA
            "key_pem": pki.key_to_pem(key),
            "subject_key_identifier": pki.ski_of(cert),
        }
        self.data["cas"].append(ca)
        self.save()
        return self._with_warnings(self.ca_json(ca))

    def _violation(self, error: str, violation: str, names: list[str], mitigation: str) -> ApiError:
        return ApiError(
            422,
            {
                "error": error,
                "safety_violations": [
                    {"violation": violation, "certificate_names": names, "migitation": mitigation}
                ],
            },
        )

    def _untrusting_products(self, ca_guid: str) -> list[dict[str, Any]]:
        return [p for p in self.data["products"] if ca_guid not in p["trusted_ca_guids"]]

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
        if self.config.answer_style == "2.10":
            # ASSUMPTION: which items Maestro reports as "updated" on activate.
            updated = [
                self._status_item(leaf, "Signing CA activated")
                for leaf in self.data["leaves"]
                if not leaf["excluded"] and not leaf["configurable"]
            ]
            body: dict[str, Any] = {
                "certificates": {"updated": updated, "excluded": self._excluded_items(), "update_failed": []}
            }
        else:
            body = {}
        return self._with_warnings(body)

    def regenerate(self, now: float | None = None) -> tuple[int, dict[str, Any]]:
        now = self.now() if now is None else now
        active = self.active_ca()
        targets = [leaf for leaf in self.data["leaves"] if not leaf["configurable"] and not leaf["excluded"]]
        if self.config.safety_checks:
            missing = self._untrusting_products(active["guid"])
            if missing:
                raise self._violation(
                    "Regenerating leaf certificates now would break trust",
                    "The active certificate authority has not been distributed to all trust stores",
                    [leaf["variable_path"] or leaf["property_reference"] for leaf in targets],
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
        if self.config.answer_style == "2.10":
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
            still = [
                leaf
                for leaf in self.data["leaves"]
                if leaf["issuer_ca_guid"] == guid and not leaf["configurable"] and not leaf["excluded"]
            ]
            if still:
                raise self._violation(
                    "Deleting this certificate authority would break deployed certificates",
                    "Deployed certificates are still signed by this certificate authority: no Apply Changes "
                    "has succeeded since the certificates were regenerated",
                    [leaf["variable_path"] or leaf["property_reference"] for leaf in still],
                    "Apply Changes to deploy the regenerated certificates, then retry. "
                    "Do not run earlier commands again.",
                )
        ca["deleted"] = True
        ca["deleted_at"] = now
        ca["active"] = False
        self.save()
        if self.config.answer_style == "2.10":
            updated = [
                self._status_item(leaf, "Certificate authority removed")
                for leaf in self.data["leaves"]
                if not leaf["excluded"] and not leaf["configurable"]
            ]
            body: dict[str, Any] = {
                "certificates": {"updated": updated, "excluded": self._excluded_items(), "update_failed": []}
            }
        else:
            body = {}
        return self._with_warnings(body)

    # ----------------------------------------------------------------------------------------
    # installations (§4)
    # ----------------------------------------------------------------------------------------

    def _validate_install_body(self, body: Any) -> dict[str, Any]:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ApiError(422, {"errors": ["Request body must be a JSON object"]})
        known = self.product_guids()
        errors: list[str] = []
        dp = body.get("deploy_products", "all")
        if isinstance(dp, str):
            if dp not in ("all", "none"):
                errors.append('deploy_products must be "all", "none" or an array of product guids')
        elif isinstance(dp, list):
            for g in dp:
                if not isinstance(g, str):
                    errors.append("deploy_products must be an array of product guids (strings)")
                elif g not in known:
                    errors.append(f"Product with guid '{g}' could not be found")
        else:
            errors.append('deploy_products must be "all", "none" or an array of product guids')
        iw = body.get("ignore_warnings", False)
        if isinstance(iw, bool):
            ignore = iw
        elif isinstance(iw, str) and iw in ("true", "false"):
            ignore = iw == "true"
        else:
            errors.append('ignore_warnings must be a boolean (or the string "true"/"false")')
            ignore = False
        flv = body.get("force_latest_variables", False)
        if not isinstance(flv, bool):
            errors.append("force_latest_variables must be a boolean")
        errands = body.get("errands", {}) or {}
        if not isinstance(errands, dict):
            errors.append("errands must be an object keyed by product guid")
            errands = {}
        for g, spec in errands.items():
            if g not in known:
                errors.append(f"Product with guid '{g}' could not be found")
                continue
            if not isinstance(spec, dict):
                errors.append(f"errands for '{g}' must be an object")
                continue
            for k, v in spec.items():
                if k not in ("run_post_deploy", "run_pre_delete"):
                    errors.append(f"errands for '{g}': unknown key '{k}'")
                elif not isinstance(v, dict) or not all(
                    isinstance(n, str) and (isinstance(x, bool) or x in ("default", "when-changed"))
                    for n, x in v.items()
                ):
                    errors.append(
                        f"errands for '{g}'.{k} must map errand names to true, false or \"default\""
                    )
        if errors:
            # ASSUMPTION: validation failures answer 422 {"errors": [...]}.
            raise ApiError(422, {"errors": errors})
        return {
            "deploy_products": dp,
            "ignore_warnings": ignore,
            "force_latest_variables": flv,
            "errands": errands,
        }

    def set_director_properties(self, body: Any) -> dict[str, Any]:
        """``PUT /api/v0/staged/director/properties``: only the recreate flags om's --recreate-vms sets."""
        config = body.get("director_configuration") if isinstance(body, dict) else None
        if not isinstance(config, dict):
            raise ApiError(422, {"errors": ["director_configuration must be an object"]})
        flags = self.data.setdefault("director_recreate", {})
        for key in ("bosh_recreate_on_next_deploy", "bosh_director_recreate_on_next_deploy"):
            if key in config:
                if not isinstance(config[key], bool):
                    raise ApiError(422, {"errors": [f"{key} must be a boolean"]})
                flags[key] = config[key]
        self.save()
        return {}

    def start_installation(self, body: Any, user_name: str, now: float | None = None) -> dict[str, Any]:
        now = self.now() if now is None else now
        self.tick(now)
        request = self._validate_install_body(body)
        if self.running_installation() is not None:
            raise ApiError(409, INSTALL_IN_PROGRESS)
        dp = request["deploy_products"]
        if dp == "all":
            deployed = self.product_guids()
        else:
            chosen = [] if dp == "none" else list(dp)
            # The director is always deployed.
            deployed = [g for g in self.product_guids() if g == P_BOSH_GUID or g in chosen]
        existing = [c["guid"] for c in self.existing_cas()]
        active = self.active_ca()
        ca_cert = pki.load_cert(active["cert_pem"])
        ca_key = pki.load_key(active["key_pem"])
        reissue = []
        for leaf in self.data["leaves"]:
            if leaf["excluded"] or leaf["deployment"] not in deployed:
                continue
            orphan = leaf["issuer_ca_guid"] not in existing
            if not (leaf["pending_regeneration"] or orphan):
                continue
            old = pki.load_cert(leaf["cert_pem"])
            cert = pki.make_leaf(
                old.public_key(),
                leaf["name"],
                ca_cert,
                ca_key,
                pki.utc(now),
                pki.utc(now + REISSUE_VALIDITY_DAYS * 86400.0),
            )
            reissue.append(
                {
                    "name": leaf["name"],
                    "issuer_ca_guid": active["guid"],
                    "reason": "pending_regeneration" if leaf["pending_regeneration"] else "issuer_ca_deleted",
                    "cert_pem": pki.cert_to_pem(cert),
                }
            )
        will_fail = False
        if int(self.faults.get("fail_next_installs") or 0) > 0:
            self.faults["fail_next_installs"] = int(self.faults["fail_next_installs"]) - 1
            will_fail = True
        new_id = max([i["id"] for i in self.data["installations"]] or [0]) + 1
        inst = {
            "id": new_id,
            "user_name": user_name,
            "status": "running",
            "started_at": now,
            # The apply_seconds fault (tests) overrides --apply-seconds for installations started while armed.
            "duration_seconds": float(self.faults.get("apply_seconds") or self.config.apply_seconds),
            "finished_at": None,
            "will_fail": will_fail,
            "log_bytes_per_second": int(self.faults.get("log_bytes_per_second") or 0),
            "request": request,
            # ASSUMPTION: the recreate flags apply to the next deploy only and are cleared when it starts.
            "recreate_vms": dict(self.data.pop("director_recreate", {}) or {}),
            "deployed_products": deployed,
            "plan": {"trusted_ca_guids": existing, "signing_ca_guid": active["guid"], "reissue": reissue},
            "deployed": None,
        }
        self.data["installations"].append(inst)
        self.save()
        return {"install": {"id": new_id}}

    @staticmethod
    def install_summary(inst: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": inst["id"],
            "user_name": inst["user_name"],
            "status": inst["status"],
            "started_at": rfc3339_ms(inst["started_at"]),
            "finished_at": rfc3339_ms(inst["finished_at"]),
        }

    def list_installations(self, page_num: str | None, per_page: str | None) -> dict[str, Any]:
        items = sorted(self.data["installations"], key=lambda i: i["id"], reverse=True)
        if page_num is not None:
            try:
                pn = max(1, int(page_num))
                pp = max(1, int(per_page)) if per_page is not None else 100
            except ValueError:
                raise ApiError(422, {"errors": ["page_num and per_page must be integers"]}) from None
            items = items[(pn - 1) * pp : pn * pp]
        return {"installations": [self.install_summary(i) for i in items]}

    def get_installation(self, raw_id: str) -> dict[str, Any]:
        try:
            inst = self.find_installation(int(raw_id))
        except ValueError:
            inst = None
        if inst is None:
            # ASSUMPTION: 404 body wording.
            raise ApiError(404, {"errors": [f"Installation with id '{raw_id}' not found"]})
        return inst

    # ----------------------------------------------------------------------------------------
    # logs
    # ----------------------------------------------------------------------------------------

    def log_events(self, inst: dict[str, Any]) -> list[tuple[float, str, Any]]:
        """Deterministic (offset_seconds, kind, payload) events of an installation, in order.

        kind is "line" (payload: text), "step_started"/"step_finished" (payload: dict).
        """
        dur = float(inst["duration_seconds"])
        start = float(inst["started_at"])
        steps: list[tuple[str, str]] = [
            (
                "bosh_director",
                "/usr/local/bin/bosh --no-color --non-interactive --tty create-env "
                "/var/tempest/workspaces/default/deployments/bosh.yml",
            ),
            (
                "cloud_config",
                "/usr/local/bin/bosh --no-color --non-interactive --tty update-cloud-config "
                "/var/tempest/workspaces/default/cloud_config.yml",
            ),
        ]
        for g in inst["deployed_products"]:
            if g != P_BOSH_GUID:
                steps.append(
                    (
                        f"deploy_{g}",
                        f"/usr/local/bin/bosh --no-color --non-interactive --tty "
                        f"--deployment={g} deploy /var/tempest/workspaces/default/deployments/{g}.yml",
                    )
                )
        events: list[tuple[float, str, Any]] = []
        n = len(steps)
        # A few lines per second; never fewer than ~12 progress lines, never more than ~400.
        interval = max(dur / 400.0, min(0.25, dur / 12.0), 0.01)
        pad = int(inst.get("log_bytes_per_second") or 0) * interval

        def ts(off: float) -> str:
            return pki.utc(start + off).strftime("%Y-%m-%d %H:%M:%S")

        for i, (sid, cmd) in enumerate(steps):
            s0, s1 = dur * i / n, dur * (i + 1) / n
            events.append((s0, "step_started", {"type": "step_started", "id": sid}))
            events.append((s0, "line", f'===== {ts(s0)} UTC Running "{cmd}"'))
            k = 1
            t = s0 + interval
            while t < s1:
                events.append(
                    (
                        t,
                        "line",
                        f"Task {100 + inst['id']} | {pki.utc(start + t).strftime('%H:%M:%S')} | "
                        f"Updating instance {sid}: {sid}/{k % 7} ({k:05d})",
                    )
                )
                if pad > 0:
                    filler = f"  debug {sid} {k:05d} "
                    events.append((t, "line", (filler * (int(pad) // len(filler) + 1))[: max(1, int(pad))]))
                k += 1
                t = s0 + k * interval
            last = i == n - 1
            code = 1 if (last and inst["will_fail"]) else 0
            events.append(
                (
                    s1,
                    "line",
                    f'===== {ts(s1)} UTC Finished "{cmd}"; Duration: {int(s1 - s0)}s; Exit Status: {code}',
                )
            )
            events.append((s1, "step_finished", {"type": "step_finished", "id": sid, "exit_code": code}))
        if inst["will_fail"]:
            events.append((dur, "line", "Exited with 1."))
        else:
            events.append((dur, "line", f"===== {ts(dur)} UTC Finished all steps"))
            events.append((dur, "line", "Cleanup complete"))
            events.append((dur, "line", "Exited Successfully"))
        return events

    def visible_events(self, inst: dict[str, Any], now: float | None = None) -> list[tuple[float, str, Any]]:
        now = self.now() if now is None else now
        events = self.log_events(inst)
        if inst["status"] != "running":
            return events
        elapsed = now - float(inst["started_at"])
        return [e for e in events if e[0] <= elapsed and e[0] < float(inst["duration_seconds"])]

    def installation_logs(self, inst: dict[str, Any], now: float | None = None) -> str:
        lines = [e[2] for e in self.visible_events(inst, now) if e[1] == "line"]
        return "".join(line + "\n" for line in lines)

    # ----------------------------------------------------------------------------------------
    # products, pending changes, deployed certificates, credentials
    # ----------------------------------------------------------------------------------------

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

    def deployed_certificates(
        self, expires_within: str | None, show_excluded_only: str | None, now: float | None = None
    ) -> dict[str, Any]:
        now = self.now() if now is None else now
        limit = parse_expires_within(expires_within) if expires_within is not None else None
        items = []
        for leaf in self.data["leaves"]:
            if limit is not None and leaf["valid_until"] > now + limit:
                continue
            if show_excluded_only == "true" and not leaf["excluded"]:
                continue
            item = {
                "issuer": leaf["issuer_dn"],
                "valid_from": rfc3339_s(leaf["valid_from"]),
                "valid_until": rfc3339_s(leaf["valid_until"]),
                "configurable": leaf["configurable"],
                "property_reference": leaf["property_reference"],
                "property_type": leaf["property_type"],
                "product_guid": leaf["product_guid"],
                "location": leaf["location"],
                "variable_path": leaf["variable_path"],
                "is_ca": leaf["is_ca"],
            }
            if self.config.answer_style == "2.10":
                item["rotation_procedure_name"] = leaf["rotation_procedure_name"]
                item["rotation_procedure_url"] = leaf["rotation_procedure_url"]
            items.append(item)
        return {"certificates": items}

    def _deployed_product(self, guid: str) -> dict[str, Any]:
        for p in self.data["products"]:
            if p["guid"] == guid:
                return p
        # ASSUMPTION: wording of the unknown-product 404.
        raise ApiError(404, {"errors": [f"Product with guid '{guid}' not found"]})

    def list_credentials(self, guid: str) -> dict[str, Any]:
        self._deployed_product(guid)
        refs = [
            leaf["property_reference"]
            for leaf in self.data["leaves"]
            if leaf["location"] == "ops_manager" and leaf["product_guid"] == guid
        ]
        return {"credentials": refs}

    def get_credential(self, guid: str, ref: str) -> dict[str, Any]:
        self._deployed_product(guid)
        for leaf in self.data["leaves"]:
            if (
                leaf["location"] == "ops_manager"
                and leaf["product_guid"] == guid
                and leaf["property_reference"] == ref
            ):
                return {
                    "credential": {
                        "type": leaf["property_type"] or "rsa_cert_credentials",
                        "value": {"cert_pem": leaf["cert_pem"], "private_key_pem": self.data["leaf_key_pem"]},
                    }
                }
        raise ApiError(404, {"errors": [f"Credential '{ref}' not found for product '{guid}'"]})

    # ----------------------------------------------------------------------------------------
    # control surface views
    # ----------------------------------------------------------------------------------------

    def simulator_state(self, now: float | None = None) -> dict[str, Any]:
        now = self.now() if now is None else now
        cas = []
        for c in sorted(self.existing_cas(), key=lambda c: c["created_at"]):
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
        for i in sorted(self.data["installations"], key=lambda i: i["id"], reverse=True):
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

    # ----------------------------------------------------------------------------------------
    # faults
    # ----------------------------------------------------------------------------------------

    def apply_faults(self, body: Any, now: float | None = None) -> None:
        """Validate and apply a POST /_simulator/faults body.  Raises ValueError on bad input."""
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        allowed = {
            "fail_next_installs",
            "status_burst",
            "drop_next",
            "latency",
            "revoke_tokens",
            "token_ttl",
            "ca_status_207",
            "ca_warnings",
            "regenerate_failed",
            "stage_pending_change",
            "clear_pending_changes",
            "log_bytes_per_second",
            "apply_seconds",
        }
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        new = copy.deepcopy(self.faults)
        if "fail_next_installs" in body:
            v = body["fail_next_installs"]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError("fail_next_installs must be a non-negative integer")
            new["fail_next_installs"] = v
        for key in ("status_burst", "drop_next", "latency"):
            if key in body:
                new[key] = _validate_matcher(key, body[key])
        if "token_ttl" in body:
            v = body["token_ttl"]
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
                raise ValueError("token_ttl must be a positive number or null")
            new["token_ttl"] = v
        if "ca_status_207" in body:
            if not isinstance(body["ca_status_207"], bool):
                raise ValueError("ca_status_207 must be a boolean")
            new["ca_status_207"] = body["ca_status_207"]
        if "ca_warnings" in body:
            v = body["ca_warnings"]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError("ca_warnings must be a list of strings")
            new["ca_warnings"] = v
        if "regenerate_failed" in body:
            v = body["regenerate_failed"]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError("regenerate_failed must be a list of leaf names")
            bad = [x for x in v if x not in LEAF_NAMES]
            if bad:
                raise ValueError(f"unknown leaf names {bad}; known: {LEAF_NAMES}")
            new["regenerate_failed"] = v
        if "log_bytes_per_second" in body:
            v = body["log_bytes_per_second"]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError("log_bytes_per_second must be a non-negative integer")
            new["log_bytes_per_second"] = v
        if "apply_seconds" in body:
            v = body["apply_seconds"]
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise ValueError("apply_seconds must be a non-negative number or null")
            new["apply_seconds"] = v
        stage = body.get("stage_pending_change")
        if stage is not None:
            if not isinstance(stage, dict) or stage.get("product_guid") not in self.product_guids():
                raise ValueError(f"stage_pending_change.product_guid must be one of {self.product_guids()}")
            action = stage.get("action", "update")
            if action not in ("install", "update", "delete", "unchanged"):
                raise ValueError("stage_pending_change.action must be install, update, delete or unchanged")
        if body.get("revoke_tokens") not in (None, True, False):
            raise ValueError("revoke_tokens must be a boolean")
        if body.get("clear_pending_changes") not in (None, True, False):
            raise ValueError("clear_pending_changes must be a boolean")
        # all valid: apply
        self.data["faults"] = new
        if body.get("clear_pending_changes"):
            for p in self.data["products"]:
                p["pending_action"] = "unchanged"
        if stage is not None:
            for p in self.data["products"]:
                if p["guid"] == stage["product_guid"]:
                    p["pending_action"] = stage.get("action", "update")
        if body.get("revoke_tokens"):
            self.data["revoked_before"] = self.now() if now is None else now
        self.save()

    def take_matching_fault(self, key: str, method: str, path: str) -> dict[str, Any] | None:
        """If fault ``key`` is armed and matches, consume one count and return it."""
        f = self.faults.get(key)
        if not f or int(f.get("count", 0)) <= 0:
            return None
        methods = f.get("methods")
        if methods and method.upper() not in [m.upper() for m in methods]:
            return None
        if not path.startswith(f.get("path_prefix") or "/"):
            return None
        taken = dict(f)
        f["count"] = int(f["count"]) - 1
        if f["count"] <= 0:
            self.faults[key] = None
        self.save()
        return taken


def _validate_matcher(key: str, v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError(f"{key} must be an object or null")
    allowed = {"count", "methods", "path_prefix"} | {
        "status_burst": {"status", "body"},
        "drop_next": {"when"},
        "latency": {"seconds"},
    }[key]
    unknown = set(v) - allowed
    if unknown:
        raise ValueError(f"{key}: unknown keys {sorted(unknown)}")
    out: dict[str, Any] = {}
    count = v.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"{key}.count must be a non-negative integer")
    out["count"] = count
    methods = v.get("methods")
    if methods is not None and (
        not isinstance(methods, list) or not all(isinstance(m, str) for m in methods)
    ):
        raise ValueError(f"{key}.methods must be a list of HTTP methods")
    out["methods"] = [m.upper() for m in methods] if methods else None
    prefix = v.get("path_prefix", "/")
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(f"{key}.path_prefix must be a string starting with /")
    out["path_prefix"] = prefix
    if key == "status_burst":
        status = v.get("status", 503)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise ValueError("status_burst.status must be an HTTP status code")
        out["status"] = status
        if "body" in v:
            if not isinstance(v["body"], str):
                raise ValueError("status_burst.body must be a string")
            out["body"] = v["body"]
    if key == "drop_next":
        when = v.get("when", "before")
        if when not in ("before", "after"):
            raise ValueError('drop_next.when must be "before" or "after"')
        out["when"] = when
    if key == "latency":
        secs = v.get("seconds")
        if not isinstance(secs, (int, float)) or isinstance(secs, bool) or secs < 0:
            raise ValueError("latency.seconds must be a non-negative number")
        out["seconds"] = float(secs)
    return out
