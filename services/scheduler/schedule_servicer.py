"""``ScheduleService`` over gRPC: translate, call ``Schedules``, translate."""

from __future__ import annotations

from datetime import UTC

from google.protobuf.message import Message
from grpc import aio

from common.errors import InvalidArgument
from services.common import auth
from services.common.paging import decode_token, encode_token, page_size_of
from services.scheduler.schedule_records import ScheduleRecord
from services.scheduler.schedules import Schedules
from wtm.v1 import schedule_service_pb2 as spb
from wtm.v1 import schedule_service_pb2_grpc as spb_grpc

_OVERLAPS = {
    spb.SCHEDULE_OVERLAP_UNSPECIFIED: "SKIP",
    spb.SCHEDULE_OVERLAP_SKIP: "SKIP",
    spb.SCHEDULE_OVERLAP_ALLOW: "ALLOW",
}


def schedule_from_proto(m: spb.Schedule, namespace: str) -> ScheduleRecord:
    """What a user sets of a schedule; the rest is the scheduler's."""
    every = 0.0
    if m.HasField("every"):
        if m.every.seconds < 0 or m.every.nanos < 0:
            raise InvalidArgument("must not be negative", field="schedule.every")
        every = m.every.ToNanoseconds() / 1e9
        if not every:
            raise InvalidArgument("must be from 1 second to 366 days", field="schedule.every")
    overlap = _OVERLAPS.get(m.overlap)
    if overlap is None:
        raise InvalidArgument(f"{m.overlap} is not a ScheduleOverlap", field="schedule.overlap")
    at_ms, start_ms, end_ms = (_ms_of(m, name) for name in ("at", "start_time", "end_time"))
    return ScheduleRecord(
        namespace=namespace,
        schedule_id=m.schedule_id,
        cron=m.cron.strip(),
        timezone=m.timezone,
        every_seconds=every,
        at_ms=at_ms,
        task=m.task,
        pipeline=m.pipeline,
        input_json=m.input_json or "{}",
        priority=m.priority,
        labels=dict(m.labels),
        overlap=overlap,
        paused=m.paused,
        run_timeout_seconds=m.run_timeout.ToNanoseconds() / 1e9,
        start_ms=start_ms,
        end_ms=end_ms,
        due_time_field=m.due_time_field,
        jitter_seconds=m.jitter.ToNanoseconds() / 1e9,
    )


def _ms_of(m: Message, name: str, prefix: str = "schedule.") -> int:
    """The time field ``name`` in ms (0: unset); INVALID_ARGUMENT for one out of range."""
    if not m.HasField(name):
        return 0
    try:
        ms = int(getattr(m, name).ToDatetime(tzinfo=UTC).timestamp() * 1000)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"is not a valid time ({exc})", field=f"{prefix}{name}") from exc
    if ms <= 0:
        raise InvalidArgument("is before 1970", field=f"{prefix}{name}")
    return ms


class ScheduleServicer(spb_grpc.ScheduleServiceServicer):
    """Thin gRPC adapter over ``Schedules``."""

    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    async def CreateSchedule(
        self, request: spb.CreateScheduleRequest, context: aio.ServicerContext
    ) -> spb.CreateScheduleResponse:
        record = schedule_from_proto(request.schedule, auth.scope())
        created = await self._schedules.create(record)
        return spb.CreateScheduleResponse(schedule=created.to_proto())

    async def GetSchedule(
        self, request: spb.GetScheduleRequest, context: aio.ServicerContext
    ) -> spb.GetScheduleResponse:
        record = await self._schedules.get(auth.scope(), request.schedule_id)
        return spb.GetScheduleResponse(schedule=record.to_proto())

    async def ListSchedules(
        self, request: spb.ListSchedulesRequest, context: aio.ServicerContext
    ) -> spb.ListSchedulesResponse:
        size = page_size_of(request.page_size, 100, 1000)
        after = decode_token(request.page_token, (str,))[0] if request.page_token else ""
        found = await self._schedules.page(auth.scope(), after, size + 1)
        page, more = found[:size], len(found) > size
        return spb.ListSchedulesResponse(
            schedules=[r.to_proto() for r in page],
            next_page_token=encode_token([page[-1].key]) if more else "",
        )

    async def PauseSchedule(
        self, request: spb.PauseScheduleRequest, context: aio.ServicerContext
    ) -> spb.PauseScheduleResponse:
        record = await self._schedules.pause(auth.scope(), request.schedule_id)
        return spb.PauseScheduleResponse(schedule=record.to_proto())

    async def ResumeSchedule(
        self, request: spb.ResumeScheduleRequest, context: aio.ServicerContext
    ) -> spb.ResumeScheduleResponse:
        record = await self._schedules.resume(auth.scope(), request.schedule_id)
        return spb.ResumeScheduleResponse(schedule=record.to_proto())

    async def TriggerSchedule(
        self, request: spb.TriggerScheduleRequest, context: aio.ServicerContext
    ) -> spb.TriggerScheduleResponse:
        run_id, record = await self._schedules.trigger(auth.scope(), request.schedule_id)
        return spb.TriggerScheduleResponse(run_id=run_id, schedule=record.to_proto())

    async def BackfillSchedule(
        self, request: spb.BackfillScheduleRequest, context: aio.ServicerContext
    ) -> spb.BackfillScheduleResponse:
        for name in ("start_time", "end_time"):
            if not request.HasField(name):
                raise InvalidArgument("is required", field=name)
        start_ms, end_ms = (_ms_of(request, n, "") for n in ("start_time", "end_time"))
        runs, record = await self._schedules.backfill(
            auth.scope(), request.schedule_id, start_ms, end_ms, request.max_running
        )
        reply = spb.BackfillScheduleResponse(schedule=record.to_proto())
        for run in runs:
            made = reply.runs.add(run_id=run.run_id, started=run.started, waiting=run.waiting)
            made.due_time.FromMilliseconds(run.due_ms)
        return reply

    async def CancelBackfill(
        self, request: spb.CancelBackfillRequest, context: aio.ServicerContext
    ) -> spb.CancelBackfillResponse:
        dropped, record = await self._schedules.cancel_backfill(auth.scope(), request.schedule_id)
        return spb.CancelBackfillResponse(dropped=dropped, schedule=record.to_proto())

    async def DeleteSchedule(
        self, request: spb.DeleteScheduleRequest, context: aio.ServicerContext
    ) -> spb.DeleteScheduleResponse:
        await self._schedules.delete(auth.scope(), request.schedule_id)
        return spb.DeleteScheduleResponse()
