"""HTTP layer: the Ops Manager API routes, the /_simulator control surface and the fault /
journal middleware."""

from __future__ import annotations

import asyncio
import http
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .profiles import check_permission, profile_for, replay_event, root_ca_items, sse, step_info
from .state import ApiError, Config, Store, atomic_write, parse_expires_within, rfc3339_full
from .uaa import UAA

SIM_PREFIX = "/_simulator"
CURRENT_LOG_PATH = "/api/v0/installations/current_log"
_SECRET_WORDS = ("pass", "secret", "token", "key", "credential", "authorization")


def version_for(config: Config) -> str:
    # ASSUMPTION: legacy answers look like Ops Manager 2.9, "2.10" answers like 2.10 (README: Profiles).
    return (
        config.info_version or profile_for(config.profile, config.answer_style, config.safety_checks).version
    )


def redact_query(raw: str) -> str:
    """The query string for the journal, with values of secret-looking parameters redacted."""
    if not raw:
        return ""
    pairs = parse_qsl(raw, keep_blank_values=True)
    if not any(any(w in k.lower() for w in _SECRET_WORDS) for k, _ in pairs):
        return raw
    return urlencode(
        [(k, "[REDACTED]" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in pairs]
    )


class Journal:
    """Request journal: in memory, mirrored to ``journal.jsonl`` (append-only) in the state dir."""

    def __init__(self, state_dir: Path, persist: bool = True):
        self.path = Path(state_dir) / "journal.jsonl"
        self.persist = persist
        self.entries: list[dict[str, Any]] = []
        self.seq = 0
        if persist and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
                self.entries.append(e)
                self.seq = max(self.seq, int(e.get("seq", 0)))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def append(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        if not self.persist:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def clear(self) -> None:
        self.entries = []
        if self.persist:
            atomic_write(self.path, b"")


class Simulator:
    """Shared server-side context."""

    def __init__(self, config: Config):
        self.config = config
        Path(config.state_dir).mkdir(parents=True, exist_ok=True)
        self.store = Store(config)
        self.uaa = UAA(config, self.store)
        self.journal = Journal(config.state_dir, persist=config.persist)
        self.lock = asyncio.Lock()
        self.in_flight = 0
        #: The stream_cut fault (in memory): each of the next current_log streams ends after this many lines.
        self.stream_cuts: list[int] = []
        #: The unterminated_last_line fault: installation logs lose their final newline.
        self.unterminated_last_line = False
        #: The install_conflict fault: the answer to POST /api/v0/installations while one runs.
        self.install_conflict: dict[str, Any] | None = None

    @staticmethod
    def parse_stream_cut(value: Any) -> list[int] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            raise ValueError("stream_cut must be a list of line counts (integers >= 0)")
        return list(value)

    def faults_view(self) -> dict[str, Any]:
        return dict(
            self.store.faults,
            stream_cut=list(self.stream_cuts),
            unterminated_last_line=self.unterminated_last_line,
            install_conflict=self.install_conflict,
        )

    def take_stream_cut(self) -> int | None:
        return self.stream_cuts.pop(0) if self.stream_cuts else None

    async def ticker(self, interval: float = 0.2) -> None:
        """Finish installations on time even when nobody polls (so state.json is current)."""
        while True:
            await asyncio.sleep(interval)
            async with self.lock:
                try:
                    self.store.tick()
                except Exception:  # pragma: no cover - keep the server alive
                    pass


# --------------------------------------------------------------------------------------------
# middleware: journal, concurrency measurement, faults, request serialisation
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# the application
# --------------------------------------------------------------------------------------------


async def _json_body(request: Request, required: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        # ASSUMPTION: malformed JSON answers 400 {"errors": [...]}.
        raise ApiError(400, {"errors": ["The request body is not valid JSON"]}) from None


def create_app(sim: Simulator):
    store, uaa, config = sim.store, sim.uaa, sim.config
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        # ASSUMPTION: unknown routes answer {"errors": [...]} like the CommonErrors envelope.
        return JSONResponse({"errors": [str(exc.detail)]}, status_code=exc.status_code)

    profile = profile_for(config.profile, config.answer_style, config.safety_checks)

    def auth(request: Request) -> dict[str, Any]:
        payload = uaa.authenticate_header(request.headers.get("authorization"))
        check_permission(payload.get("scope"), request.method, request.url.path)
        return payload

    # ---------------------------------------------------------------- UAA
    @app.post("/uaa/oauth/token")
    async def token(request: Request):
        raw = (await request.body()).decode("utf-8", "replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        body = uaa.token(request.headers.get("authorization"), form)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # ---------------------------------------------------------------- info
    @app.get("/api/v0/info")
    async def info():
        return {"info": {"version": version_for(config)}}

    # ---------------------------------------------------------------- CAs (§2)
    @app.get("/api/v0/certificate_authorities")
    async def list_cas(request: Request):
        auth(request)
        return store.list_cas()

    @app.post("/api/v0/certificate_authorities/generate")
    async def generate_ca(request: Request):
        auth(request)
        await _json_body(request)  # empty body and {} are both fine
        status, body = store.generate_ca()
        return JSONResponse(body, status_code=status)

    @app.post("/api/v0/certificate_authorities")
    async def create_ca(request: Request):
        auth(request)
        status, body = store.create_ca(await _json_body(request))
        return JSONResponse(body, status_code=status)

    @app.post("/api/v0/certificate_authorities/active/regenerate")
    async def regenerate(request: Request):
        auth(request)
        await _json_body(request)
        status, body = store.regenerate()
        return JSONResponse(body, status_code=status)

    @app.post("/api/v0/certificate_authorities/{guid}/activate")
    async def activate(guid: str, request: Request):
        auth(request)
        await _json_body(request)
        status, body = store.activate_ca(guid)
        return JSONResponse(body, status_code=status)

    @app.delete("/api/v0/certificate_authorities/{guid}")
    async def delete_ca(guid: str, request: Request):
        auth(request)
        status, body = store.delete_ca(guid)
        return JSONResponse(body, status_code=status)

    @app.put("/api/v0/staged/director/properties")
    async def put_director_properties(request: Request):
        auth(request)
        return store.set_director_properties(await _json_body(request))

    # ---------------------------------------------------------------- installations (§4)
    @app.post("/api/v0/installations")
    async def post_installation(request: Request):
        who = auth(request)
        body = await _json_body(request)
        try:
            return store.start_installation(body, who.get("user_name") or "admin")
        except ApiError as err:
            if err.status == 409 and sim.install_conflict is not None:
                # The install_conflict fault: no source confirms 409 for "one is running" (README).
                raise ApiError(sim.install_conflict["status"], sim.install_conflict["body"]) from None
            raise

    @app.get("/api/v0/installations")
    async def list_installations(request: Request):
        auth(request)
        store.tick()
        q = request.query_params
        return store.list_installations(q.get("page_num"), q.get("per_page"))

    @app.get("/api/v0/installations/current_log")
    async def current_log(request: Request):
        auth(request)
        if profile.current_log == "absent":
            # ASSUMPTION: an Ops Manager without the endpoint answers like any unknown route.
            raise ApiError(404, {"errors": ["Not Found"]})
        store.tick()
        inst = store.running_installation()
        cut = sim.take_stream_cut()

        async def stream():
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

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.get("/api/v0/installations/{install_id}")
    async def get_installation(install_id: str, request: Request):
        auth(request)
        store.tick()
        return {"status": store.get_installation(install_id)["status"]}

    @app.get("/api/v0/installations/{install_id}/logs")
    async def get_installation_logs(install_id: str, request: Request):
        auth(request)
        store.tick()
        logs = store.installation_logs(store.get_installation(install_id))
        if sim.unterminated_last_line:
            # om's fixtures have logs whose last line has no newline ({"logs":"call #0\ncall #1"}).
            logs = logs.removesuffix("\n")
        return {"logs": logs}

    # ---------------------------------------------------------------- products, changes (§5)
    @app.get("/api/v0/staged/pending_changes")
    async def pending_changes(request: Request):
        auth(request)
        store.tick()
        return store.pending_changes()

    @app.get("/api/v0/staged/products")
    async def staged_products(request: Request):
        auth(request)
        return store.products_json()

    @app.get("/api/v0/deployed/products")
    async def deployed_products(request: Request):
        auth(request)
        return store.products_json()

    # ---------------------------------------------------------------- certificates (§3)
    @app.get("/api/v0/deployed/certificates")
    async def deployed_certificates(request: Request):
        auth(request)
        store.tick()
        q = request.query_params
        body = store.deployed_certificates(q.get("expires_within"), q.get("show_excluded_from_rotation_only"))
        if profile.root_cas_in_deployed_certificates:
            limit = q.get("expires_within")
            until = store.now() + parse_expires_within(limit) if limit is not None else None
            body["certificates"] = (
                root_ca_items(store.existing_cas(), until, config.answer_style == "2.10")
                + body["certificates"]
            )
        return body

    @app.get("/api/v0/deployed/products/{guid}/credentials")
    async def list_credentials(guid: str, request: Request):
        auth(request)
        return store.list_credentials(guid)

    @app.get("/api/v0/deployed/products/{guid}/credentials/{ref}")
    async def get_credential(guid: str, ref: str, request: Request):
        auth(request)
        store.tick()
        return store.get_credential(guid, ref)

    # ---------------------------------------------------------------- control surface
    @app.get(SIM_PREFIX + "/journal")
    async def get_journal():
        return {"entries": sorted(sim.journal.entries, key=lambda e: e["seq"])}

    @app.delete(SIM_PREFIX + "/journal")
    async def clear_journal():
        sim.journal.clear()
        store.max_concurrent_requests = sim.in_flight
        return {"entries": []}

    @app.get(SIM_PREFIX + "/state")
    async def get_state():
        store.tick()
        body = store.simulator_state()
        body["config"].update(
            profile=config.profile,
            version=version_for(config),
            role=config.role,
            extra_users=[{"name": name, "role": role} for name, _, role in config.extra_users],
        )
        return body

    @app.get(SIM_PREFIX + "/faults")
    async def get_faults():
        return sim.faults_view()

    async def control_body(request: Request) -> Any:
        """A control call's JSON body ({} when empty); ValueError when it is not JSON."""
        raw = await request.body()
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ValueError("body is not valid JSON") from None

    @app.post(SIM_PREFIX + "/faults")
    async def post_faults(request: Request):
        try:
            body = await control_body(request)
            cuts = sim.parse_stream_cut(body.pop("stream_cut", None)) if isinstance(body, dict) else None
            conflict = body.pop("install_conflict", None) if isinstance(body, dict) else None
            if conflict is not None and not (
                isinstance(conflict, dict)
                and isinstance(conflict.get("status"), int)
                and 400 <= conflict["status"] <= 599
            ):
                raise ValueError('install_conflict must be {"status": 4xx/5xx, "body": any JSON}')
            unterminated = body.pop("unterminated_last_line", None) if isinstance(body, dict) else None
            if unterminated is not None and not isinstance(unterminated, bool):
                raise ValueError("unterminated_last_line must be true or false")
            store.apply_faults(body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if cuts is not None:
            sim.stream_cuts = cuts
        if unterminated is not None:
            sim.unterminated_last_line = unterminated
        if conflict is not None:
            sim.install_conflict = {"status": conflict["status"], "body": conflict.get("body", {})}
        return sim.faults_view()

    @app.get(SIM_PREFIX + "/clock")
    async def get_clock():
        return {
            "now": rfc3339_full(store.now()),
            "offset_seconds": store.data.get("clock_offset_seconds", 0.0),
        }

    @app.post(SIM_PREFIX + "/clock")
    async def post_clock(request: Request):
        try:
            return store.move_clock(await control_body(request))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @app.post(SIM_PREFIX + "/reset")
    async def reset():
        store.reset()
        sim.stream_cuts, sim.unterminated_last_line, sim.install_conflict = [], False, None
        sim.journal.clear()
        store.max_concurrent_requests = 0
        return {"reset": True, "state": store.simulator_state()}

    @app.get(SIM_PREFIX + "/health")
    async def health():
        return {"ok": True}

    return SimulatorMiddleware(app, sim)
