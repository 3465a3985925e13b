"""``ExecutorService`` over gRPC: an executor's stream, translated to the dispatcher's calls
(assignments down; heartbeats, progress, logs and results up)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from common import stream_batches, tls
from common.errors import InvalidArgument
from services.common import auth
from services.scheduler.assignments import Assignment
from services.scheduler.dispatcher import Dispatcher
from services.scheduler.fleet import (
    Cancel,
    ExecutorProfile,
    ExecutorSession,
    Renewed,
    Vitals,
)
from services.scheduler.intake import RunningStep, StepReport
from services.scheduler.queue_names import served_namespaces
from services.scheduler.rest_ends import EndRest
from wtm.v1 import executor_service_pb2 as epb
from wtm.v1 import executor_service_pb2_grpc as epb_grpc


def more_assignments(first: Assignment, outbox: asyncio.Queue[Any]) -> tuple[list[Assignment], Any]:
    """``first`` and the assignments queued right behind it (``common.stream_batches``). A
    dynamic batch's call may span messages: the executor starts it once all its steps have
    come."""
    return stream_batches.gather(
        first,
        outbox,
        lambda item: item if isinstance(item, Assignment) else None,
        lambda a: len(a.input_json),
    )


def _report(r: epb.StepResult, session: ExecutorSession) -> StepReport:
    return StepReport(
        run_id=r.ref.run_id,
        step_id=r.ref.step_id,
        attempt=r.ref.attempt,
        outcome=epb.StepOutcome.Name(r.outcome).removeprefix("STEP_OUTCOME_"),
        output_json=r.output_json,
        error=r.error,
        timings=_timings(r),
        lease_id=r.ref.lease_id,
        executor_id=session.executor_id,
        condition_view=r.condition_view_json,
    )


def _assignments_message(group: list[Assignment]) -> epb.ConnectResponse:
    """One assignment as it always travelled; several in one StepAssignments."""
    if len(group) == 1:
        return epb.ConnectResponse(assignment=_assignment_of(group[0]))
    return epb.ConnectResponse(
        assignments=epb.StepAssignments(assignments=[_assignment_of(a) for a in group])
    )


def _assignment_of(a: Assignment) -> epb.StepAssignment:
    return epb.StepAssignment(
        ref=epb.StepAttemptRef(
            run_id=a.run_id, step_id=a.step_id, attempt=a.attempt, lease_id=a.lease_id
        ),
        task_id=a.task_id,
        task_version=a.task_version,
        digest=a.digest,
        entry_point=a.entry_point,
        input_json=a.input_json,
        timeout_seconds=a.timeout_seconds,
        input_id=a.input_id,
        output_id=a.output_id,
        upstream_output_ids=a.upstream_output_ids,
        input_sources=a.input_sources,
        traceparent=a.traceparent,
        namespace=a.namespace,
        log_level=a.log_level,
        call_id=a.call_id,
        call_size=a.call_size,
        proven=a.proven,
        condition_paths=a.condition_paths,
        leased_after_heartbeat=a.leased_after,
    )


def _vitals(h: epb.ExecutorHeartbeat) -> Vitals:
    return Vitals(h.slot_errors, h.last_slot_error, h.cpu_percent, h.memory_bytes, h.disk_bytes)


def _running(ref: epb.StepAttemptRef) -> RunningStep:
    return RunningStep(ref.run_id, ref.step_id, ref.attempt, ref.lease_id)


def _timings(r: epb.StepResult) -> dict[str, int]:
    """The executor's timestamps of an attempt, in µs, for the fields it set."""
    stamps = {
        "t_recv": r.received_time,
        "t_p0": r.start_time,
        "t_p1": r.end_time,
        "t_sent": r.sent_time,
    }
    return {k: t.ToMicroseconds() for k, t in stamps.items() if t.seconds or t.nanos}


