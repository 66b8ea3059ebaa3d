"""What the routes share: reading JSON bodies, and the token check of the Ops Manager API routes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ..config import ApiError
from ..context import Simulator
from ..profiles import check_permission


def _parse_json(raw: bytes, empty: Any) -> Any:
    """``empty`` for a blank body, else its JSON value; ValueError when it is not JSON."""
    return json.loads(raw) if raw.strip() else empty


async def json_body(request: Request) -> Any:
    """An API call's JSON body (None when empty); 400 when it is not JSON."""
    try:
        return _parse_json(await request.body(), None)
    except ValueError:
        # ASSUMPTION: malformed JSON answers 400 {"errors": [...]}.
        raise ApiError(400, {"errors": ["The request body is not valid JSON"]}) from None


async def control_body(request: Request) -> Any:
    """A control call's JSON body ({} when empty); ValueError when it is not JSON."""
    try:
        return _parse_json(await request.body(), {})
    except ValueError:
        raise ValueError("body is not valid JSON") from None


async def control_call(request: Request, apply: Callable[[Any], Any]) -> Any:
    """``apply`` the control call's JSON body and answer its result; a ValueError answers 400."""
    try:
        return apply(await control_body(request))
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)


def authenticator(sim: Simulator) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """The dependency every Ops Manager API route has: a valid token whose role allows the call.

    Its value is the token's payload (a route that needs the user names it as a dependency again;
    FastAPI runs it once a request).
    """

    async def authenticate(request: Request) -> dict[str, Any]:
        payload = sim.uaa.authenticate_header(request.headers.get("authorization"))
        check_permission(payload.get("scope"), request.method, request.url.path)
        return payload

    return authenticate
