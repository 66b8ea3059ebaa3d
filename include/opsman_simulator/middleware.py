"""The ASGI middleware in front of every route: journal, concurrency measurement, request faults,
and request serialisation.

Every API call is journalled and may meet an armed fault (latency, a dropped connection, a burst of
error statuses) before it reaches its route. Routes run one at a time under the simulator's lock,
so each store operation is atomic; only the long-lived ``current_log`` stream runs outside it.
"""

from __future__ import annotations

import asyncio
import http
from typing import Any

from .context import CURRENT_LOG_PATH, SIM_PREFIX, Simulator
from .journal import redact_query


async def _wait_disconnect(receive, timeout: float = 5.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
    except TimeoutError:
        return


class SimulatorMiddleware:
    def __init__(self, app, sim: Simulator):
        self.app = app
        self.sim = sim

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == SIM_PREFIX or path.startswith(SIM_PREFIX + "/"):
            async with self.sim.lock:
                await self.app(scope, receive, send)
            return
        await self._api_call(scope, receive, send)

    async def _api_call(self, scope, receive, send):
        sim = self.sim
        store = sim.store
        method = scope["method"].upper()
        path = scope["path"]
        entry = {
            "seq": sim.journal.next_seq(),
            "method": method,
            "path": path,
            "query": redact_query(scope.get("query_string", b"").decode("latin-1")),
            "status": 0,
            "started_at": store.now(),
            "finished_at": None,
            "dropped": False,
            "bytes": 0,  # response body bytes sent (for the API-politeness benchmark)
        }
        sim.in_flight += 1
        if sim.in_flight > store.max_concurrent_requests:
            store.max_concurrent_requests = sim.in_flight
        transport = (scope.get("state") or {}).get("_transport")
        try:
            latency = store.take_matching_fault("latency", method, path)
            if latency:
                await asyncio.sleep(latency["seconds"])
            drop = store.take_matching_fault("drop_next", method, path)
            if drop and (drop.get("when") == "before" or path == CURRENT_LOG_PATH):
                entry["dropped"] = True
                await self._drop(transport, receive)
                return
            burst = store.take_matching_fault("status_burst", method, path)
            if burst:
                await self._burst(burst, send, entry)
                return

            async def recording_send(message):
                if message["type"] == "http.response.start":
                    entry["status"] = message["status"]
                elif message["type"] == "http.response.body":
                    entry["bytes"] += len(message.get("body", b""))
                await send(message)

            if path == CURRENT_LOG_PATH:
                # A long-lived stream: must not hold the request lock.
                await self.app(scope, receive, recording_send)
                return
            if drop:  # drop "after": process the request, then lose the answer

                async def swallowing_send(message):
                    if message["type"] == "http.response.start":
                        entry["status"] = message["status"]

                async with sim.lock:
                    await self.app(scope, receive, swallowing_send)
                entry["dropped"] = True
                await self._drop(transport, receive)
                return
            async with sim.lock:
                await self.app(scope, receive, recording_send)
        finally:
            sim.in_flight -= 1
            entry["finished_at"] = store.now()
            sim.journal.append(entry)

    @staticmethod
    async def _drop(transport, receive) -> None:
        """Close the TCP connection without sending any HTTP response."""
        if transport is not None:
            transport.close()
        await _wait_disconnect(receive)

    @staticmethod
    async def _burst(burst: dict[str, Any], send, entry: dict[str, Any]) -> None:
        status = int(burst["status"])
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        body = burst.get("body") or f"<html><body><h1>{status} {phrase}</h1></body></html>"
        data = body.encode()
        entry["status"] = status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/html"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})
