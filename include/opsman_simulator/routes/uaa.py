"""The routes that need no token: UAA's token endpoint (docs/ops-manager-api.md §1) and ``/api/v0/info``."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..context import Simulator


def router(sim: Simulator) -> APIRouter:
    api = APIRouter()

    @api.post("/uaa/oauth/token")
    async def token(request: Request):
        raw = (await request.body()).decode("utf-8", "replace")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        body = sim.uaa.token(request.headers.get("authorization"), form)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @api.get("/api/v0/info")
    async def info():
        return {"info": {"version": sim.version}}

    return api
