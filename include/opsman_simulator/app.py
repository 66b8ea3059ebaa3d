"""HTTP layer: the FastAPI application of one simulator, its routes behind the middleware.

- :mod:`.context`: :class:`Simulator`, the shared context (store, UAA, journal, lock, in-memory faults);
- :mod:`.routes`: one router per resource, including the ``/_simulator`` control surface;
- :mod:`.middleware`: journal, request faults and request serialisation in front of every route.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import ApiError
from .context import SIM_PREFIX, Simulator
from .middleware import SimulatorMiddleware
from .routes import certificate_authorities, control, installations, products, uaa

__all__ = ["SIM_PREFIX", "Simulator", "SimulatorMiddleware", "create_app"]


def create_app(sim: Simulator) -> SimulatorMiddleware:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        # ASSUMPTION: unknown routes answer {"errors": [...]} like the CommonErrors envelope.
        return JSONResponse({"errors": [str(exc.detail)]}, status_code=exc.status_code)

    for resource in (uaa, certificate_authorities, installations, products, control):
        app.include_router(resource.router(sim))
    return SimulatorMiddleware(app, sim)
