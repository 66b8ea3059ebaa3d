"""Products and what they deploy (docs/ops-manager-api.md §3, §5): pending changes, staged and
deployed products, deployed certificates, credentials."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..context import Simulator
from .common import authenticator


def router(sim: Simulator) -> APIRouter:
    store = sim.store
    api = APIRouter(dependencies=[Depends(authenticator(sim))])

    @api.get("/api/v0/staged/pending_changes")
    async def pending_changes():
        store.tick()
        return store.pending_changes()

    @api.get("/api/v0/staged/products")
    async def staged_products():
        return store.products_json()

    @api.get("/api/v0/deployed/products")
    async def deployed_products():
        return store.products_json()

    @api.get("/api/v0/deployed/certificates")
    async def deployed_certificates(request: Request):
        store.tick()
        q = request.query_params
        return store.deployed_certificates(
            q.get("expires_within"),
            q.get("show_excluded_from_rotation_only"),
            with_root_cas=sim.profile.root_cas_in_deployed_certificates,
        )

    @api.get("/api/v0/deployed/products/{guid}/credentials")
    async def list_credentials(guid: str):
        return store.list_credentials(guid)

    @api.get("/api/v0/deployed/products/{guid}/credentials/{ref}")
    async def get_credential(guid: str, ref: str):
        store.tick()
        return store.get_credential(guid, ref)

    return api
