"""The simulator's ASGI app served in-process, for tests that run thousands of short histories.

Why not the usual ``SimulatorProcess`` over HTTPS: a history is a few dozen API calls, and a real
TLS round trip through uvicorn costs about a millisecond of CPU on each side, plus the fsync of
every state change. Here the hook's own ``requests`` session gets a transport adapter
(:class:`AsgiAdapter`) that hands each request to the simulator's ASGI app on a private event loop
in the calling thread: the hook, its retries, token handling and error mapping, and the whole
simulator (middleware with journal and faults included) run unchanged; only the socket is gone.

What the socket did that the adapter now does:

- ``drop_next`` closes the connection without an answer: the adapter raises
  :class:`requests.ConnectionError` (or :class:`requests.ReadTimeout` when the test asked for
  timeouts), as requests does when the server hangs up.
- a worker killed mid-call: the adapter raises :class:`WorkerKilled` (a ``BaseException``, so no
  ``except Exception`` in the code under test can handle it), as a SIGKILL would end the task.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from opsman_simulator.app import Simulator, create_app
from opsman_simulator.state import Config

HOST = "opsman.in-process.invalid"
BASE_URL = f"https://{HOST}"


class WorkerKilled(BaseException):
    """The task's worker died while a request was on the wire (SIGKILL, OOM): nothing after it ran."""


class InProcessOpsManager:
    """One simulator (in memory, no files written but the token secret) and a way to call it."""

    def __init__(self, state_dir, **config: Any) -> None:
        self.config = Config(state_dir=state_dir, persist=False, **config)
        self.sim = Simulator(self.config)
        self.app = create_app(self.sim)
        self.loop = asyncio.new_event_loop()
        self.adapter = AsgiAdapter(self)
        #: What a dropped request turns into: "disconnect" (ConnectionError), "timeout", "kill".
        self.drop_as = "disconnect"
        self._initial = copy.deepcopy(self.sim.store.data)

    # -- control ---------------------------------------------------------------------------------
    def restore_initial(self) -> None:
        """Back to the state of the first start (same CA and leaves), journal and faults cleared.

        Cheaper than ``POST /_simulator/reset``, which makes a new root CA (an RSA key) every time.
        """
        store = self.sim.store
        store.data = copy.deepcopy(self._initial)
        store.data["clock_offset_seconds"] = 0.0
        self.sim.journal.entries = []
        store.max_concurrent_requests = 0
        self.drop_as = "disconnect"

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, _, data = self.call(
            method, "/_simulator" + path, body=json.dumps(body).encode() if body is not None else b""
        )
        if status != 200:
            raise AssertionError(f"{method} /_simulator{path} -> {status}: {data[:300]!r}")
        return json.loads(data)

    def faults(self, **kwargs: Any) -> dict[str, Any]:
        return self.control("POST", "/faults", kwargs)

    def clock(self, **body: Any) -> dict[str, Any]:
        return self.control("POST", "/clock", body)

    def finish_installation(self) -> int | None:
        return self.clock(finish_installation=True)["finished_installation"]

    def journal(self) -> list[dict[str, Any]]:
        return self.sim.journal.entries

    # -- transport ------------------------------------------------------------------------------
    def call(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]] = (), body: bytes = b""
    ) -> tuple[int, list, bytes]:
        """One request through the ASGI app; (status, headers, body). Status 0: dropped without an answer."""
        parts = urlsplit(target)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "https",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(b"host", HOST.encode()), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 443),
            "state": {},
        }
        sent_body = False
        answer: dict[str, Any] = {"status": 0, "headers": [], "body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        self.loop.run_until_complete(self.app(scope, receive, send))
        return answer["status"], answer["headers"], answer["body"]


class AsgiAdapter(BaseAdapter):
    """A requests transport adapter that serves requests from :class:`InProcessOpsManager`."""

    def __init__(self, server: InProcessOpsManager) -> None:
        super().__init__()
        self.server = server

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: D401
        parts = urlsplit(request.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        headers = [
            (k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in request.headers.items()
        ]
        status, raw_headers, data = self.server.call(request.method, target, headers, body)
        if status == 0:
            mode = self.server.drop_as
            if mode == "kill":
                raise WorkerKilled(f"{request.method} {parts.path}")
            if mode == "timeout":
                raise requests.ReadTimeout(f"read timed out ({request.method} {parts.path})", request=request)
            raise requests.ConnectionError(
                f"connection closed without an answer ({request.method} {parts.path})", request=request
            )
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(
            {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}
        )
        response._content = data
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        response.reason = ""
        return response

    def close(self) -> None:
        pass
