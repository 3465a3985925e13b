"""Schedules in the SDK: runs started at times a cron expression or an interval gives.

``Client`` and ``AsyncClient`` take their schedule methods from the two classes here, the
sync and the asyncio twin of each with the same name and arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clients.errors import InvalidArgument
from wtm.v1 import schedule_service_pb2 as schpb

_OVERLAP = {"skip": schpb.SCHEDULE_OVERLAP_SKIP, "allow": schpb.SCHEDULE_OVERLAP_ALLOW}


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as the scheduler keeps it."""

    schedule_id: str
    namespace: str
    description: str  # "every 5 minutes", "At 02:00 every day (UTC)"
    cron: str
    timezone: str
    every_seconds: float
    task: str
    pipeline: str
    input: dict[str, Any]
    priority: int
    overlap: str  # "skip" or "allow"
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_run_id: str
    runs_started: int
    times_skipped: int
    last_error: str
    created_at: datetime | None
    created_by: str
    labels: dict[str, str] = field(default_factory=dict)
    at: datetime | None = None  # a one-off's time
    run_timeout_seconds: float = 0.0  # each run's time limit (0: none)
    start_time: datetime | None = None  # no due time before it
    end_time: datetime | None = None  # no due time after it
    due_time_field: str = ""  # the input key each run's due time is written to
    jitter_seconds: float = 0.0  # each run starts up to this long after its due time
    backfill_waiting: int = 0  # times of a backfill waiting for its earlier runs

    @classmethod
    def from_proto(cls, m: schpb.Schedule) -> ScheduleInfo:
        def when(name: str) -> datetime | None:
            return getattr(m, name).ToDatetime(tzinfo=UTC) if m.HasField(name) else None

        return cls(
            schedule_id=m.schedule_id,
            namespace=m.namespace,
            description=m.description,
            cron=m.cron,
            timezone=m.timezone,
            every_seconds=m.every.ToNanoseconds() / 1e9 if m.HasField("every") else 0.0,
            task=m.task,
            pipeline=m.pipeline,
            input=json.loads(m.input_json or "{}"),
            priority=m.priority,
            overlap=schpb.ScheduleOverlap.Name(m.overlap).removeprefix("SCHEDULE_OVERLAP_").lower(),
            paused=m.paused,
            next_run_at=when("next_run_time"),
            last_run_at=when("last_run_time"),
            last_run_id=m.last_run_id,
            runs_started=m.runs_started,
            times_skipped=m.times_skipped,
            last_error=m.last_error,
            created_at=when("create_time"),
            created_by=m.created_by,
            labels=dict(m.labels),
            at=when("at"),
            run_timeout_seconds=m.run_timeout.ToNanoseconds() / 1e9,
            start_time=when("start_time"),
            end_time=when("end_time"),
            due_time_field=m.due_time_field,
            jitter_seconds=m.jitter.ToNanoseconds() / 1e9,
            backfill_waiting=m.backfill_waiting,
        )


@dataclass(frozen=True)
class BackfilledRun:
    """A time of a backfill and its run: ``started`` by that call, there before, or
    ``waiting`` for the backfill's earlier runs to end (``max_running``; no run yet)."""

    due_time: datetime
    run_id: str
    started: bool
    waiting: bool = False

    @classmethod
    def from_proto(cls, m: schpb.BackfilledRun) -> BackfilledRun:
        return cls(m.due_time.ToDatetime(tzinfo=UTC), m.run_id, m.started, m.waiting)


