"""The gateway's routes of runs: list, submit, read, cancel, resume and run again, and a
run's events over a WebSocket. Each is one ``AsyncClient`` call made as the caller."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from clients.errors import InvalidArgument, WtmError
from services.gateway import models as m
from services.gateway.callers import (
    ERRORS,
    Caller,
    client_of,
    credentials,
    error_response,
    same_origin,
    ws_close_code,
)

router = APIRouter()


@router.get("/api/v1/runs", response_model=m.RunPage, responses=ERRORS, tags=["runs"])
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
    awaiting_signal: bool = False,
) -> m.RunPage:
    """Runs newest first, without their steps' outputs; ``task_id``, ``pipeline_id``: an id,
    or id@version for one version's runs; ``label``: only runs with every one of these labels
    (a schedule's runs: ``wtm.schedule=ID``); ``awaiting_signal``: only runs with a step
    waiting for a signal now."""
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
        awaiting_signal=awaiting_signal,
    )
    return m.RunPage(runs=[m.of(m.Run, r) for r in runs], next_page_token=token)


@router.post("/api/v1/runs", response_model=m.Run, status_code=201, responses=ERRORS, tags=["runs"])
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


@router.get("/api/v1/runs/{run_id}", response_model=m.Run, responses=ERRORS, tags=["runs"])
async def get_run(run_id: str, client: Caller) -> m.Run:
    return m.of(m.Run, await client.get_run(run_id))


@router.post("/api/v1/runs/{run_id}/cancel", response_model=m.Run, responses=ERRORS, tags=["runs"])
async def cancel_run(run_id: str, client: Caller, body: m.CancelRun | None = None) -> m.Run:
    return m.of(m.Run, await client.cancel(run_id, (body or m.CancelRun()).reason))


@router.post("/api/v1/runs:cancel", response_model=m.CancelledRuns, responses=ERRORS, tags=["runs"])
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


@router.post("/api/v1/runs:resume", response_model=m.ResumedRuns, responses=ERRORS, tags=["runs"])
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


@router.post(
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


@router.post(
    "/api/v1/runs/{run_id}/steps/{step_id}/signal",
    response_model=m.Run,
    responses=ERRORS,
    tags=["runs"],
)
async def signal(run_id: str, step_id: str, client: Caller, body: m.Signal | None = None) -> m.Run:
    """Send a step the signal it awaits (its pipeline step's ``await_signal``); its task gets
    ``payload`` as that field. One signal per step (a second: 409)."""
    return m.of(m.Run, await client.signal(run_id, step_id, (body or m.Signal(payload={})).payload))


@router.post("/api/v1/runs:signal", response_model=m.SignaledRuns, responses=ERRORS, tags=["runs"])
async def signal_runs(body: m.SignalRuns, client: Caller) -> m.SignaledRuns:
    """Send a step the signal it awaits in every unfinished run that matches all the filters
    given (at least one); the runs that refuse it are named with why."""
    done = await client.signal_runs(
        body.step_id,
        body.payload,
        batch_id=body.batch_id,
        labels=body.labels,
        task_id=body.task_id,
        pipeline_id=body.pipeline_id,
    )
    return m.SignaledRuns(
        signaled=done.signaled,
        refused=[m.RefusedRun(run_id=r, error=why) for r, why in done.refused],
    )


@router.websocket("/api/v1/runs/{run_id}/events")
async def watch_run(websocket: WebSocket, run_id: str, after: str = "") -> None:
    """A run's events as JSON messages (``models.Event``), from the beginning or after
    the event id ``after``, until the run ends; then the socket closes normally (1000).
    A refusal closes it with 4000 + the HTTP status (4401, 4404...) and the message."""
    key, namespace, from_cookie = credentials(websocket.headers, websocket.cookies)
    if from_cookie and not same_origin(websocket.headers):
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
