"""``/api/v0/certificate_authorities...`` (docs/ops-manager-api.md §2)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..context import Simulator
from .common import authenticator, json_body

PREFIX = "/api/v0/certificate_authorities"


def router(sim: Simulator) -> APIRouter:
    store = sim.store
    api = APIRouter(prefix=PREFIX, dependencies=[Depends(authenticator(sim))])

    def answer(status_and_body: tuple[int, dict]) -> JSONResponse:
        status, body = status_and_body
        return JSONResponse(body, status_code=status)

    @api.get("")
    async def list_cas():
        return store.list_cas()

    @api.post("/generate")
    async def generate_ca(request: Request):
        await json_body(request)  # empty body and {} are both fine
        return answer(store.generate_ca())

    @api.post("")
    async def create_ca(request: Request):
        return answer(store.create_ca(await json_body(request)))

    @api.post("/active/regenerate")
    async def regenerate(request: Request):
        await json_body(request)
        return answer(store.regenerate())

    @api.post("/{guid}/activate")
    async def activate(guid: str, request: Request):
        await json_body(request)
        return answer(store.activate_ca(guid))

    @api.delete("/{guid}")
    async def delete_ca(guid: str):
        return answer(store.delete_ca(guid))

    return api
