"""``AsyncClient``: the SDK for asyncio, with the same methods as ``clients.Client``.

    async with AsyncClient() as client:
        run = await client.run(task="text_sentiment", input={"text": "I love it"})
        async for event in client.watch(run.run_id):
            ...

What it sends and how it reads replies is ``clients.requests``, shared with the sync
client; calls go through ``common.client_core.AsyncCaller`` (TLS, the key, deadlines,
retries while a service is UNAVAILABLE, status -> ``clients.errors``). Methods that list
(``list_tasks``, ``list_pipelines``, ``list_runs``) and ``watch`` are async iterators.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from clients import requests
from clients.catalog import AsyncCatalogMethods
from clients.connection import Connection, NotFinished, resolve_key
from clients.errors import (
    DeadlineExceeded,
    Unavailable,
    WaitTimeoutError,
)
from clients.operations import AsyncOperatorMethods
from clients.schedules import AsyncScheduleMethods
from clients.types import (
    ApiKeyInfo,
    ArtifactInfo,
    CancelledRuns,
    DependencyInfo,
    ExecutorInfo,
    ExecutorPauseInfo,
    ExecutorResumed,
    NamespaceInfo,
    PipelineInfo,
    PipelineStepInfo,
    QueueInfo,
    QueuePauseInfo,
    ResumedRuns,
    RunEventInfo,
    RunInfo,
    SignaledRuns,
    StepInfo,
    TaskInfo,
    TaskLimitsInfo,
)
from common import refs
from common.client_core import DEFAULT_RETRY_SECONDS, AsyncCaller
from wtm.v1 import scheduler_service_pb2 as spb

# What callers import from here: the client, and the types of its results (those of the
# methods in clients.catalog and clients.operations too, importable from here as before).
__all__ = [
    "AsyncClient",
    "ApiKeyInfo",
    "ArtifactInfo",
    "CancelledRuns",
    "DependencyInfo",
    "ExecutorInfo",
    "ExecutorPauseInfo",
    "ExecutorResumed",
    "NamespaceInfo",
    "PipelineInfo",
    "PipelineStepInfo",
    "QueueInfo",
    "QueuePauseInfo",
    "ResumedRuns",
    "SignaledRuns",
    "RunEventInfo",
    "RunInfo",
    "StepInfo",
    "TaskInfo",
    "TaskLimitsInfo",
]


class AsyncClient(Connection, AsyncCatalogMethods, AsyncScheduleMethods, AsyncOperatorMethods):
    """A connection to the registry and the scheduler, for asyncio. The arguments, the
    results and the exceptions are ``clients.Client``'s."""

    _caller = AsyncCaller
    _r: AsyncCaller
    _s: AsyncCaller

    def __init__(
        self,
        registry: str = "",
        scheduler: str = "",
        timeout: float = 30.0,
        api_key: str | None = None,
        tls_ca: str | None = None,
        api_key_file: str = "",
        namespace: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        raise_on_failure: bool = True,
    ) -> None:
        key = resolve_key(api_key or "", api_key_file)
        self._connect(
            registry, scheduler, key, tls_ca, namespace, timeout, retry_seconds, raise_on_failure
        )

    async def close(self) -> None:
        await self._r.close()
        await self._s.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Runs --------------------------------------------------------------------------------

    async def submit(
        self,
        task: str = "",
        pipeline: str = "",
        input: dict[str, Any] | None = None,  # noqa: A002
        priority: int = 0,
        request_id: str = "",
        labels: dict[str, str] | None = None,
        cache: bool | None = None,
        run_timeout: float | None = None,
        start_delay: float | None = None,
    ) -> RunInfo:
        request = requests.submit(
            task, pipeline, input, priority, request_id, labels, cache,
            run_timeout=run_timeout, start_delay=start_delay,
        )  # fmt: skip
        reply = await self._s.unary(self._scheduler.SubmitRun, request, retry=bool(request_id))
        return RunInfo.from_proto(reply.run)

    async def submit_many(
        self,
        inputs: list[dict[str, Any]],
        task: str = "",
        pipeline: str = "",
        priority: int = 0,
        request_id: str = "",
        labels: dict[str, str] | None = None,
        cache: bool | None = None,
        run_timeout: float | None = None,
        start_delay: float | None = None,
    ) -> tuple[str, list[str]]:
        request = requests.submit_many(
            inputs, task, pipeline, priority, request_id, labels, cache, run_timeout, start_delay
        )
        reply = await self._s.unary(self._scheduler.SubmitRuns, request, retry=bool(request_id))
        return reply.batch_id, list(reply.run_ids)

    async def rerun(
        self, run_id: str, latest: bool = False, request_id: str = "", from_failure: bool = False
    ) -> RunInfo:
        """As ``Client.rerun``."""
        request = requests.rerun(run_id, latest, request_id, from_failure)
        reply = await self._s.unary(self._scheduler.RerunRun, request, retry=bool(request_id))
        return RunInfo.from_proto(reply.run)

    async def signal(
        self, run_id: str, step_id: str, payload: dict[str, Any] | None = None
    ) -> RunInfo:
        """As ``Client.signal``."""
        request = requests.signal(run_id, step_id, payload)
        reply = await self._s.unary(self._scheduler.SignalRun, request)
        return RunInfo.from_proto(reply.run)

    async def cancel_runs(
        self,
        reason: str = "",
        *,
        batch_id: str = "",
        labels: dict[str, str] | None = None,
        task_id: str = "",
        pipeline_id: str = "",
    ) -> CancelledRuns:
        """As ``Client.cancel_runs``."""
        request = requests.cancel_runs(reason, batch_id, labels, task_id, pipeline_id)
        result = CancelledRuns()
        async for reply in self._s.pages(self._scheduler.CancelRuns, request):
            requests.add_cancelled(result, reply)
        return result

    async def signal_runs(
        self,
        step_id: str,
        payload: dict[str, Any] | None = None,
        *,
        batch_id: str = "",
        labels: dict[str, str] | None = None,
        task_id: str = "",
        pipeline_id: str = "",
    ) -> SignaledRuns:
        """As ``Client.signal_runs``."""
        request = requests.signal_runs(step_id, payload, batch_id, labels, task_id, pipeline_id)
        result = SignaledRuns()
        async for reply in self._s.pages(self._scheduler.SignalRuns, request):
            requests.add_signaled(result, reply)
        return result

    async def resume_runs(
        self,
        *,
        batch_id: str = "",
        labels: dict[str, str] | None = None,
        task_id: str = "",
        pipeline_id: str = "",
        latest: bool = False,
    ) -> ResumedRuns:
        """As ``Client.resume_runs``."""
        request = requests.resume_runs(batch_id, labels, task_id, pipeline_id, latest)
        result = ResumedRuns()
        async for reply in self._s.pages(self._scheduler.ResumeRuns, request):
            requests.add_resumed(result, reply)
        return requests.in_order(result)

    async def cancel(self, run_id: str, reason: str = "") -> RunInfo:
        return RunInfo.from_proto((await self._cancel(run_id, reason)).run)

    async def _cancel(self, run_id: str, reason: str) -> spb.CancelRunResponse:
        request = spb.CancelRunRequest(run_id=run_id, reason=reason)
        return await self._s.unary(self._scheduler.CancelRun, request)

    async def list_runs(
        self,
        state: str = "",
        pipeline_id: str = "",
        task_id: str = "",
        batch_id: str = "",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
        limit: int | None = None,
        labels: dict[str, str] | None = None,
        awaiting_signal: bool = False,
    ) -> AsyncIterator[RunInfo]:
        filters = (state, pipeline_id, task_id, batch_id, created_after, created_before)
        seen, token = 0, ""
        while True:
            runs, token = await self.list_runs_page(
                *filters,
                page_size=page_size,
                page_token=token,
                labels=labels,
                awaiting_signal=awaiting_signal,
            )
            for r in runs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield r
            if not token:
                return

    async def list_runs_page(
        self,
        state: str = "",
        pipeline_id: str = "",
        task_id: str = "",
        batch_id: str = "",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 50,
        page_token: str = "",
        labels: dict[str, str] | None = None,
        awaiting_signal: bool = False,
    ) -> tuple[list[RunInfo], str]:
        request = requests.list_runs(
            state,
            pipeline_id,
            task_id,
            batch_id,
            created_after,
            created_before,
            page_size,
            page_token,
            labels,
            awaiting_signal,
        )
        reply = await self._s.unary(self._scheduler.ListRuns, request)
        return [RunInfo.from_proto(r) for r in reply.runs], reply.next_page_token

    async def get_run(self, run_id: str, resolve_refs: bool = True) -> RunInfo:
        reply = await self._s.unary(self._scheduler.GetRun, spb.GetRunRequest(run_id=run_id))
        run = RunInfo.from_proto(reply.run)
        return await self._with_documents(run) if resolve_refs else run

    async def _with_documents(self, run: RunInfo) -> RunInfo:
        if refs.REF_KEY not in repr((run.output, [s.output for s in run.steps])):
            return run
        fetched: dict[str, Any] = {}
        return dataclasses.replace(
            run,
            output=await self.resolve_refs(run.output, fetched),
            steps=[
                dataclasses.replace(s, output=await self.resolve_refs(s.output, fetched))
                for s in run.steps
            ],
        )

    async def run(
        self,
        task: str = "",
        pipeline: str = "",
        input: dict[str, Any] | None = None,  # noqa: A002
        priority: int = 0,
        request_id: str = "",
        labels: dict[str, str] | None = None,
        timeout: float = 300.0,
        cache: bool | None = None,
        raise_on_failure: bool | None = None,
        run_timeout: float | None = None,
    ) -> RunInfo:
        request = requests.submit(
            task, pipeline, input, priority, request_id, labels, cache, timeout, run_timeout
        )
        reply = await self._s.unary(
            self._scheduler.SubmitRun, request, timeout=timeout + 30, retry=bool(request_id)
        )
        run = RunInfo.from_proto(reply.run)
        if not run.finished:
            raise WaitTimeoutError(run.run_id, timeout)
        run = await self._with_documents(run)
        return self._outcome(run, raise_on_failure)

    async def watch(
        self, run_id: str, after_event_id: str = "", timeout: float | None = None
    ) -> AsyncIterator[RunEventInfo]:
        request = spb.WatchRunRequest(run_id=run_id, after_event_id=after_event_id)
        async for reply in self._s.stream(self._scheduler.WatchRun, request, timeout=timeout):
            yield RunEventInfo.from_proto(reply.event)

    async def wait(
        self, run_id: str, timeout: float = 300.0, raise_on_failure: bool | None = None
    ) -> RunInfo:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((Unavailable, DeadlineExceeded, NotFinished)),
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    left = max(deadline - loop.time(), 0.001)
                    async for event in self.watch(run_id, timeout=left):
                        if event.ends_run:
                            break
                    run = await self.get_run(run_id)
                    if not run.finished:
                        raise NotFinished
        except (Unavailable, DeadlineExceeded, NotFinished):
            raise WaitTimeoutError(run_id, timeout) from None
        return self._outcome(run, raise_on_failure)
