"""``SchedulerService`` and ``ExecutorService`` over gRPC: translate, call the domain, translate."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

from grpc import aio

from common import stream_batches, tls
from common.errors import InvalidArgument
from services.common import auth
from services.common.dependencies import dependency_to_proto
from services.scheduler.dispatcher import Dispatcher
from services.scheduler.fleet import (
    Assignment,
    Cancel,
    ExecutorProfile,
    ExecutorSession,
    Renewed,
    Vitals,
)
from services.scheduler.fleet_report import FleetReport, busy_slots
from services.scheduler.intake import RunningStep, StepReport
from services.scheduler.namespace_settings import FIELDS as NAMESPACE_FIELDS
from services.scheduler.planning import SubmitRequest
from services.scheduler.queue_names import served_namespaces
from services.scheduler.run_events import RunEvent
from services.scheduler.runs import RunService
from wtm.v1 import executor_service_pb2 as epb
from wtm.v1 import executor_service_pb2_grpc as epb_grpc
from wtm.v1 import run_pb2
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc


def _state_name(value: int) -> str:
    """A State filter as the domain names it ("" for none); unknown numbers are refused."""
    if not value:
        return ""
    if value not in run_pb2.State.values():
        raise InvalidArgument(f"{value} is not a State", field="state")
    return run_pb2.State.Name(value).removeprefix("STATE_")


def _time(request: Any, name: str) -> datetime | None:
    """A Timestamp field as a datetime (None when unset); out-of-range values are refused."""
    if not request.HasField(name):
        return None
    try:
        return cast(datetime, getattr(request, name).ToDatetime(tzinfo=UTC))
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"is not a valid time ({exc})", field=name) from exc


def event_to_proto(e: RunEvent) -> spb.RunEvent:
    m = spb.RunEvent(
        event_id=e.event_id,
        run_id=e.run_id,
        step_id=e.step_id,
        attempt=e.attempt,
        state=run_pb2.State.Value(f"STATE_{e.state}"),
        message=e.message,
        progress=e.progress,
        kind=spb.RunEventKind.Value(f"RUN_EVENT_KIND_{e.kind}"),
    )
    if e.time is not None:
        m.time.FromDatetime(e.time)
    return m


class SchedulerServicer(spb_grpc.SchedulerServiceServicer):
    """Thin gRPC adapter over ``RunService``."""

    def __init__(self, runs: RunService, report: FleetReport) -> None:
        self._runs = runs
        self._report = report

    async def SubmitRun(
        self, request: spb.SubmitRunRequest, context: aio.ServicerContext
    ) -> spb.SubmitRunResponse:
        run = await self._runs.submit(
            SubmitRequest(
                task=request.task,
                pipeline=request.pipeline,
                input_json=request.input_json,
                priority=request.priority,
                request_id=request.request_id,
                labels=dict(request.labels),
                wait_seconds=request.wait.ToNanoseconds() / 1e9,
                namespace=auth.scope(),
                cache=request.cache if request.HasField("cache") else None,
                run_timeout_seconds=request.run_timeout.ToNanoseconds() / 1e9,
                start_delay_seconds=request.start_delay.ToNanoseconds() / 1e9,
                reuse_from=request.reuse_from,
            )
        )
        return spb.SubmitRunResponse(run=run.to_proto())

    async def GetRun(
        self, request: spb.GetRunRequest, context: aio.ServicerContext
    ) -> spb.GetRunResponse:
        return spb.GetRunResponse(
            run=(await self._runs.get(request.run_id, auth.scope())).to_proto()
        )

    async def WatchRun(
        self, request: spb.WatchRunRequest, context: aio.ServicerContext
    ) -> AsyncIterator[spb.WatchRunResponse]:
        async for event in self._runs.watch(request.run_id, request.after_event_id, auth.scope()):
            yield spb.WatchRunResponse(event=event_to_proto(event))

    async def SubmitRuns(
        self, request: spb.SubmitRunsRequest, context: aio.ServicerContext
    ) -> spb.SubmitRunsResponse:
        batch_id, run_ids = await self._runs.submit_many(
            SubmitRequest(
                task=request.task,
                pipeline=request.pipeline,
                priority=request.priority,
                request_id=request.request_id,
                labels=dict(request.labels),
                namespace=auth.scope(),
                cache=request.cache if request.HasField("cache") else None,
                run_timeout_seconds=request.run_timeout.ToNanoseconds() / 1e9,
                start_delay_seconds=request.start_delay.ToNanoseconds() / 1e9,
            ),
            list(request.inputs_json),
        )
        return spb.SubmitRunsResponse(batch_id=batch_id, run_ids=run_ids)

    async def CancelRun(
        self, request: spb.CancelRunRequest, context: aio.ServicerContext
    ) -> spb.CancelRunResponse:
        run, cancelled = await self._runs.cancel(request.run_id, request.reason, auth.scope())
        return spb.CancelRunResponse(run=run.to_proto(), cancelled=cancelled)

    async def ListRuns(
        self, request: spb.ListRunsRequest, context: aio.ServicerContext
    ) -> spb.ListRunsResponse:
        runs, token = await self._runs.list_runs(
            namespace=auth.scope(),
            state=_state_name(request.state),
            pipeline_id=request.pipeline_id,
            task_id=request.task_id,
            batch_id=request.batch_id,
            created_after=_time(request, "created_after"),
            created_before=_time(request, "created_before"),
            page_size=request.page_size,
            page_token=request.page_token,
            labels=dict(request.labels),
        )
        return spb.ListRunsResponse(runs=[r.to_proto() for r in runs], next_page_token=token)

    async def ListExecutors(
        self, request: spb.ListExecutorsRequest, context: aio.ServicerContext
    ) -> spb.ListExecutorsResponse:
        found, token = await self._report.executors_page(
            auth.scope(), request.page_size, request.page_token
        )
        reply = spb.ListExecutorsResponse(next_page_token=token)
        for e in found:
            m = reply.executors.add(
                executor_id=e["executor_id"],
                state=spb.ExecutorState.Value(f"EXECUTOR_STATE_{e['state']}"),
                queues=e["queues"],
                slots=e["slots"],
                in_flight=e["in_flight"],
                labels=e["labels"],
                software_version=e["software_version"],
                python_version=e["python_version"],
                scheduler_id=e["scheduler_id"],
                packages=e.get("packages", []),
                slot_errors=e.get("slot_errors", 0),
                last_slot_error=e.get("last_slot_error", ""),
                namespaces=e.get("namespaces", [auth.ALL_NAMESPACES]),
                cpu_percent=e.get("cpu_percent", 0.0),
                memory_bytes=e.get("memory_bytes", 0),
                disk_bytes=e.get("disk_bytes", 0),
                running_steps=e.get("running", []),
                busy_slots=busy_slots(e),
                sandbox=e.get("sandbox", ""),
            )
            m.connect_time.FromNanoseconds(int(e["connected_at"] * 1e9))
            m.last_seen_time.FromNanoseconds(int(e["last_seen"] * 1e9))
        return reply

    async def ListQueues(
        self, request: spb.ListQueuesRequest, context: aio.ServicerContext
    ) -> spb.ListQueuesResponse:
        queues, delayed, token = await self._report.queues_page(
            auth.scope(), request.page_size, request.page_token
        )
        reply = spb.ListQueuesResponse(delayed=delayed, next_page_token=token)
        for q in queues:
            m = reply.queues.add(
                queue=q.queue,
                namespace=q.namespace,
                depth=q.depth,
                executors=q.executors,
                free_slots=q.free_slots,
            )
            m.oldest_age.FromNanoseconds(int(q.oldest_age_seconds * 1e9))
        return reply

    async def ListNamespaces(
        self, request: spb.ListNamespacesRequest, context: aio.ServicerContext
    ) -> spb.ListNamespacesResponse:
        found, token = await self._report.namespaces_page(
            auth.scope(), request.page_size, request.page_token
        )
        return spb.ListNamespacesResponse(
            namespaces=[spb.NamespaceStatus(**dataclasses.asdict(n)) for n in found],
            next_page_token=token,
        )

    async def UpdateNamespace(
        self, request: spb.UpdateNamespaceRequest, context: aio.ServicerContext
    ) -> spb.UpdateNamespaceResponse:
        values = {f: getattr(request, f) for f in NAMESPACE_FIELDS if request.HasField(f)}
        status = await self._report.update_namespace(
            values, list(request.reset_fields), auth.current()
        )
        return spb.UpdateNamespaceResponse(
            namespace=spb.NamespaceStatus(**dataclasses.asdict(status))
        )

    async def CheckDependencies(
        self,
        request: spb.SchedulerServiceCheckDependenciesRequest,
        context: aio.ServicerContext,
    ) -> spb.SchedulerServiceCheckDependenciesResponse:
        return spb.SchedulerServiceCheckDependenciesResponse(
            dependencies=[dependency_to_proto(d) for d in await self._report.dependencies()]
        )


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
