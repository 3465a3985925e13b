"""``SchedulerService`` over gRPC: translate, call the domain, translate (the executor stream:
``executor_servicer.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

from grpc import aio

from common.errors import InvalidArgument, Unimplemented
from services.common import auth
from services.common.dependencies import dependency_to_proto
from services.scheduler.bulk_cancel import RunFilter, cancel_page
from services.scheduler.bulk_resume import resume_page
from services.scheduler.bulk_signal import signal_page
from services.scheduler.fleet_report import FleetReport, busy_slots
from services.scheduler.namespace_settings import FIELDS as NAMESPACE_FIELDS
from services.scheduler.pauses import Pause
from services.scheduler.planning import SubmitRequest
from services.scheduler.queue_names import split
from services.scheduler.rerun import rerun
from services.scheduler.run_events import RunEvent
from services.scheduler.run_listing import ListFilter
from services.scheduler.run_signals import RunSignals
from services.scheduler.runs import RunService
from services.scheduler.task_limits import TaskLimit, TaskLimits
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


def _run_filter(
    request: spb.CancelRunsRequest | spb.ResumeRunsRequest | spb.SignalRunsRequest,
) -> RunFilter:
    """A bulk call's filters."""
    return RunFilter(request.batch_id, dict(request.labels), request.task_id, request.pipeline_id)


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

    def __init__(
        self,
        runs: RunService,
        report: FleetReport,
        task_limits: TaskLimits | None = None,
        signals: RunSignals | None = None,
    ) -> None:
        self._runs = runs
        self._report = report
        self._task_limits = task_limits
        self._signals = signals

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

    async def CancelRuns(
        self, request: spb.CancelRunsRequest, context: aio.ServicerContext
    ) -> spb.CancelRunsResponse:
        page = await cancel_page(
            self._runs,
            auth.scope(),
            request.reason,
            _run_filter(request),
            request.page_size,
            request.page_token,
        )
        return spb.CancelRunsResponse(
            cancelled=[r.to_proto() for r in page.cancelled],
            ended=[r.to_proto() for r in page.ended],
            not_theirs=page.not_theirs,
            next_page_token=page.next_page_token,
        )

    async def ResumeRuns(
        self, request: spb.ResumeRunsRequest, context: aio.ServicerContext
    ) -> spb.ResumeRunsResponse:
        page = await resume_page(
            self._runs,
            auth.scope(),
            _run_filter(request),
            request.latest,
            request.page_size,
            request.page_token,
        )
        return spb.ResumeRunsResponse(
            resumed=[spb.ResumedRun(run_id=r, resumed_by=a.to_proto()) for r, a in page.resumed],
            refused=[spb.RefusedResume(run_id=r, reason=why) for r, why in page.refused],
            next_page_token=page.next_page_token,
        )

    async def RerunRun(
        self, request: spb.RerunRunRequest, context: aio.ServicerContext
    ) -> spb.RerunRunResponse:
        run = await rerun(
            self._runs,
            auth.scope(),
            request.run_id,
            request.latest,
            request.from_failure,
            request.request_id,
        )
        return spb.RerunRunResponse(run=run.to_proto())

    async def SignalRun(
        self, request: spb.SignalRunRequest, context: aio.ServicerContext
    ) -> spb.SignalRunResponse:
        if self._signals is None:
            raise Unimplemented("this scheduler takes no signals")
        run = await self._signals.send(
            request.run_id, request.step_id, request.payload_json, auth.scope()
        )
        return spb.SignalRunResponse(run=run.to_proto())

    async def SignalRuns(
        self, request: spb.SignalRunsRequest, context: aio.ServicerContext
    ) -> spb.SignalRunsResponse:
        if self._signals is None:
            raise Unimplemented("this scheduler takes no signals")
        page = await signal_page(
            self._signals,
            auth.scope(),
            request.step_id,
            request.payload_json,
            _run_filter(request),
            request.page_size,
            request.page_token,
        )
        return spb.SignalRunsResponse(
            signaled=page.signaled,
            refused=[spb.RefusedSignal(run_id=r, reason=why) for r, why in page.refused],
            next_page_token=page.next_page_token,
        )

    async def ListRuns(
        self, request: spb.ListRunsRequest, context: aio.ServicerContext
    ) -> spb.ListRunsResponse:
        chosen = ListFilter(
            namespace=auth.scope(),
            state=_state_name(request.state),
            pipeline_id=request.pipeline_id,
            task_id=request.task_id,
            batch_id=request.batch_id,
            created_after=_time(request, "created_after"),
            created_before=_time(request, "created_before"),
            labels=dict(request.labels),
            awaiting_signal=request.awaiting_signal,
        )
        runs, token = await self._runs.listing.page(chosen, request.page_size, request.page_token)
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
            if e.get("pause") is not None:
                m.pause.CopyFrom(executor_pause_to_proto(e["pause"]))
            if e.get("resting_until"):
                m.resting_until.FromNanoseconds(int(e["resting_until"] * 1e9))
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
            if q.pause is not None:
                m.pause.CopyFrom(pause_to_proto(q.pause))
        return reply

    async def PauseQueue(
        self, request: spb.PauseQueueRequest, context: aio.ServicerContext
    ) -> spb.PauseQueueResponse:
        pause = await self._report.pause_queue(request.queue, request.reason, auth.current())
        return spb.PauseQueueResponse(pause=pause_to_proto(pause))

    async def ResumeQueue(
        self, request: spb.ResumeQueueRequest, context: aio.ServicerContext
    ) -> spb.ResumeQueueResponse:
        resumed = await self._report.resume_queue(request.queue, auth.current())
        return spb.ResumeQueueResponse(resumed=resumed)

    async def SetTaskLimits(
        self, request: spb.SetTaskLimitsRequest, context: aio.ServicerContext
    ) -> spb.SetTaskLimitsResponse:
        assert self._task_limits is not None
        found = await self._task_limits.set(
            auth.scope(),
            request.task_id,
            request.rate_limit if request.HasField("rate_limit") else None,
            request.concurrency_limit if request.HasField("concurrency_limit") else None,
            list(request.reset_fields),
            auth.current(),
            request.rate_burst if request.HasField("rate_burst") else None,
        )
        return spb.SetTaskLimitsResponse(limits=task_limit_to_proto(found) if found else None)

    async def ListTaskLimits(
        self, request: spb.ListTaskLimitsRequest, context: aio.ServicerContext
    ) -> spb.ListTaskLimitsResponse:
        assert self._task_limits is not None
        found, token = self._task_limits.page(auth.scope(), request.page_size, request.page_token)
        return spb.ListTaskLimitsResponse(
            limits=[task_limit_to_proto(t) for t in found], next_page_token=token
        )

    async def PauseExecutor(
        self, request: spb.PauseExecutorRequest, context: aio.ServicerContext
    ) -> spb.PauseExecutorResponse:
        pause = await self._report.pause_executor(
            request.executor_id, request.reason, auth.current()
        )
        return spb.PauseExecutorResponse(pause=executor_pause_to_proto(pause))

    async def ResumeExecutor(
        self, request: spb.ResumeExecutorRequest, context: aio.ServicerContext
    ) -> spb.ResumeExecutorResponse:
        resumed, ended = await self._report.resume_executor(request.executor_id, auth.current())
        return spb.ResumeExecutorResponse(resumed=resumed, rest_ended=ended)

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


def pause_to_proto(p: Pause) -> spb.QueuePause:
    m = spb.QueuePause(
        queue=p.name, namespace=split(p.name)[0], reason=p.reason, paused_by=p.paused_by
    )
    m.pause_time.FromMilliseconds(p.paused_ms)
    return m


def executor_pause_to_proto(p: Pause) -> spb.ExecutorPause:
    m = spb.ExecutorPause(executor_id=p.name, reason=p.reason, paused_by=p.paused_by)
    m.pause_time.FromMilliseconds(p.paused_ms)
    return m


def task_limit_to_proto(t: TaskLimit) -> spb.TaskLimits:
    m = spb.TaskLimits(
        task_id=t.task_id,
        namespace=t.namespace,
        rate_limit=t.rate_limit,
        concurrency_limit=t.concurrency_limit,
        set_by=t.set_by,
        rate_burst=t.rate_burst,
    )
    m.set_at.FromMilliseconds(t.set_ms)
    return m