def _utc(moment: datetime) -> datetime:
    """A naive time is UTC."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC)


def backfill_request(
    schedule_id: str, start: datetime, end: datetime, max_running: int = 0
) -> schpb.BackfillScheduleRequest:
    request = schpb.BackfillScheduleRequest(schedule_id=schedule_id, max_running=max_running)
    request.start_time.FromDatetime(_utc(start))
    request.end_time.FromDatetime(_utc(end))
    return request


def create_request(
    schedule_id: str,
    task: str | None,
    pipeline: str | None,
    input: dict[str, Any] | str | None,  # noqa: A002
    cron: str | None,
    every: float | timedelta | None,
    timezone: str,
    priority: int,
    labels: dict[str, str] | None,
    overlap: str,
    paused: bool,
    at: datetime | None = None,
    run_timeout: float | timedelta | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    due_time_field: str = "",
    jitter: float | timedelta | None = None,
) -> schpb.CreateScheduleRequest:
    if overlap not in _OVERLAP:
        raise InvalidArgument(
            f"must be one of {', '.join(_OVERLAP)}, got {overlap!r}", field="overlap"
        )
    m = schpb.Schedule(
        schedule_id=schedule_id,
        task=task or "",
        pipeline=pipeline or "",
        input_json=input if isinstance(input, str) else json.dumps(input or {}),
        cron=cron or "",
        timezone=timezone,
        priority=priority,
        labels=labels or {},
        overlap=_OVERLAP[overlap],
        paused=paused,
        due_time_field=due_time_field,
    )
    if every is not None:
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
        m.every.FromNanoseconds(round(seconds * 1e9))
    for name, moment in (("at", at), ("start_time", start_time), ("end_time", end_time)):
        if moment is not None:
            getattr(m, name).FromDatetime(_utc(moment))
    for name, span in (("run_timeout", run_timeout), ("jitter", jitter)):
        if span is not None:
            seconds = span.total_seconds() if isinstance(span, timedelta) else float(span)
            getattr(m, name).FromNanoseconds(round(seconds * 1e9))
    return schpb.CreateScheduleRequest(schedule=m)


class ScheduleMethods:
    """``Client``'s schedule methods."""

    _s: Any
    _schedules: Any

    def create_schedule(
        self,
        schedule_id: str,
        *,
        task: str | None = None,
        pipeline: str | None = None,
        input: dict[str, Any] | str | None = None,  # noqa: A002
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "",
        priority: int = 0,
        labels: dict[str, str] | None = None,
        overlap: str = "skip",
        paused: bool = False,
        at: datetime | None = None,
        run_timeout: float | timedelta | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        due_time_field: str = "",
        jitter: float | timedelta | None = None,
    ) -> ScheduleInfo:
        """Start a run of ``task`` or ``pipeline`` on ``input`` at every time ``cron`` gives
        (five fields, read in ``timezone``, UTC by default), ``every`` so many seconds, or
        once ``at`` a time (a naive one is UTC; a delayed submit, as Celery's ``eta``).

        While the last run has not ended a due time starts nothing (``overlap="skip"``) or
        another run (``"allow"``); times passed while every scheduler was down start one
        run. The runs are submitted as this client's key, labelled ``wtm.schedule``, each
        with ``run_timeout`` (seconds) as its time limit when given. ``start_time`` and
        ``end_time`` bound a cron's or an interval's times (after the end it is done).
        With ``due_time_field``, each run's input has that key set to the time the run was
        due for (ISO 8601, UTC): how a task knows which day it stands for. With ``jitter``
        (seconds, up to a day, shorter than ``every``) each run starts up to that much after
        its time, by an offset fixed for the schedule and the time, so that schedules that
        share a time do not all start at once (the run is accepted at its time and waits).

        Raises:
            InvalidArgument: the timing, the input or another field is not valid.
            NotFound: no such task or pipeline.
            AlreadyExists: the namespace has a schedule of that id.
        """
        request = create_request(
            schedule_id, task, pipeline, input, cron, every, timezone, priority, labels,
            overlap, paused, at, run_timeout, start_time, end_time, due_time_field, jitter,
        )  # fmt: skip
        reply = self._s.unary(self._schedules.CreateSchedule, request)
        return ScheduleInfo.from_proto(reply.schedule)

    def get_schedule(self, schedule_id: str) -> ScheduleInfo:
        """One schedule: when it runs next, what its last run was.

        Raises:
            NotFound: the namespace has no schedule of that id.
        """
        request = schpb.GetScheduleRequest(schedule_id=schedule_id)
        return ScheduleInfo.from_proto(self._s.unary(self._schedules.GetSchedule, request).schedule)

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule of the namespace this client acts in, by id (``namespace="*"``,
        with a key of every namespace: every namespace's)."""
        pages = self._s.pages(self._schedules.ListSchedules, schpb.ListSchedulesRequest())
        return [ScheduleInfo.from_proto(s) for reply in pages for s in reply.schedules]

    def pause_schedule(self, schedule_id: str) -> ScheduleInfo:
        """Stop a schedule from starting runs (its creator's key, or one that may cancel
        anyone's runs).

        Raises:
            NotFound: the namespace has no schedule of that id.
            PermissionDenied: another key created it, and this one may cancel only its own.
        """
        request = schpb.PauseScheduleRequest(schedule_id=schedule_id)
        reply = self._s.unary(self._schedules.PauseSchedule, request)
        return ScheduleInfo.from_proto(reply.schedule)

    def resume_schedule(self, schedule_id: str) -> ScheduleInfo:
        """Let a paused schedule start runs again, from its next time after now (one not
        paused is left as it is).

        Raises:
            NotFound: the namespace has no schedule of that id.
            PermissionDenied: another key created it, and this one may cancel only its own.
        """
        request = schpb.ResumeScheduleRequest(schedule_id=schedule_id)
        reply = self._s.unary(self._schedules.ResumeSchedule, request)
        return ScheduleInfo.from_proto(reply.schedule)

    def delete_schedule(self, schedule_id: str) -> None:
        """Remove a schedule; the runs it started stay.

        Raises:
            NotFound: the namespace has no schedule of that id.
            PermissionDenied: another key created it, and this one may cancel only its own.
        """
        request = schpb.DeleteScheduleRequest(schedule_id=schedule_id)
        self._s.unary(self._schedules.DeleteSchedule, request)

    def trigger_schedule(self, schedule_id: str) -> str:
        """Start the schedule's run now, as one of its times would (paused or not); returns
        the run's id. Its times go on as they were.

        Raises:
            NotFound: the namespace has no schedule of that id.
            PermissionDenied: another key created it, and this one may cancel only its own.
        """
        request = schpb.TriggerScheduleRequest(schedule_id=schedule_id)
        return str(self._s.unary(self._schedules.TriggerSchedule, request, retry=False).run_id)

    def backfill_schedule(
        self, schedule_id: str, start: datetime, end: datetime, max_running: int = 0
    ) -> list[BackfilledRun]:
        """Start a run for each time the schedule gives from ``start`` to ``end`` (both
        included, both past; a naive time is UTC), as each time would have started it: a
        nightly job's missed nights, or a new schedule run over the past. A time that already
        has a run keeps it (``started`` False), so calling again starts only what is missing.
        With ``max_running``, at most that many of its runs go at once (1: one after
        another); the rest are ``waiting``, kept by the scheduler, and start oldest first as
        earlier ones end (the schedule's ``backfill_waiting`` counts them).

        Raises:
            InvalidArgument: ``end`` is in the future or before ``start``, or the range gives
                more than 1,000 times (backfill it in parts).
            NotFound: the namespace has no schedule of that id.
            PermissionDenied: another key created it, and this one may cancel only its own.
        """
        request = backfill_request(schedule_id, start, end, max_running)
        reply = self._s.unary(self._schedules.BackfillSchedule, request)  # idempotent
        return [BackfilledRun.from_proto(r) for r in reply.runs]

    def cancel_backfill(self, schedule_id: str) -> int:
        """Drop the times the schedule's backfills keep waiting (``max_running``): no run
        starts for them; the runs they started go on. Returns how many were dropped.

        Raises:
            NotFound: the namespace has no schedule of that id.
            PermissionDenied: another key created it, and this one may cancel only its own.
        """
        request = schpb.CancelBackfillRequest(schedule_id=schedule_id)
        return int(self._s.unary(self._schedules.CancelBackfill, request).dropped)


class AsyncScheduleMethods:
    """``AsyncClient``'s schedule methods: as ``ScheduleMethods``'."""

    _s: Any
    _schedules: Any

    async def create_schedule(
        self,
        schedule_id: str,
        *,
        task: str | None = None,
        pipeline: str | None = None,
        input: dict[str, Any] | str | None = None,  # noqa: A002
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "",
        priority: int = 0,
        labels: dict[str, str] | None = None,
        overlap: str = "skip",
        paused: bool = False,
        at: datetime | None = None,
        run_timeout: float | timedelta | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        due_time_field: str = "",
        jitter: float | timedelta | None = None,
    ) -> ScheduleInfo:
        """As ``Client.create_schedule``."""
        request = create_request(
            schedule_id, task, pipeline, input, cron, every, timezone, priority, labels,
            overlap, paused, at, run_timeout, start_time, end_time, due_time_field, jitter,
        )  # fmt: skip
        reply = await self._s.unary(self._schedules.CreateSchedule, request)
        return ScheduleInfo.from_proto(reply.schedule)

    async def get_schedule(self, schedule_id: str) -> ScheduleInfo:
        """As ``Client.get_schedule``."""
        request = schpb.GetScheduleRequest(schedule_id=schedule_id)
        reply = await self._s.unary(self._schedules.GetSchedule, request)
        return ScheduleInfo.from_proto(reply.schedule)

    async def list_schedules(self) -> list[ScheduleInfo]:
        """As ``Client.list_schedules``."""
        pages = self._s.pages(self._schedules.ListSchedules, schpb.ListSchedulesRequest())
        return [ScheduleInfo.from_proto(s) async for reply in pages for s in reply.schedules]

    async def pause_schedule(self, schedule_id: str) -> ScheduleInfo:
        """As ``Client.pause_schedule``."""
        request = schpb.PauseScheduleRequest(schedule_id=schedule_id)
        reply = await self._s.unary(self._schedules.PauseSchedule, request)
        return ScheduleInfo.from_proto(reply.schedule)

    async def resume_schedule(self, schedule_id: str) -> ScheduleInfo:
        """As ``Client.resume_schedule``."""
        request = schpb.ResumeScheduleRequest(schedule_id=schedule_id)
        reply = await self._s.unary(self._schedules.ResumeSchedule, request)
        return ScheduleInfo.from_proto(reply.schedule)

    async def delete_schedule(self, schedule_id: str) -> None:
        """As ``Client.delete_schedule``."""
        request = schpb.DeleteScheduleRequest(schedule_id=schedule_id)
        await self._s.unary(self._schedules.DeleteSchedule, request)

    async def trigger_schedule(self, schedule_id: str) -> str:
        """As ``Client.trigger_schedule``."""
        request = schpb.TriggerScheduleRequest(schedule_id=schedule_id)
        reply = await self._s.unary(self._schedules.TriggerSchedule, request, retry=False)
        return str(reply.run_id)

    async def backfill_schedule(
        self, schedule_id: str, start: datetime, end: datetime, max_running: int = 0
    ) -> list[BackfilledRun]:
        """As ``Client.backfill_schedule``."""
        request = backfill_request(schedule_id, start, end, max_running)
        reply = await self._s.unary(self._schedules.BackfillSchedule, request)
        return [BackfilledRun.from_proto(r) for r in reply.runs]

    async def cancel_backfill(self, schedule_id: str) -> int:
        """As ``Client.cancel_backfill``."""
        request = schpb.CancelBackfillRequest(schedule_id=schedule_id)
        return int((await self._s.unary(self._schedules.CancelBackfill, request)).dropped)
