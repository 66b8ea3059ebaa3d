"""The 3.0 ``current_log`` stream (docs/ops-manager-api.md §8): Server-Sent Events of the running
installation, first its steps (``step_info``), then its log so far, then live until it ends (``exit``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from ..context import Simulator


def sse(event: str | None, data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n"


def step_info(events: list[tuple[float, str, Any]]) -> list[dict[str, Any]]:
    """The ``step_info`` array: every step of the installation, in order."""
    # ASSUMPTION: the element fields (id, description); the reference says "ids and descriptions".
    return [
        {"id": p["id"], "description": p.get("description", p["id"])}
        for _, kind, p in events
        if kind == "step_started"
    ]


def replay_event(kind: str, payload: Any) -> str:
    """One installation event as the 3.0 stream sends it: lines as data, steps as step_state_changed."""
    if kind == "line":
        return sse(None, payload)
    return sse("step_state_changed", payload)


async def current_log(sim: Simulator, inst: dict[str, Any] | None, cut: int | None) -> AsyncIterator[str]:
    """The stream of ``inst`` (None: nothing runs); ``cut``: the stream_cut fault's line count."""
    store = sim.store
    if inst is None:
        # ASSUMPTION: exact payload of the idle exit event.
        yield sse("exit", {"type": "exit", "code": 0, "message": "no install in progress"})
        return
    iid = inst["id"]
    # Reference §8: step_info (an array of the steps) first, then the whole log so far, then live.
    yield sse("step_info", step_info(store.log_events(inst)))
    sent = lines = 0
    while True:
        store.tick()
        cur = store.find_installation(iid)
        if cur is None:
            yield sse("exit", {"type": "exit", "code": 1, "message": "installation no longer exists"})
            return
        events = store.visible_events(cur)
        for _, kind, payload in events[sent:]:
            if cut is not None and kind == "line" and lines >= cut:
                return  # the stream_cut fault: the response ends without an exit event
            lines += kind == "line"
            sent += 1
            yield replay_event(kind, payload)
        if cur["status"] != "running":
            yield sse("exit", {"type": "exit", "code": 0 if cur["status"] == "succeeded" else 1})
            return
        await asyncio.sleep(0.1)
