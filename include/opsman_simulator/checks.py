"""Type checks for JSON values, shared by every validation in the simulator.

JSON has no integers apart from numbers, and Python's ``bool`` is an ``int``: ``true`` is never a
count or a number here.
"""

from __future__ import annotations

from typing import Any


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    """A non-negative integer."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def flag(value: Any) -> bool | None:
    """A boolean as Ops Manager reads one from JSON or a query string: true/false or "true"/"false";
    None for anything else."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    return None


def is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)
