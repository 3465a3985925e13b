"""The gateway's HTTP application (FastAPI on uvicorn): a JSON API over the registry and the
scheduler, a WebSocket of each run's events, the dashboard, and the API's docs page.

Every route translates HTTP ⇄ one SDK call (``clients.aio.AsyncClient``) made with the
caller's own API key, so the services decide what the caller may do, exactly as for a gRPC
client; the gateway holds no key. The key comes from ``Authorization: Bearer`` or, for the
dashboard, from an HttpOnly cookie set by ``POST /api/v1/session``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import Depends, FastAPI, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from clients import __version__
from clients.aio import AsyncClient
from clients.errors import InvalidArgument, PermissionDenied, Unauthenticated, WtmError
from clients.health import OK, Check, check_health
from services.gateway import models as m
from services.gateway.settings import GatewaySettings

STATIC = Path(__file__).parent / "static"
KEY_COOKIE = "wtm_key"
NAMESPACE_COOKIE = "wtm_namespace"
NAMESPACE_HEADER = "wtm-namespace"
MAX_UPLOAD_BYTES = 64 * 1024 * 1024

# gRPC status -> HTTP status (Google's API design guide's mapping).
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def ws_close_code(code: str) -> int:
    """A WebSocket's close code for a refusal: 4000 + the HTTP status."""
    return 4000 + HTTP_STATUS.get(code, 500)


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": m.ErrorBody} for status in (400, 401, 403, 404, 409, 503)
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def error_response(exc: WtmError) -> JSONResponse:
    body = m.ErrorBody(error=m.ErrorDetail(code=exc.code, message=exc.message, field=exc.field))
    return JSONResponse(body.model_dump(), status_code=HTTP_STATUS.get(exc.code, 500))


def _same_origin(headers: Any) -> bool:
    """A browser's cross-site request carries another site's Origin: refused for calls
    that the cookie authenticates (the cookie is SameSite=Strict too)."""
    origin = headers.get("origin")
    if not origin:
        return True
    return urlparse(origin).netloc == headers.get("host", "")


def credentials(headers: Any, cookies: dict[str, str]) -> tuple[str, str, bool]:
    """(key, namespace, whether from the cookie) of a request."""
    header = headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), headers.get(NAMESPACE_HEADER, ""), False
    key = cookies.get(KEY_COOKIE, "")
    return key, headers.get(NAMESPACE_HEADER, "") or cookies.get(NAMESPACE_COOKIE, ""), True


def client_of(app: Any, key: str, namespace: str) -> AsyncClient:
    """The services' client, presenting ``key`` (refused here when keys are required and
    there is none)."""
    if app.state.settings.auth and not key:
        raise Unauthenticated(
            "no API key: send Authorization: Bearer <key>, or sign in on the dashboard",
            field="authorization",
        )
    base: AsyncClient = app.state.services
    return base.acting_as(key, namespace)


async def caller(request: Request) -> AsyncClient:
    """The dependency of every API route: the caller's client."""
    key, namespace, from_cookie = credentials(request.headers, request.cookies)
    if from_cookie and request.method not in ("GET", "HEAD") and not _same_origin(request.headers):
        raise PermissionDenied("cross-site request refused", field="origin")
    return client_of(request.app, key, namespace)


