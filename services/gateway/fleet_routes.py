"""The gateway's routes for operators: executors, queues, task limits, namespaces and
schedules. Each is one ``AsyncClient`` call made as the caller."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Response

from services.gateway import models as m
from services.gateway.callers import ERRORS, Caller

router = APIRouter()


@router.get("/api/v1/executors", response_model=list[m.Executor], responses=ERRORS, tags=["fleet"])
async def list_executors(client: Caller) -> list[m.Executor]:
    return [m.of(m.Executor, e) for e in await client.list_executors()]


@router.post(
    "/api/v1/executors:pause", response_model=m.ExecutorPause, responses=ERRORS, tags=["fleet"]
)
async def pause_executor(body: m.PauseExecutor, client: Caller) -> m.ExecutorPause:
    """Give an executor no new step (a cordon) until it is resumed; its running steps go
    on. Operators and admins."""
    return m.of(m.ExecutorPause, await client.pause_executor(body.executor_id, body.reason))


@router.post(
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


@router.get("/api/v1/queues", response_model=m.Queues, responses=ERRORS, tags=["fleet"])
async def list_queues(client: Caller) -> m.Queues:
    queues, delayed = await client.list_queues()
    return m.Queues(
        queues=[m.Queue(**dataclasses.asdict(q), stranded=q.stranded) for q in queues],
        delayed=delayed,
    )


@router.post("/api/v1/queues:pause", response_model=m.QueuePause, responses=ERRORS, tags=["fleet"])
async def pause_queue(body: m.PauseQueue, client: Caller) -> m.QueuePause:
    """Stop leasing a queue's waiting steps (every replica, within a second) until it is
    resumed; runs are still accepted and wait. Operators and admins."""
    return m.of(m.QueuePause, await client.pause_queue(body.queue, body.reason))


@router.post(
    "/api/v1/queues:resume", response_model=m.QueueResumed, responses=ERRORS, tags=["fleet"]
)
async def resume_queue(body: m.ResumeQueue, client: Caller) -> m.QueueResumed:
    """Lease a paused queue's steps again."""
    return m.QueueResumed(queue=body.queue, resumed=await client.resume_queue(body.queue))


@router.get(
    "/api/v1/task-limits", response_model=list[m.TaskLimits], responses=ERRORS, tags=["fleet"]
)
async def list_task_limits(client: Caller) -> list[m.TaskLimits]:
    """The task limits operators set in the namespace the key acts in, by task id."""
    return [m.of(m.TaskLimits, t) for t in await client.task_limits()]


@router.post(
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


@router.get(
    "/api/v1/namespaces", response_model=list[m.Namespace], responses=ERRORS, tags=["fleet"]
)
async def list_namespaces(client: Caller) -> list[m.Namespace]:
    """The namespace the key acts in (every one in use with ``wtm-namespace: *``)."""
    return [m.Namespace(**vars(n), at_limit=n.at_limit) for n in await client.list_namespaces()]


@router.get("/api/v1/schedules", response_model=list[m.Schedule], responses=ERRORS, tags=["fleet"])
async def list_schedules(client: Caller) -> list[m.Schedule]:
    """The schedules of the namespace the key acts in: when each runs next, what it did."""
    return [m.of(m.Schedule, s) for s in await client.list_schedules()]


@router.post(
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


@router.post(
    "/api/v1/schedules/{schedule_id}/pause",
    response_model=m.Schedule,
    responses=ERRORS,
    tags=["fleet"],
)
async def pause_schedule(schedule_id: str, client: Caller) -> m.Schedule:
    """Stop a schedule from starting runs (its creator, or a role that may cancel any run)."""
    return m.of(m.Schedule, await client.pause_schedule(schedule_id))


@router.post(
    "/api/v1/schedules/{schedule_id}/resume",
    response_model=m.Schedule,
    responses=ERRORS,
    tags=["fleet"],
)
async def resume_schedule(schedule_id: str, client: Caller) -> m.Schedule:
    """Let a paused schedule start runs again, from its next time after now."""
    return m.of(m.Schedule, await client.resume_schedule(schedule_id))


@router.post(
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


@router.post(
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


@router.post(
    "/api/v1/schedules/{schedule_id}/backfill:cancel",
    response_model=m.BackfillCancelled,
    responses=ERRORS,
    tags=["fleet"],
)
async def cancel_backfill(schedule_id: str, client: Caller) -> m.BackfillCancelled:
    """Drop the backfill times still waiting (max_running); the runs started go on."""
    return m.BackfillCancelled(dropped=await client.cancel_backfill(schedule_id))


@router.delete("/api/v1/schedules/{schedule_id}", status_code=204, responses=ERRORS, tags=["fleet"])
async def delete_schedule(schedule_id: str, client: Caller) -> Response:
    """Delete a schedule (its creator, or a role that may cancel any run); its runs go on."""
    await client.delete_schedule(schedule_id)
    return Response(status_code=204)
