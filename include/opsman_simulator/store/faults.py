"""The faults armed through ``POST /_simulator/faults`` that live in the state (they survive a restart).

The middleware consumes the request matchers (``status_burst``, ``drop_next``, ``latency``) one call
at a time; the rest change what the API answers (``ca_status_207``, ``regenerate_failed``, ...) or
how the next installation runs (``fail_next_installs``, ``apply_seconds``, ``log_bytes_per_second``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ..catalog import LEAF_NAMES
from ..checks import is_count, is_number, is_string_list
from .base import StoreBase

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
        for key, rule in _VALUE_RULES.items():
            if key in body:
                new[key] = rule(key, body[key])
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


def _rule(accepts: Callable[[Any], bool], must_be: str) -> Callable[[str, Any], Any]:
    """A fault value stored as given when ``accepts`` it, else ``ValueError("<key> must be <must_be>")``."""

    def check(key: str, value: Any) -> Any:
        if not accepts(value):
            raise ValueError(f"{key} must be {must_be}")
        return value

    return check


_count = _rule(is_count, "a non-negative integer")


def _leaf_names(key: str, value: Any) -> list[str]:
    if not is_string_list(value):
        raise ValueError(f"{key} must be a list of leaf names")
    bad = [x for x in value if x not in LEAF_NAMES]
    if bad:
        raise ValueError(f"unknown leaf names {bad}; known: {LEAF_NAMES}")
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
        if not (is_count(status) and 100 <= status <= 599):
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


#: How each stored fault is checked, in the order the checks run (the first bad value is the one
#: reported).
_VALUE_RULES: dict[str, Callable[[str, Any], Any]] = {
    "fail_next_installs": _count,
    "status_burst": validate_matcher,
    "drop_next": validate_matcher,
    "latency": validate_matcher,
    "token_ttl": _rule(lambda v: v is None or (is_number(v) and v > 0), "a positive number or null"),
    "ca_status_207": _rule(lambda v: isinstance(v, bool), "a boolean"),
    "ca_warnings": _rule(is_string_list, "a list of strings"),
    "regenerate_failed": _leaf_names,
    "log_bytes_per_second": _count,
    "apply_seconds": _rule(lambda v: v is None or (is_number(v) and v >= 0), "a non-negative number or null"),
}
#: Faults that act once when posted.
_ACTIONS = frozenset({"revoke_tokens", "stage_pending_change", "clear_pending_changes"})
FAULT_KEYS = frozenset(_VALUE_RULES) | _ACTIONS
