"""The faults armed through ``POST /_simulator/faults`` that live in the state (they survive a restart).

The middleware consumes the request matchers (``status_burst``, ``drop_next``, ``latency``) one call
at a time; the rest change what the API answers (``ca_status_207``, ``regenerate_failed``, ...) or
how the next installation runs (``fail_next_installs``, ``apply_seconds``, ``log_bytes_per_second``).
"""

from __future__ import annotations

import copy
from typing import Any

from ..catalog import LEAF_NAMES
from ..checks import is_count, is_number, is_string_list
from .base import StoreBase

FAULT_KEYS = frozenset(
    {
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
)
#: What each request matcher carries besides count, methods and path_prefix.
_MATCHER_KEYS = {"status_burst": {"status", "body"}, "drop_next": {"when"}, "latency": {"seconds"}}


class Faults(StoreBase):
    def token_ttl(self) -> float:
        """Lifetime of new tokens: the token_ttl fault while armed, else ``--token-ttl``."""
        ttl = self.faults.get("token_ttl")
        return float(ttl) if ttl is not None else float(self.config.token_ttl)

    def apply_faults(self, body: Any, now: float | None = None) -> None:
        """Validate and apply a POST /_simulator/faults body.  Raises ValueError on bad input."""
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        unknown = set(body) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        new = copy.deepcopy(self.faults)
        if "fail_next_installs" in body:
            new["fail_next_installs"] = _count("fail_next_installs", body["fail_next_installs"])
        for key in _MATCHER_KEYS:
            if key in body:
                new[key] = validate_matcher(key, body[key])
        if "token_ttl" in body:
            v = body["token_ttl"]
            if v is not None and (not is_number(v) or v <= 0):
                raise ValueError("token_ttl must be a positive number or null")
            new["token_ttl"] = v
        if "ca_status_207" in body:
            if not isinstance(body["ca_status_207"], bool):
                raise ValueError("ca_status_207 must be a boolean")
            new["ca_status_207"] = body["ca_status_207"]
        if "ca_warnings" in body:
            if not is_string_list(body["ca_warnings"]):
                raise ValueError("ca_warnings must be a list of strings")
            new["ca_warnings"] = body["ca_warnings"]
        if "regenerate_failed" in body:
            v = body["regenerate_failed"]
            if not is_string_list(v):
                raise ValueError("regenerate_failed must be a list of leaf names")
            bad = [x for x in v if x not in LEAF_NAMES]
            if bad:
                raise ValueError(f"unknown leaf names {bad}; known: {LEAF_NAMES}")
            new["regenerate_failed"] = v
        if "log_bytes_per_second" in body:
            new["log_bytes_per_second"] = _count("log_bytes_per_second", body["log_bytes_per_second"])
        if "apply_seconds" in body:
            v = body["apply_seconds"]
            if v is not None and (not is_number(v) or v < 0):
                raise ValueError("apply_seconds must be a non-negative number or null")
            new["apply_seconds"] = v
        stage = body.get("stage_pending_change")
        if stage is not None:
            if not isinstance(stage, dict) or stage.get("product_guid") not in self.product_guids():
                raise ValueError(f"stage_pending_change.product_guid must be one of {self.product_guids()}")
            action = stage.get("action", "update")
            if action not in ("install", "update", "delete", "unchanged"):
                raise ValueError("stage_pending_change.action must be install, update, delete or unchanged")
        for key in ("revoke_tokens", "clear_pending_changes"):
            if body.get(key) not in (None, True, False):
                raise ValueError(f"{key} must be a boolean")
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


def _count(name: str, value: Any) -> int:
    if not is_count(value):
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def validate_matcher(key: str, v: Any) -> dict[str, Any] | None:
    """A request matcher (status_burst, drop_next, latency) as stored, or ValueError."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError(f"{key} must be an object or null")
    unknown = set(v) - ({"count", "methods", "path_prefix"} | _MATCHER_KEYS[key])
    if unknown:
        raise ValueError(f"{key}: unknown keys {sorted(unknown)}")
    out: dict[str, Any] = {}
    out["count"] = _count(f"{key}.count", v.get("count", 1))
    methods = v.get("methods")
    if methods is not None and not is_string_list(methods):
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
        if not is_number(secs) or secs < 0:
            raise ValueError("latency.seconds must be a non-negative number")
        out["seconds"] = float(secs)
    return out
