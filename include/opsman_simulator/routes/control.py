"""The ``/_simulator/*`` control surface for tests: journal, state, faults, clock, reset, health.

Not part of Ops Manager's API: no token, and bad input answers 400 ``{"error": "..."}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..context import SIM_PREFIX, Simulator
from .common import control_call


def router(sim: Simulator) -> APIRouter:
    store, config = sim.store, sim.config
    api = APIRouter(prefix=SIM_PREFIX)

    @api.get("/journal")
    async def get_journal():
        return {"entries": sorted(sim.journal.entries, key=lambda e: e["seq"])}

    @api.delete("/journal")
    async def clear_journal():
        sim.clear_journal()
        return {"entries": []}

    @api.get("/state")
    async def get_state():
        store.tick()
        body = store.simulator_state()
        body["config"].update(
            profile=config.profile,
            version=sim.version,
            role=config.role,
            extra_users=[{"name": name, "role": role} for name, _, role in config.extra_users],
        )
        return body

    @api.get("/faults")
    async def get_faults():
        return sim.faults_view()

    @api.post("/faults")
    async def post_faults(request: Request):
        return await control_call(request, sim.apply_faults)

    @api.get("/clock")
    async def get_clock():
        return store.clock_view()

    @api.post("/clock")
    async def post_clock(request: Request):
        return await control_call(request, store.move_clock)

    @api.post("/reset")
    async def reset():
        sim.reset()
        return {"reset": True, "state": store.simulator_state()}

    @api.get("/health")
    async def health():
        return {"ok": True}

    return api