class ExecutorServicer(epb_grpc.ExecutorServiceServicer):
    """Thin gRPC adapter over ``Dispatcher``: one stream per executor."""

    def __init__(
        self, dispatcher: Dispatcher, lease_seconds: int, heartbeat_seconds: float
    ) -> None:
        self._dispatcher = dispatcher
        self._lease_seconds = lease_seconds
        self._heartbeat_seconds = heartbeat_seconds

    async def Connect(
        self, request_iterator: AsyncIterator[epb.ConnectRequest], context: aio.ServicerContext
    ) -> AsyncIterator[epb.ConnectResponse]:
        first = await anext(request_iterator, None)
        if first is None or not first.HasField("hello"):
            raise InvalidArgument("the first message must be a hello", field="hello")
        h = first.hello
        if not h.executor_id or h.slots < 1 or not h.queues:
            raise InvalidArgument(
                "needs executor_id, slots >= 1 and at least one queue", field="hello"
            )
        session = self._dispatcher.open_session(
            ExecutorProfile(
                h.executor_id,
                list(h.queues),
                h.slots,
                dict(h.labels),
                h.software_version,
                h.python_version,
                tuple(h.packages),
                auth.current().key_id,
                served_namespaces(auth.current().namespace, h.namespaces),
                tls.client_certificate_name(context.auth_context()),
                h.batching,
                h.sandbox[:16],
                h.ends_rests,
            )
        )
        reader = asyncio.create_task(self._read(session, request_iterator))
        # The executor closing its side ends the stream: the reader's end is an outbox item.
        reader.add_done_callback(lambda _: session.outbox.put_nowait(None))
        try:
            yield epb.ConnectResponse(
                welcome=epb.ExecutorWelcome(
                    lease_seconds=self._lease_seconds,
                    heartbeat_interval_seconds=self._heartbeat_seconds,
                    acks_heartbeats=True,
                    batched_messages=True,
                    honours_rests=True,
                    stamps_leases=True,
                )
            )
            batched = h.batched_messages
            carry: object = stream_batches.NOTHING
            while True:
                item = await session.outbox.get() if carry is stream_batches.NOTHING else carry
                carry = stream_batches.NOTHING
                if item is None:
                    break
                if isinstance(item, Assignment):
                    if batched:
                        group, carry = more_assignments(item, session.outbox)
                    else:
                        group = [item]
                    yield _assignments_message(group)
                elif isinstance(item, EndRest):
                    yield epb.ConnectResponse(end_rest=epb.EndRest(ended_by=item.ended_by))
                elif isinstance(item, Renewed):
                    yield epb.ConnectResponse(
                        heartbeat_ack=epb.HeartbeatAck(sequence=item.sequence)
                    )
                else:
                    assert isinstance(item, Cancel)
                    yield epb.ConnectResponse(
                        cancel=epb.CancelStep(
                            ref=epb.StepAttemptRef(
                                run_id=item.run_id, step_id=item.step_id, attempt=item.attempt
                            ),
                            reason=item.reason,
                        )
                    )
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._dispatcher.close_session(session)

    async def _read(
        self, session: ExecutorSession, requests: AsyncIterator[epb.ConnectRequest]
    ) -> None:
        async for message in requests:
            kind = message.WhichOneof("message")
            if kind == "heartbeat":
                await self._dispatcher.intake.heartbeat(
                    session,
                    [_running(r) for r in message.heartbeat.running],
                    message.heartbeat.draining,
                    message.heartbeat.sequence,
                    _vitals(message.heartbeat),
                    message.heartbeat.resting_seconds,
                )
            elif kind == "progress":
                p = message.progress
                await self._dispatcher.intake.progress(
                    session, _running(p.ref), p.fraction, p.message
                )
            elif kind == "log":
                line = message.log
                await self._dispatcher.intake.log(
                    session, _running(line.ref), line.level, line.message
                )
            elif kind == "result":
                self._dispatcher.intake.report(session, _report(message.result, session))
            elif kind == "results":
                for r in message.results.results:
                    self._dispatcher.intake.report(session, _report(r, session))
