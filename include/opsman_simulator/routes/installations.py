"""Apply Changes (docs/ops-manager-api.md §4): start, list, status, logs, the ``current_log`` stream,
and the staged director flags (``--recreate-vms``) the next one picks up."""

# No ``from __future__ import annotations``: FastAPI reads the Annotated dependency below at
# definition time, and it names a local (the authenticator built for this simulator).
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ..config import ApiError
from ..context import CURRENT_LOG_PATH, Simulator
from . import log_stream
from .common import authenticator, json_body


def router(sim: Simulator) -> APIRouter:
    store = sim.store
    authenticate = authenticator(sim)
    api = APIRouter(dependencies=[Depends(authenticate)])

    @api.put("/api/v0/staged/director/properties")
    async def put_director_properties(request: Request):
        return store.set_director_properties(await json_body(request))

    @api.post("/api/v0/installations")
    async def post_installation(request: Request, who: Annotated[dict[str, Any], Depends(authenticate)]):
        body = await json_body(request)
        try:
            return store.start_installation(body, who.get("user_name") or "admin")
        except ApiError as err:
            if err.status == 409 and sim.install_conflict is not None:
                # The install_conflict fault: no source confirms 409 for "one is running" (README).
                raise ApiError(sim.install_conflict["status"], sim.install_conflict["body"]) from None
            raise

    @api.get("/api/v0/installations")
    async def list_installations(request: Request):
        store.tick()
        q = request.query_params
        return store.list_installations(q.get("page_num"), q.get("per_page"))

    @api.get(CURRENT_LOG_PATH)
    async def current_log():
        if sim.profile.current_log == "absent":
            # ASSUMPTION: an Ops Manager without the endpoint answers like any unknown route.
            raise ApiError(404, {"errors": ["Not Found"]})
        store.tick()
        stream = log_stream.current_log(sim, store.running_installation(), sim.take_stream_cut())
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @api.get("/api/v0/installations/{install_id}")
    async def get_installation(install_id: str):
        store.tick()
        return {"status": store.get_installation(install_id)["status"]}

    @api.get("/api/v0/installations/{install_id}/logs")
    async def get_installation_logs(install_id: str):
        store.tick()
        logs = store.installation_logs(store.get_installation(install_id))
        if sim.unterminated_last_line:
            # Ops Manager's logs can end without a newline (docs/ops-manager-api.md §8).
            logs = logs.removesuffix("\n")
        return {"logs": logs}

    return api