Caller = Annotated[AsyncClient, Depends(caller)]


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
        if not _same_origin(request.headers):
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

    # Runs ------------------------------------------------------------------------------

    @app.get("/api/v1/runs", response_model=m.RunPage, responses=ERRORS, tags=["runs"])
    async def list_runs(
        client: Caller,
        state: str = "",
        pipeline_id: str = "",
        task_id: str = "",
        batch_id: str = "",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str = "",
        label: Annotated[list[str] | None, Query(description="KEY=VALUE; repeatable")] = None,
    ) -> m.RunPage:
        """Runs newest first, without their steps' outputs; ``label``: only runs with every
        one of these labels (a schedule's runs: ``wtm.schedule=ID``)."""
        pairs = [text.partition("=") for text in label or []]
        if any(not sep for _, sep, _ in pairs):
            raise InvalidArgument("each must be KEY=VALUE", field="label")
        labels = {key: value for key, _, value in pairs}
        runs, token = await client.list_runs_page(
            state.upper(),
            pipeline_id,
            task_id,
            batch_id,
            created_after,
            created_before,
            page_size=page_size,
            page_token=page_token,
            labels=labels,
        )
        return m.RunPage(runs=[m.of(m.Run, r) for r in runs], next_page_token=token)

    @app.post(
        "/api/v1/runs", response_model=m.Run, status_code=201, responses=ERRORS, tags=["runs"]
    )
    async def submit_run(body: m.SubmitRun, client: Caller) -> m.Run:
        run = await client.submit(
            task=body.task,
            pipeline=body.pipeline,
            input=body.input,
            priority=body.priority,
            request_id=body.request_id,
            labels=body.labels,
            cache=body.cache,
            run_timeout=body.run_timeout_seconds,
            start_delay=body.start_delay_seconds,
        )
        return m.of(m.Run, run)

    @app.get("/api/v1/runs/{run_id}", response_model=m.Run, responses=ERRORS, tags=["runs"])
    async def get_run(run_id: str, client: Caller) -> m.Run:
        return m.of(m.Run, await client.get_run(run_id))

    @app.post("/api/v1/runs/{run_id}/cancel", response_model=m.Run, responses=ERRORS, tags=["runs"])
    async def cancel_run(run_id: str, client: Caller, body: m.CancelRun | None = None) -> m.Run:
        return m.of(m.Run, await client.cancel(run_id, (body or m.CancelRun()).reason))

    @app.post(
        "/api/v1/runs:cancel", response_model=m.CancelledRuns, responses=ERRORS, tags=["runs"]
    )
    async def cancel_runs(body: m.CancelRuns, client: Caller) -> m.CancelledRuns:
        """Cancel every unfinished run that matches all the filters given (at least one)."""
        done = await client.cancel_runs(
            body.reason,
            batch_id=body.batch_id,
            labels=body.labels,
            task_id=body.task_id,
            pipeline_id=body.pipeline_id,
        )
        return m.CancelledRuns(
            cancelled=[r.run_id for r in done.cancelled],
            ended=[r.run_id for r in done.ended],
            not_theirs=done.not_theirs,
        )

    @app.post("/api/v1/runs:resume", response_model=m.ResumedRuns, responses=ERRORS, tags=["runs"])
    async def resume_runs(body: m.ResumeRuns, client: Caller) -> m.ResumedRuns:
        """Resume every run that matches all the filters given (at least one) and did not
        complete: each a new run taking over what its run completed, each once."""
        done = await client.resume_runs(
            batch_id=body.batch_id,
            labels=body.labels,
            task_id=body.task_id,
            pipeline_id=body.pipeline_id,
            latest=body.latest,
        )
        return m.ResumedRuns(
            resumed=[m.ResumedRun(run_id=was, resumed_as=r.run_id) for was, r in done.resumed],
            refused=[m.RefusedRun(run_id=was, error=why) for was, why in done.refused],
        )

    @app.post(
        "/api/v1/runs/{run_id}/rerun",
        response_model=m.Run,
        status_code=201,
        responses=ERRORS,
        tags=["runs"],
    )
    async def rerun(run_id: str, client: Caller, body: m.Rerun | None = None) -> m.Run:
        """Run again what the run ran, on its input: a new run of the same version (the
        latest with ``latest``), labelled ``wtm.rerun_of``; with ``from_failure``, a run that
        failed, was cancelled or timed out resumes, its completed steps taken over."""
        body = body or m.Rerun(latest=False, request_id="", from_failure=False)
        again = await client.rerun(run_id, body.latest, body.request_id, body.from_failure)
        return m.of(m.Run, again)

    @app.websocket("/api/v1/runs/{run_id}/events")
    async def watch_run(websocket: WebSocket, run_id: str, after: str = "") -> None:
        """A run's events as JSON messages (``models.Event``), from the beginning or after
        the event id ``after``, until the run ends; then the socket closes normally (1000).
        A refusal closes it with 4000 + the HTTP status (4401, 4404...) and the message."""
        key, namespace, from_cookie = credentials(websocket.headers, websocket.cookies)
        if from_cookie and not _same_origin(websocket.headers):
            await websocket.close(code=4403, reason="cross-site request refused")
            return
        await websocket.accept()
        try:
            client = client_of(websocket.app, key, namespace)
            async for event in client.watch(run_id, after_event_id=after):
                await websocket.send_text(m.of(m.Event, event).model_dump_json())
            await websocket.close(code=1000)
        except WtmError as exc:
            await websocket.send_text(bytes(error_response(exc).body).decode())
            await websocket.close(code=ws_close_code(exc.code), reason=exc.message[:120])
        except WebSocketDisconnect:
            return

    # Catalog ---------------------------------------------------------------------------

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

    # Fleet -----------------------------------------------------------------------------

    @app.get("/api/v1/executors", response_model=list[m.Executor], responses=ERRORS, tags=["fleet"])
    async def list_executors(client: Caller) -> list[m.Executor]:
        return [m.of(m.Executor, e) for e in await client.list_executors()]

    @app.post(
        "/api/v1/executors:pause", response_model=m.ExecutorPause, responses=ERRORS, tags=["fleet"]
    )
    async def pause_executor(body: m.PauseExecutor, client: Caller) -> m.ExecutorPause:
        """Give an executor no new step (a cordon) until it is resumed; its running steps go
        on. Operators and admins."""
        return m.of(m.ExecutorPause, await client.pause_executor(body.executor_id, body.reason))

    @app.post(
        "/api/v1/executors:resume",
        response_model=m.ExecutorResumed,
        responses=ERRORS,
        tags=["fleet"],
    )
    async def resume_executor(body: m.ResumeExecutor, client: Caller) -> m.ExecutorResumed:
        """Give a paused executor work again, and end a resting one's rest."""
        done = await client.resume_executor(body.executor_id)
        return m.ExecutorResumed(
            executor_id=body.executor_id, resumed=done.resumed, rest_ended=done.rest_ended
        )

    @app.get("/api/v1/queues", response_model=m.Queues, responses=ERRORS, tags=["fleet"])
    async def list_queues(client: Caller) -> m.Queues:
        queues, delayed = await client.list_queues()
        return m.Queues(
            queues=[m.Queue(**dataclasses.asdict(q), stranded=q.stranded) for q in queues],
            delayed=delayed,
        )

    @app.post("/api/v1/queues:pause", response_model=m.QueuePause, responses=ERRORS, tags=["fleet"])
    async def pause_queue(body: m.PauseQueue, client: Caller) -> m.QueuePause:
        """Stop leasing a queue's waiting steps (every replica, within a second) until it is
        resumed; runs are still accepted and wait. Operators and admins."""
        return m.of(m.QueuePause, await client.pause_queue(body.queue, body.reason))

    @app.post(
        "/api/v1/queues:resume", response_model=m.QueueResumed, responses=ERRORS, tags=["fleet"]
    )
    async def resume_queue(body: m.ResumeQueue, client: Caller) -> m.QueueResumed:
        """Lease a paused queue's steps again."""
        return m.QueueResumed(queue=body.queue, resumed=await client.resume_queue(body.queue))

    @app.get(
        "/api/v1/task-limits", response_model=list[m.TaskLimits], responses=ERRORS, tags=["fleet"]
    )
    async def list_task_limits(client: Caller) -> list[m.TaskLimits]:
        """The task limits operators set in the namespace the key acts in, by task id."""
        return [m.of(m.TaskLimits, t) for t in await client.task_limits()]

    @app.post(
        "/api/v1/task-limits", response_model=m.TaskLimits | None, responses=ERRORS, tags=["fleet"]
    )
    async def set_task_limits(body: m.SetTaskLimits, client: Caller) -> m.TaskLimits | None:
        """Set a task's rate limit, its burst or its concurrency limit over its task.json's
        (Celery's ``control rate_limit``), on every replica within a second, queued steps too;
        null once all are the task's own again. Operators and admins."""
        found = await client.set_task_limits(
            body.task_id,
            body.rate_limit,
            body.concurrency_limit,
            body.reset_fields,
            body.rate_burst,
        )
        return m.of(m.TaskLimits, found) if found else None

    @app.get(
        "/api/v1/namespaces", response_model=list[m.Namespace], responses=ERRORS, tags=["fleet"]
    )
    async def list_namespaces(client: Caller) -> list[m.Namespace]:
        """The namespace the key acts in (every one in use with ``wtm-namespace: *``)."""
        return [m.Namespace(**vars(n), at_limit=n.at_limit) for n in await client.list_namespaces()]

    @app.get("/api/v1/schedules", response_model=list[m.Schedule], responses=ERRORS, tags=["fleet"])
    async def list_schedules(client: Caller) -> list[m.Schedule]:
        """The schedules of the namespace the key acts in: when each runs next, what it did."""
        return [m.of(m.Schedule, s) for s in await client.list_schedules()]

    @app.post(
        "/api/v1/schedules",
        response_model=m.Schedule,
        status_code=201,
        responses=ERRORS,
        tags=["fleet"],
    )
    async def create_schedule(body: m.CreateSchedule, client: Caller) -> m.Schedule:
        """Start a run of a task or a pipeline at the times a cron expression or an interval
        gives, or once at a time; its runs are the key's, labelled ``wtm.schedule``."""
        created = await client.create_schedule(
            body.schedule_id,
            task=body.task or None,
            pipeline=body.pipeline or None,
            input=body.input,
            cron=body.cron or None,
            every=body.every_seconds,
            at=body.at,
            timezone=body.timezone,
            priority=body.priority,
            labels=body.labels,
            overlap=body.overlap,
            paused=body.paused,
            run_timeout=body.run_timeout_seconds,
            start_time=body.start_time,
            end_time=body.end_time,
            due_time_field=body.due_time_field,
            jitter=body.jitter_seconds,
        )
        return m.of(m.Schedule, created)

    @app.post(
        "/api/v1/schedules/{schedule_id}/pause",
        response_model=m.Schedule,
        responses=ERRORS,
        tags=["fleet"],
    )
    async def pause_schedule(schedule_id: str, client: Caller) -> m.Schedule:
        """Stop a schedule from starting runs (its creator, or a role that may cancel any run)."""
        return m.of(m.Schedule, await client.pause_schedule(schedule_id))

    @app.post(
        "/api/v1/schedules/{schedule_id}/resume",
        response_model=m.Schedule,
        responses=ERRORS,
        tags=["fleet"],
    )
    async def resume_schedule(schedule_id: str, client: Caller) -> m.Schedule:
        """Let a paused schedule start runs again, from its next time after now."""
        return m.of(m.Schedule, await client.resume_schedule(schedule_id))

    @app.post(
        "/api/v1/schedules/{schedule_id}/trigger",
        response_model=m.Triggered,
        status_code=201,
        responses=ERRORS,
        tags=["fleet"],
    )
    async def trigger_schedule(schedule_id: str, client: Caller) -> m.Triggered:
        """Start the schedule's run now, paused or not; its times go on as they were."""
        run_id = await client.trigger_schedule(schedule_id)
        return m.Triggered(
            run_id=run_id, schedule=m.of(m.Schedule, await client.get_schedule(schedule_id))
        )

    @app.post(
        "/api/v1/schedules/{schedule_id}/backfill",
        response_model=list[m.BackfilledRun],
        responses=ERRORS,
        tags=["fleet"],
    )
    async def backfill_schedule(
        schedule_id: str, body: m.Backfill, client: Caller
    ) -> list[m.BackfilledRun]:
        """A run for each time of a past range, as that time would have started it; a time
        that already had its run keeps it (calling again starts only what is missing)."""
        runs = await client.backfill_schedule(
            schedule_id, body.start_time, body.end_time, body.max_running
        )
        return [m.of(m.BackfilledRun, r) for r in runs]

    @app.post(
        "/api/v1/schedules/{schedule_id}/backfill:cancel",
        response_model=m.BackfillCancelled,
        responses=ERRORS,
        tags=["fleet"],
    )
    async def cancel_backfill(schedule_id: str, client: Caller) -> m.BackfillCancelled:
        """Drop the backfill times still waiting (max_running); the runs started go on."""
        return m.BackfillCancelled(dropped=await client.cancel_backfill(schedule_id))

    @app.delete(
        "/api/v1/schedules/{schedule_id}", status_code=204, responses=ERRORS, tags=["fleet"]
    )
    async def delete_schedule(schedule_id: str, client: Caller) -> Response:
        """Delete a schedule (its creator, or a role that may cancel any run); its runs go on."""
        await client.delete_schedule(schedule_id)
        return Response(status_code=204)

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
