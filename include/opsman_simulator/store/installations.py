"""Installations (Apply Changes, docs/ops-manager-api.md §4): start one, finish it when its time is up,
list and read them; and the staged director flags the next deploy picks up.

An installation is planned when it starts (which CAs the products will trust, which leaves it will
reissue under the active CA) and takes effect on the state only when it finishes successfully.
"""

from __future__ import annotations

from typing import Any

from .. import pki
from ..catalog import INSTALL_IN_PROGRESS, P_BOSH_GUID, REISSUE_VALIDITY_DAYS
from ..checks import flag
from ..config import ApiError
from ..timefmt import DAY_SECONDS, rfc3339_ms
from .base import StoreBase
from .records import deployed_record, set_leaf_cert

_DEPLOY_PRODUCTS_ERROR = 'deploy_products must be "all", "none" or an array of product guids'


class Installations(StoreBase):
    # ------------------------------------------------------------------------------------------
    # time-driven progress
    # ------------------------------------------------------------------------------------------

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
            set_leaf_cert(leaf, pki.load_cert(item["cert_pem"]), item["issuer_ca_guid"])
            leaf["history"].append(dict(old, replaced_at=finished_at, installation_id=inst["id"]))
            req = leaf.get("regeneration_requested_at")
            if leaf["pending_regeneration"] and req is not None and req <= inst["started_at"]:
                leaf["pending_regeneration"] = False
                leaf["regeneration_requested_at"] = None
            reissued.append(item["name"])
        inst["deployed"] = deployed_record(
            plan["trusted_ca_guids"], inst["deployed_products"], reissued, self.data["leaves"]
        )

    # ------------------------------------------------------------------------------------------
    # starting one
    # ------------------------------------------------------------------------------------------

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
                errors.append(_DEPLOY_PRODUCTS_ERROR)
        elif isinstance(dp, list):
            for g in dp:
                if not isinstance(g, str):
                    errors.append("deploy_products must be an array of product guids (strings)")
                elif g not in known:
                    errors.append(f"Product with guid '{g}' could not be found")
        else:
            errors.append(_DEPLOY_PRODUCTS_ERROR)
        ignore = flag(body.get("ignore_warnings", False))
        if ignore is None:
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

    def _reissue_plan(self, deployed: list[str], existing: list[str], now: float) -> list[dict[str, Any]]:
        """The leaves this installation reissues under the active CA: those regeneration marked, and
        those whose issuer was deleted, among the deployed products' leaves."""
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
                pki.utc(now + REISSUE_VALIDITY_DAYS * DAY_SECONDS),
            )
            reissue.append(
                {
                    "name": leaf["name"],
                    "issuer_ca_guid": active["guid"],
                    "reason": "pending_regeneration" if leaf["pending_regeneration"] else "issuer_ca_deleted",
                    "cert_pem": pki.cert_to_pem(cert),
                }
            )
        return reissue

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
        signing_ca_guid = self.active_ca()["guid"]
        reissue = self._reissue_plan(deployed, existing, now)
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
            "plan": {"trusted_ca_guids": existing, "signing_ca_guid": signing_ca_guid, "reissue": reissue},
            "deployed": None,
        }
        self.data["installations"].append(inst)
        self.save()
        return {"install": {"id": new_id}}

    # ------------------------------------------------------------------------------------------
    # reading them
    # ------------------------------------------------------------------------------------------

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
        items = self.installations_newest_first()
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
