"""The gateway's HTTP application (FastAPI on uvicorn): a JSON API over the registry and the
scheduler, a WebSocket of each run's events, the dashboard, and the API's docs page.

Every route translates HTTP ⇄ one SDK call (``clients.aio.AsyncClient``) made with the
caller's own API key, so the services decide what the caller may do, exactly as for a gRPC
client; the gateway holds no key. The key comes from ``Authorization: Bearer`` or, for the
dashboard, from an HttpOnly cookie set by ``POST /api/v1/session`` (``callers.py``). The
runs' routes are ``run_routes.py``, the operators' ``fleet_routes.py``; the rest are here.
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from clients import __version__
from clients.aio import AsyncClient
from clients.errors import PermissionDenied, Unauthenticated, WtmError
from clients.health import OK, Check, check_health
from services.gateway import fleet_routes, run_routes
from services.gateway import models as m
from services.gateway.callers import (
    ERRORS,
    KEY_COOKIE,
    NAMESPACE_COOKIE,
    Caller,
    client_of,
    credentials,
    error_response,
    same_origin,
)
from services.gateway.settings import GatewaySettings

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 64 * 1024 * 1024


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

    # Liveness, config, session -----------------------------------------------------------

    @app.get("/healthz", tags=["health"], summary="Liveness: the gateway answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/config", response_model=m.DashboardConfig, tags=["dashboard"])
    async def config() -> m.DashboardConfig:
        return m.DashboardConfig(
            jaeger_url=settings.jaeger_url, auth=settings.auth, version=__version__
        )

    @app.post(
        "/api/v1/session",
        response_model=m.Session,
        responses=ERRORS,
        tags=["dashboard"],
        summary="Sign in: check the key, then keep it in an HttpOnly cookie",
    )
    async def login(body: m.Login, request: Request, response: Response) -> m.Session:
        if not same_origin(request.headers):
            raise PermissionDenied("cross-site request refused", field="origin")
        client = client_of(request.app, body.api_key.strip(), body.namespace.strip())
        await client.list_runs_page(page_size=1)  # the services judge the key
        secure = bool(settings.tls_cert)
        for name, value in (
            (KEY_COOKIE, body.api_key.strip()),
            (NAMESPACE_COOKIE, body.namespace.strip()),
        ):
            response.set_cookie(
                name, value, httponly=True, samesite="strict", secure=secure, path="/"
            )
        return m.Session(authenticated=True, namespace=body.namespace.strip())

    @app.get("/api/v1/session", response_model=m.Session, tags=["dashboard"])
    async def session(request: Request) -> m.Session:
        key, namespace, _ = credentials(request.headers, request.cookies)
        if settings.auth and not key:
            return m.Session(authenticated=False)
        try:
            await client_of(request.app, key, namespace).list_runs_page(page_size=1)
        except (Unauthenticated, PermissionDenied):
            return m.Session(authenticated=False)
        return m.Session(authenticated=True, namespace=namespace)

    @app.delete("/api/v1/session", response_model=m.Session, tags=["dashboard"])
    async def logout(response: Response) -> m.Session:
        response.delete_cookie(KEY_COOKIE, path="/")
        response.delete_cookie(NAMESPACE_COOKIE, path="/")
        return m.Session(authenticated=False)

    # Runs (run_routes.py), then the catalog ----------------------------------------------

    app.include_router(run_routes.router)

    @app.get("/api/v1/tasks", response_model=list[m.Task], responses=ERRORS, tags=["catalog"])
    async def list_tasks(
        client: Caller,
        task_id: str = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[m.Task]:
        """Task versions by task id, newest version first."""
        found = []
        tasks = client.list_tasks(task_id=task_id) if task_id else client.list_tasks()
        async for t in tasks:
            found.append(m.of(m.Task, t))
            if len(found) >= limit:
                break
        return found

    @app.get("/api/v1/tasks/{ref}", response_model=m.Task, responses=ERRORS, tags=["catalog"])
    async def get_task(ref: str, client: Caller) -> m.Task:
        """One task version: ``task_id`` (latest) or ``task_id@version``."""
        return m.of(m.Task, await client.get_task(ref))

    @app.get(
        "/api/v1/pipelines", response_model=list[m.Pipeline], responses=ERRORS, tags=["catalog"]
    )
    async def list_pipelines(
        client: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 200
    ) -> list[m.Pipeline]:
        found = []
        async for p in client.list_pipelines():
            found.append(m.of(m.Pipeline, p))
            if len(found) >= limit:
                break
        return found

    @app.get(
        "/api/v1/pipelines/{ref}", response_model=m.Pipeline, responses=ERRORS, tags=["catalog"]
    )
    async def get_pipeline(ref: str, client: Caller) -> m.Pipeline:
        """One pipeline version: ``pipeline_id`` (latest) or ``pipeline_id@version``."""
        return m.of(m.Pipeline, await client.get_pipeline(ref))

    # The fleet and schedules (fleet_routes.py) ------------------------------------------

    app.include_router(fleet_routes.router)

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

    # Artifacts -------------------------------------------------------------------------

    @app.post(
        "/api/v1/artifacts",
        response_model=m.ArtifactRef,
        status_code=201,
        responses=ERRORS,
        tags=["artifacts"],
        summary="Store the request body as an artifact (for a run's input)",
    )
    async def upload_artifact(
        request: Request, client: Caller, filename: Annotated[str, Query(min_length=1)]
    ) -> m.ArtifactRef:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                return JSONResponse(  # type: ignore[return-value]
                    m.ErrorBody(
                        error=m.ErrorDetail(
                            code="RESOURCE_EXHAUSTED",
                            message=f"larger than {MAX_UPLOAD_BYTES} bytes",
                            field="body",
                        )
                    ).model_dump(),
                    status_code=413,
                )
        return m.ArtifactRef(uri=await client.upload_artifact_data(filename, bytes(data)))

    @app.get(
        "/api/v1/artifacts",
        responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
        tags=["artifacts"],
    )
    async def download_artifact(uri: str, client: Caller) -> Response:
        data = await client.download_artifact(uri)
        kind = _image_type(data)
        name = Path(urlparse(uri).path).name or "artifact"
        disposition = "inline" if kind else "attachment"
        return Response(
            data,
            media_type=kind or mimetypes.guess_type(name)[0] or "application/octet-stream",
            headers={"Content-Disposition": f'{disposition}; filename="{name}"'},
        )

    # The dashboard ---------------------------------------------------------------------

    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def _image_type(data: bytes) -> str:
    """The image type of ``data`` by its magic bytes ("" when not a JPEG, PNG or GIF):
    only those are shown inline."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return ""
