"""The gateway's HTTP application (FastAPI on uvicorn): a JSON API over the registry and the
scheduler, a WebSocket of each run's events, the dashboard, and the API's docs page.

Every route translates HTTP ⇄ one SDK call (``clients.aio.AsyncClient``) made with the
caller's own API key, so the services decide what the caller may do, exactly as for a gRPC
client; the gateway holds no key. The key comes from ``Authorization: Bearer`` or, for the
dashboard, from an HttpOnly cookie set by ``POST /api/v1/session`` (``callers.py``). The
routes are in ``session_routes.py`` (the dashboard's session), ``run_routes.py``,
``catalog_routes.py`` (tasks, pipelines, artifacts) and ``fleet_routes.py`` (the
operators'); here, the application that holds them, its headers, and health.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from clients import __version__
from clients.aio import AsyncClient
from clients.errors import WtmError
from clients.health import OK, Check, check_health
from services.gateway import catalog_routes, fleet_routes, run_routes, session_routes
from services.gateway import models as m
from services.gateway.callers import ERRORS, Caller, error_response, invalid_request
from services.gateway.settings import GatewaySettings

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: GatewaySettings) -> FastAPI:
    """The application; its lifespan opens the channels to the registry and the scheduler."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = AsyncClient(
            settings.registry,
            settings.scheduler,
            timeout=settings.timeout,
            # No key of its own: an empty key file keeps the SDK from reading WTM_API_KEY or
            # WTM_API_KEY_FILE; every call is made with the caller's key (acting_as).
            api_key_file=os.devnull,
            tls_ca=settings.tls_ca,
            namespace="",
            raise_on_failure=False,
        )
        try:
            yield
        finally:
            await app.state.services.close()

    app = FastAPIOffline(
        title="Worker Task Manager gateway",
        version=__version__,
        description=(
            "A JSON API over the registry and the scheduler, and a WebSocket of each run's "
            "events. Authenticate with `Authorization: Bearer <API key>` (or the dashboard's "
            "session cookie); an optional `wtm-namespace` header picks the namespace for a "
            "key of every namespace. Errors are `{error: {code, message, field}}` with the "
            "gRPC status name as `code`."
        ),
        lifespan=lifespan,
        static_url="/docs-static",
    )
    app.state.settings = settings

    @app.exception_handler(WtmError)
    async def on_error(request: Request, exc: WtmError) -> JSONResponse:
        return error_response(exc)

    _unreadable_as_refused(app)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        docs = request.url.path.startswith(("/docs", "/redoc"))  # their pages script inline
        for name, value in SECURITY_HEADERS.items():
            if not (docs and name == "Content-Security-Policy"):
                response.headers.setdefault(name, value)
        return response

    @app.get("/healthz", tags=["health"], summary="Liveness: the gateway answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/api/v1/health",
        response_model=m.Health,
        responses={**ERRORS, 503: {"model": m.Health}},
        tags=["health"],
        summary="Every part: services, backing servers, executors, queues (503 when down)",
    )
    async def health(client: Caller) -> JSONResponse:
        report = await check_health(client, gateway_check=Check("gateway", OK, "answering"))
        return JSONResponse(report.to_dict(), status_code=200 if report.healthy else 503)

    for routes in (session_routes, run_routes, catalog_routes, fleet_routes):
        app.include_router(routes.router)

    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")  # the dashboard

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _unreadable_as_refused(app: FastAPI) -> None:
    """A request FastAPI cannot read is refused as the services refuse one: a 400 with the
    error body (``invalid_request``), where FastAPI answers a 422 of its own shape; and the
    API's document says so, without FastAPI's 422s."""

    @app.exception_handler(RequestValidationError)
    async def on_unreadable(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request(exc)

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for operations in default_openapi().get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
        return app.openapi_schema or default_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
