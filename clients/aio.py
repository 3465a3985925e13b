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
import copy
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from clients import requests
from clients.errors import (
    DataLoss,
    DeadlineExceeded,
    Unavailable,
    WaitTimeoutError,
)
from clients.schedules import AsyncScheduleMethods
from clients.sdk import _Connection, _NotFinished, resolve_key
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
    QueueInfo,
    QueuePauseInfo,
    ResumedRuns,
    RunEventInfo,
    RunInfo,
    TaskInfo,
    TaskLimitsInfo,
)
from common import refs
from common.artifacts import is_file_field, is_uri, upload_requests
from common.client_core import DEFAULT_RETRY_SECONDS, AsyncCaller
from common.packaging import pack_directory, sha256_hex
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import scheduler_service_pb2 as spb


class AsyncClient(_Connection, AsyncScheduleMethods):
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

    def acting_as(self, api_key: str, namespace: str = "") -> AsyncClient:
        """A client on the same channels that presents another key (and namespace): how a
        gateway calls for each of its callers without a connection each. Close only the
        original; the copies share its channels."""
        other = copy.copy(self)
        other.namespace = namespace
        other._r = self._r.acting_as(api_key, namespace)
        other._s = self._s.acting_as(api_key, namespace)
        return other

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # API keys and audit (admin) --------------------------------------------------------

    async def create_api_key(
        self, name: str, role: str, namespace: str, ttl_seconds: float = 0
    ) -> tuple[ApiKeyInfo, str]:
        request = requests.create_api_key(name, role, namespace, ttl_seconds)
        reply = await self._r.unary(self._auth.CreateApiKey, request, retry=False)
        return ApiKeyInfo.from_proto(reply.key), reply.secret

    async def list_api_keys(self) -> list[ApiKeyInfo]:
        """As ``Client.list_api_keys``."""
        pages = self._r.pages(self._auth.ListApiKeys, apb.ListApiKeysRequest())
        return [ApiKeyInfo.from_proto(k) async for reply in pages for k in reply.keys]

    async def revoke_api_key(self, key_id: str) -> ApiKeyInfo:
        request = apb.RevokeApiKeyRequest(key_id=key_id)
        return ApiKeyInfo.from_proto((await self._r.unary(self._auth.RevokeApiKey, request)).key)

    async def list_audit_events(self, limit: int = 100) -> list[dict[str, Any]]:
        request = requests.list_audit_events(limit)
        return requests.audit_events(await self._r.unary(self._auth.ListAuditEvents, request))

    # Tasks and artifacts -----------------------------------------------------------------

    async def register_task(self, path: str | Path) -> TaskInfo:
        data = await asyncio.to_thread(pack_directory, path)
        return await self.upload_package(data)

    async def upload_package(self, data: bytes) -> TaskInfo:
        messages = requests.package_messages(data)
        reply = await self._r.unary(self._registry.UploadTaskPackage, messages)
        return TaskInfo.from_proto(reply.task, reply.created)

    async def get_task(self, ref: str) -> TaskInfo:
        task_id, version = requests.split_ref(ref)
        request = rpb.GetTaskRequest(task_id=task_id, version=version)
        return TaskInfo.from_proto((await self._r.unary(self._registry.GetTask, request)).task)

    async def list_tasks(self, page_size: int = 100, **filters: str) -> AsyncIterator[TaskInfo]:
        token = ""
        while True:
            request = rpb.ListTasksRequest(page_size=page_size, page_token=token, **filters)
            reply = await self._r.unary(self._registry.ListTasks, request)
            for t in reply.tasks:
                yield TaskInfo.from_proto(t)
            token = reply.next_page_token
            if not token:
                return

    async def download_package(self, digest: str, timeout: float | None = None) -> bytes:
        request = rpb.DownloadTaskPackageRequest(digest=digest)
        method = self._registry.DownloadTaskPackage
        data = b"".join(
            [
                r.chunk
                async for r in self._r.stream(method, request, timeout=timeout or self._timeout)
            ]
        )
        if sha256_hex(data) != digest:
            raise DataLoss(f"package does not match digest {digest}")
        return data

    async def deprecate_task(self, ref: str, reason: str = "") -> TaskInfo:
        task_id, version = requests.split_ref(ref)
        request = rpb.DeprecateTaskRequest(task_id=task_id, version=version, reason=reason)
        reply = await self._r.unary(self._registry.DeprecateTask, request)
        return TaskInfo.from_proto(reply.task)

    async def share_task(self, task_id: str, shared: bool = True) -> TaskInfo:
        request = rpb.ShareTaskRequest(task_id=task_id, shared=shared)
        return TaskInfo.from_proto((await self._r.unary(self._registry.ShareTask, request)).task)

    async def upload_artifact(self, path: str | Path) -> str:
        path = Path(path)
        return await self.upload_artifact_data(path.name, await asyncio.to_thread(path.read_bytes))

    async def upload_artifact_data(self, filename: str, data: bytes) -> str:
        messages = upload_requests(filename, data)
        return str((await self._r.unary(self._registry.UploadArtifact, messages)).uri)

    async def list_artifacts(self) -> list[ArtifactInfo]:
        """As ``Client.list_artifacts``."""
        pages = self._r.pages(self._registry.ListArtifacts, rpb.ListArtifactsRequest())
        return [ArtifactInfo.from_proto(a) async for reply in pages for a in reply.artifacts]

    async def delete_artifacts(self, artifacts: list[str]) -> list[str]:
        """As ``Client.delete_artifacts``."""
        request = requests.delete_artifacts(artifacts)
        return list((await self._r.unary(self._registry.DeleteArtifacts, request)).digests)

    async def download_artifact(self, uri: str, timeout: float | None = None) -> bytes:
        request = rpb.DownloadArtifactRequest(uri=uri)
        method = self._registry.DownloadArtifact
        return b"".join(
            [
                r.chunk
                async for r in self._r.stream(method, request, timeout=timeout or self._timeout)
            ]
        )

    async def resolve_refs(self, value: Any, fetched: dict[str, Any] | None = None) -> Any:
        fetched = {} if fetched is None else fetched
        uri = refs.ref_uri(value)
        if uri is not None:
            if uri not in fetched:
                fetched[uri] = json.loads(await self.download_artifact(uri))
            return fetched[uri]
        if isinstance(value, dict):
            return {k: await self.resolve_refs(v, fetched) for k, v in value.items()}
        if isinstance(value, list):
            return [await self.resolve_refs(v, fetched) for v in value]
        return value

    async def upload_local_files(
        self, document: dict[str, Any], base: Path | None = None
    ) -> dict[str, Any]:
        out = dict(document)
        for name, value in document.items():
            if isinstance(value, str) and is_file_field(name) and not is_uri(value):
                candidate = (base or Path.cwd()) / value
                if candidate.is_file():
                    out[name] = await self.upload_artifact(candidate)
        return out

    # Pipelines ---------------------------------------------------------------------------

    async def register_pipelines(
        self,
        config: str | Path | dict[str, Any],
        pipeline_id: str = "",
        validate_only: bool = False,
    ) -> list[PipelineInfo]:
        request = requests.register_pipelines(config, pipeline_id, validate_only)
        reply = await self._r.unary(self._registry.RegisterPipelines, request)
        return requests.registered_pipelines(reply)

    async def get_pipeline(self, ref: str) -> PipelineInfo:
        pipeline_id, version = requests.split_ref(ref)
        request = rpb.GetPipelineRequest(pipeline_id=pipeline_id, version=version)
        reply = await self._r.unary(self._registry.GetPipeline, request)
        return PipelineInfo.from_proto(reply.pipeline)

    async def list_pipelines(
        self, page_size: int = 100, pipeline_id: str = ""
    ) -> AsyncIterator[PipelineInfo]:
        token = ""
        while True:
            request = rpb.ListPipelinesRequest(
                page_size=page_size, page_token=token, pipeline_id=pipeline_id
            )
            reply = await self._r.unary(self._registry.ListPipelines, request)
            for p in reply.pipelines:
                yield PipelineInfo.from_proto(p)
            token = reply.next_page_token
            if not token:
                return

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
    ) -> AsyncIterator[RunInfo]:
        filters = (state, pipeline_id, task_id, batch_id, created_after, created_before)
        seen, token = 0, ""
        while True:
            runs, token = await self.list_runs_page(
                *filters, page_size=page_size, page_token=token, labels=labels
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
        )
        reply = await self._s.unary(self._scheduler.ListRuns, request)
        return [RunInfo.from_proto(r) for r in reply.runs], reply.next_page_token

    async def list_executors(self) -> list[ExecutorInfo]:
        """As ``Client.list_executors``."""
        pages = self._s.pages(self._scheduler.ListExecutors, spb.ListExecutorsRequest())
        return [ExecutorInfo.from_proto(e) async for reply in pages for e in reply.executors]

    async def pause_executor(self, executor_id: str, reason: str = "") -> ExecutorPauseInfo:
        """As ``Client.pause_executor``."""
        request = spb.PauseExecutorRequest(executor_id=executor_id, reason=reason)
        reply = await self._s.unary(self._scheduler.PauseExecutor, request)
        return ExecutorPauseInfo.from_proto(reply.pause)

    async def resume_executor(self, executor_id: str) -> ExecutorResumed:
        """As ``Client.resume_executor``."""
        request = spb.ResumeExecutorRequest(executor_id=executor_id)
        reply = await self._s.unary(self._scheduler.ResumeExecutor, request)
        return ExecutorResumed(executor_id, reply.resumed, reply.rest_ended)

    async def list_queues(self) -> tuple[list[QueueInfo], int]:
        """As ``Client.list_queues``."""
        pages = self._s.pages(self._scheduler.ListQueues, spb.ListQueuesRequest())
        replies = [reply async for reply in pages]
        found = [QueueInfo.from_proto(q) for reply in replies for q in reply.queues]
        return found, replies[-1].delayed

    async def set_task_limits(
        self,
        task_id: str,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
        reset: Sequence[str] = (),
        rate_burst: int | None = None,
    ) -> TaskLimitsInfo | None:
        """As ``Client.set_task_limits``."""
        request = requests.set_task_limits(
            task_id, rate_limit, concurrency_limit, reset, rate_burst
        )
        reply = await self._s.unary(self._scheduler.SetTaskLimits, request)
        return TaskLimitsInfo.from_proto(reply.limits) if reply.HasField("limits") else None

    async def task_limits(self) -> list[TaskLimitsInfo]:
        """As ``Client.task_limits``."""
        pages = self._s.pages(self._scheduler.ListTaskLimits, spb.ListTaskLimitsRequest())
        return [TaskLimitsInfo.from_proto(t) async for reply in pages for t in reply.limits]

    async def pause_queue(self, queue: str, reason: str = "") -> QueuePauseInfo:
        """As ``Client.pause_queue``."""
        request = spb.PauseQueueRequest(queue=queue, reason=reason)
        reply = await self._s.unary(self._scheduler.PauseQueue, request)
        return QueuePauseInfo.from_proto(reply.pause)

    async def resume_queue(self, queue: str) -> bool:
        """As ``Client.resume_queue``."""
        request = spb.ResumeQueueRequest(queue=queue)
        return (await self._s.unary(self._scheduler.ResumeQueue, request)).resumed

    async def list_namespaces(self) -> list[NamespaceInfo]:
        """As ``Client.list_namespaces``."""
        pages = self._s.pages(self._scheduler.ListNamespaces, spb.ListNamespacesRequest())
        return [NamespaceInfo.from_proto(n) async for reply in pages for n in reply.namespaces]

    async def update_namespace(
        self,
        run_limit: int | None = None,
        weight: float | None = None,
        history_retention_days: float | None = None,
        reset: tuple[str, ...] | list[str] = (),
        calls_per_second: float | None = None,
    ) -> NamespaceInfo:
        """As ``Client.update_namespace``."""
        request = requests.update_namespace(
            run_limit, weight, history_retention_days, reset, calls_per_second
        )
        reply = await self._s.unary(self._scheduler.UpdateNamespace, request)
        return NamespaceInfo.from_proto(reply.namespace)

    async def check_dependencies(self, service: str = "") -> list[DependencyInfo]:
        """As ``Client.check_dependencies``."""
        found: list[DependencyInfo] = []
        if service in ("", "registry"):
            r = await self._r.unary(
                self._registry.CheckDependencies, rpb.RegistryServiceCheckDependenciesRequest()
            )
            found += [DependencyInfo.from_proto("registry", d) for d in r.dependencies]
        if service in ("", "scheduler"):
            s = await self._s.unary(
                self._scheduler.CheckDependencies,
                spb.SchedulerServiceCheckDependenciesRequest(),
            )
            found += [DependencyInfo.from_proto("scheduler", d) for d in s.dependencies]
        return found

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
            retry=retry_if_exception_type((Unavailable, DeadlineExceeded, _NotFinished)),
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
                        raise _NotFinished
        except (Unavailable, DeadlineExceeded, _NotFinished):
            raise WaitTimeoutError(run_id, timeout) from None
        return self._outcome(run, raise_on_failure)
