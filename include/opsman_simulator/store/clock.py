"""Simulated time: the control surface moves it forward, and installations finish as it passes.

Moving the clock is how tests finish an installation, age a CA or expire a token without waiting.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from ..checks import is_number
from ..timefmt import rfc3339_full
from .installations import Installations

_CLOCK_BODIES = 'body must be one of {"advance_seconds": N}, {"now": RFC 3339}, {"finish_installation": true}'


class Clock(Installations):
    def clock_view(self) -> dict[str, Any]:
        """``GET /_simulator/clock``."""
        return {"now": rfc3339_full(self.now()), "offset_seconds": self.data.get("clock_offset_seconds", 0.0)}

    def move_clock(self, body: Any) -> dict[str, Any]:
        """Apply a ``POST /_simulator/clock`` body; raises ValueError on bad input. The clock only moves forward.

        ``{"advance_seconds": N}``, ``{"now": "2030-01-01T00:00:00Z"}`` or ``{"finish_installation": true}``
        (to the moment the running installation ends; nothing to do when none runs).
        """
        if not isinstance(body, dict) or len(body) != 1:
            raise ValueError(_CLOCK_BODIES)
        ((key, value),) = body.items()
        now = self.now()
        finished = None
        if key == "advance_seconds":
            if not is_number(value) or value < 0:
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
        self.data["clock_offset_seconds"] = self.clock_offset() + step
        self.tick()
        self.save()
        return {
            "now": rfc3339_full(self.now()),
            "offset_seconds": self.data["clock_offset_seconds"],
            "finished_installation": finished,
        }
