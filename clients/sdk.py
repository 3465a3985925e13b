"""The Python SDK: register tasks, submit runs, watch and wait for them.

    from clients import Client

    with Client("127.0.0.1:50051", "127.0.0.1:50052") as client:
        client.register_task("tasks/examples/text_sentiment")
        run = client.run(task="text_sentiment", input={"text": "I love it"})
        print(run.output)

Results are typed dataclasses (``clients.types``); the generated gRPC classes stay behind
them. Errors are ``clients.errors``: one class per status code users handle
(``NotFound``, ``InvalidArgument`` with its ``field``...), and ``RunFailedError`` and its
siblings from ``run()`` and ``wait()``. Calls go through the client core
(``common.client_core``): TLS, the key, a deadline on every call, and retries while a
service is UNAVAILABLE. ``clients.aio.AsyncClient`` is the same for asyncio.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from clients import requests
from clients.errors import (
    ApiError,
    DataLoss,
    DeadlineExceeded,
    Unauthenticated,
    Unavailable,
    WaitTimeoutError,
    raise_for_outcome,
)
from clients.schedules import ScheduleMethods
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
    StepInfo,
    TaskInfo,
    TaskLimitsInfo,
)
from common import refs
from common.artifacts import is_file_field, is_uri, upload_requests
from common.client_core import DEFAULT_RETRY_SECONDS, Caller
from common.packaging import pack_directory, sha256_hex
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import auth_service_pb2_grpc as apb_grpc
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc
from wtm.v1 import schedule_service_pb2_grpc as schpb_grpc
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc


def resolve_key(key: str = "", path: str = "") -> str:
    """The API key to present: ``key``, else the one in the file ``path``, else
    ``WTM_API_KEY``, else the one in the file ``WTM_API_KEY_FILE`` names ("" for none).

    Raises:
        Unauthenticated: the key file cannot be read.
    """
    if key.strip():
        return key.strip()
    if not path:
        if from_env := os.environ.get("WTM_API_KEY", "").strip():
            return from_env
        path = os.environ.get("WTM_API_KEY_FILE", "")
    if not path:
        return ""
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError as exc:
        raise Unauthenticated(f"cannot read the API key file {path}: {exc.strerror}") from exc


class _NotFinished(Exception):
    """The run's event stream ended before the run did (a scheduler went away)."""


class _Connection:
    """What ``Client`` and ``clients.aio.AsyncClient`` share: the settings, one caller per
    service (``_caller``: the sync or the asyncio one), the stubs, and the outcome rule."""

    _caller: Any

    def _connect(
        self,
        registry: str,
        scheduler: str,
        api_key: str,
        tls_ca: str | None,
        namespace: str | None,
        timeout: float,
        retry_seconds: float,
        raise_on_failure: bool,
    ) -> None:
        self.namespace = os.environ.get("WTM_NAMESPACE", "") if namespace is None else namespace
        # As the CLI: the addresses `wtm stack up` prints, else the services' default ports.
        registry = registry or os.environ.get("WTM_REGISTRY_ADDR") or "127.0.0.1:50051"
        scheduler = scheduler or os.environ.get("WTM_SCHEDULER_ADDR") or "127.0.0.1:50052"
        settings: dict[str, Any] = {
            "ca": tls_ca,
            "api_key": api_key,
            "namespace": self.namespace,
            "timeout": timeout,
            "retry_seconds": retry_seconds,
        }
        self._r = self._caller(registry, **settings)
        self._s = self._caller(scheduler, **settings)
        self._registry = rpb_grpc.RegistryServiceStub(self._r.channel)
        self._auth = apb_grpc.AuthServiceStub(self._r.channel)
        self._scheduler = spb_grpc.SchedulerServiceStub(self._s.channel)
        self._schedules = schpb_grpc.ScheduleServiceStub(self._s.channel)
        self._timeout = timeout
        self.raise_on_failure = raise_on_failure

    def _outcome(self, run: RunInfo, raise_on_failure: bool | None) -> RunInfo:
        """A finished run, or its ``RunError`` when it did not complete and the caller (or
        this client's default) asked for that."""
        wanted = self.raise_on_failure if raise_on_failure is None else raise_on_failure
        return raise_for_outcome(run) if wanted else run


class Client(_Connection, ScheduleMethods):
    """A connection to the registry and the scheduler.

    Every method raises the ``clients.errors`` class of the status a call failed with
    (``NotFound``, ``InvalidArgument``, ``PermissionDenied``, ``Unavailable`` once the
    retries are spent, ...); only the exceptions particular to a method are listed on it.
    """

    _caller = Caller
    _r: Caller
    _s: Caller

    def __init__(
        self,
        registry: str = "",
        scheduler: str = "",
        token: str = "",
        timeout: float = 30.0,
        api_key: str | None = None,
        tls_ca: str | None = None,
        api_key_file: str = "",
        namespace: str | None = None,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        raise_on_failure: bool = True,
    ) -> None:
        """Connect (lazily: the first call opens the channels).

        Args:
            registry: the registry's address, host:port (default ``WTM_REGISTRY_ADDR``, else
                127.0.0.1:50051).
            scheduler: the scheduler's address, host:port (default ``WTM_SCHEDULER_ADDR``,
                else 127.0.0.1:50052).
            api_key: the key to present (``token`` is its older name); by default the one
                in ``WTM_API_KEY``, or in the file ``api_key_file`` or ``WTM_API_KEY_FILE``
                names.
            tls_ca: the CA to check the services' certificates against (default
                ``WTM_TLS_CA``; "" and no such variable: plaintext).
            namespace: the one to act in (default ``WTM_NAMESPACE``); a key bound to a
                namespace acts in it without saying so.
            timeout: the deadline of each call, in seconds.
            retry_seconds: how long a call answered UNAVAILABLE is retried (0: never).
            raise_on_failure: whether ``run`` and ``wait`` raise ``RunError`` for a run that
                did not complete (each call may say otherwise).

        Raises:
            Unauthenticated: the key file cannot be read.
        """
        key = resolve_key(api_key or token, api_key_file)
        self._connect(
            registry, scheduler, key, tls_ca, namespace, timeout, retry_seconds, raise_on_failure
        )

    def close(self) -> None:
        self._r.close()
        self._s.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # API keys and audit (admin) --------------------------------------------------------

    def create_api_key(
        self, name: str, role: str, namespace: str, ttl_seconds: float = 0
    ) -> tuple[ApiKeyInfo, str]:
        """Make a key; returns it and its secret (the whole key text), shown this once."""
        request = requests.create_api_key(name, role, namespace, ttl_seconds)
        reply = self._r.unary(self._auth.CreateApiKey, request, retry=False)
        return ApiKeyInfo.from_proto(reply.key), reply.secret

    def list_api_keys(self) -> list[ApiKeyInfo]:
        """The keys this client's key may manage, oldest first (every page)."""
        pages = self._r.pages(self._auth.ListApiKeys, apb.ListApiKeysRequest())
        return [ApiKeyInfo.from_proto(k) for reply in pages for k in reply.keys]

    def revoke_api_key(self, key_id: str) -> ApiKeyInfo:
        reply = self._r.unary(self._auth.RevokeApiKey, apb.RevokeApiKeyRequest(key_id=key_id))
        return ApiKeyInfo.from_proto(reply.key)

    def list_audit_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded mutations, newest first."""
        request = requests.list_audit_events(limit)
        return requests.audit_events(self._r.unary(self._auth.ListAuditEvents, request))

    # Tasks -------------------------------------------------------------------------------

    def register_task(self, path: str | Path) -> TaskInfo:
        """Pack a task directory deterministically and register it.

        Raises:
            InvalidArgument: the package or its task.json is not valid (``field`` says
                where).
            AlreadyExists: that version is registered with other content.
        """
        return self.upload_package(pack_directory(path))

    def upload_package(self, data: bytes) -> TaskInfo:
        """Register an already packed archive (tar.gz bytes)."""
        reply = self._r.unary(self._registry.UploadTaskPackage, requests.package_messages(data))
        return TaskInfo.from_proto(reply.task, reply.created)

    def get_task(self, ref: str) -> TaskInfo:
        """A task version by ``"id"`` (latest) or ``"id@version"``.

        Raises:
            NotFound: no such task (version) in this namespace.
        """
        task_id, version = requests.split_ref(ref)
        request = rpb.GetTaskRequest(task_id=task_id, version=version)
        return TaskInfo.from_proto(self._r.unary(self._registry.GetTask, request).task)

    def list_tasks(self, page_size: int = 100, **filters: str) -> Iterator[TaskInfo]:
        """Every task version matching the filters (task_id, category, tag, queue)."""
        token = ""
        while True:
            request = rpb.ListTasksRequest(page_size=page_size, page_token=token, **filters)
            reply = self._r.unary(self._registry.ListTasks, request)
            yield from (TaskInfo.from_proto(t) for t in reply.tasks)
            token = reply.next_page_token
            if not token:
                return

    def download_package(self, digest: str, timeout: float | None = None) -> bytes:
        """A package archive by digest, checked against it.

        Raises:
            DataLoss: what arrived does not match the digest.
        """
        request = rpb.DownloadTaskPackageRequest(digest=digest)
        method = self._registry.DownloadTaskPackage
        chunks = self._r.stream(method, request, timeout=timeout or self._timeout)
        data = b"".join(r.chunk for r in chunks)
        if sha256_hex(data) != digest:
            raise DataLoss(f"package does not match digest {digest}")
        return data

    def deprecate_task(self, ref: str, reason: str = "") -> TaskInfo:
        """Deprecate ``"id@version"``: kept for pinned pipelines, no longer "latest"."""
        task_id, version = requests.split_ref(ref)
        request = rpb.DeprecateTaskRequest(task_id=task_id, version=version, reason=reason)
        return TaskInfo.from_proto(self._r.unary(self._registry.DeprecateTask, request).task)

    def share_task(self, task_id: str, shared: bool = True) -> TaskInfo:
        """Let every namespace's pipelines use this task of yours, as "namespace/task_id"
        (admins); ``shared=False`` stops that."""
        request = rpb.ShareTaskRequest(task_id=task_id, shared=shared)
        return TaskInfo.from_proto(self._r.unary(self._registry.ShareTask, request).task)

    # Artifacts ---------------------------------------------------------------------------

    def upload_artifact(self, path: str | Path) -> str:
        """Store a local file in the object store; returns the ``artifact://`` URI to put in a
        run's input."""
        path = Path(path)
        return self.upload_artifact_data(path.name, path.read_bytes())

    def upload_artifact_data(self, filename: str, data: bytes) -> str:
        """``upload_artifact`` of bytes in hand, stored under ``filename``."""
        messages = upload_requests(filename, data)
        return str(self._r.unary(self._registry.UploadArtifact, messages).uri)

    def list_artifacts(self) -> list[ArtifactInfo]:
        """The artifacts stored in this client's namespace (every namespace's, for
        ``namespace="*"`` with a key of every namespace), by namespace and digest."""
        pages = self._r.pages(self._registry.ListArtifacts, rpb.ListArtifactsRequest())
        return [ArtifactInfo.from_proto(a) for reply in pages for a in reply.artifacts]

    def delete_artifacts(self, artifacts: list[str]) -> list[str]:
        """Remove artifacts of this client's namespace (URIs or digests, at most 1000); a
        run that names one afterwards fails its step. Returns the digests now gone."""
        request = requests.delete_artifacts(artifacts)
        return list(self._r.unary(self._registry.DeleteArtifacts, request).digests)

    def download_artifact(self, uri: str, timeout: float | None = None) -> bytes:
        """The bytes of a stored artifact (an uploaded input, or an output that went by
        reference)."""
        request = rpb.DownloadArtifactRequest(uri=uri)
        chunks = self._r.stream(
            self._registry.DownloadArtifact, request, timeout=timeout or self._timeout
        )
        return b"".join(reply.chunk for reply in chunks)

    def resolve_refs(self, value: Any, fetched: dict[str, Any] | None = None) -> Any:
        """``value`` with every large document that went by reference (``{"wtm_ref": ...}``)
        replaced by the document itself; ``fetched`` (URI -> document) is filled as it
        goes, so a document referenced twice is downloaded once."""
        fetched = {} if fetched is None else fetched
        uri = refs.ref_uri(value)
        if uri is not None:
            if uri not in fetched:
                fetched[uri] = json.loads(self.download_artifact(uri))
            return fetched[uri]
        if isinstance(value, dict):
            return {k: self.resolve_refs(v, fetched) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve_refs(v, fetched) for v in value]
        return value

    def upload_local_files(
        self, document: dict[str, Any], base: Path | None = None
    ) -> dict[str, Any]:
        """A copy of ``document`` where every file field (``image_path``, ``*_file``...) that
        names an existing local file is uploaded and replaced by its artifact URI."""
        out = dict(document)
        for name, value in document.items():
            if isinstance(value, str) and is_file_field(name) and not is_uri(value):
                candidate = (base or Path.cwd()) / value
                if candidate.is_file():
                    out[name] = self.upload_artifact(candidate)
        return out

    # Pipelines ---------------------------------------------------------------------------

    def register_pipelines(
        self,
        config: str | Path | dict[str, Any],
        pipeline_id: str = "",
        validate_only: bool = False,
    ) -> list[PipelineInfo]:
        """Register the pipelines of a config (a file path or a dict); ``validate_only`` for a
        dry run that stores nothing. Each result carries the registration's ``warnings``.

        Raises:
            InvalidArgument: the config is not valid (``field`` names the key).
            AlreadyExists: a version is registered with another definition.
        """
        request = requests.register_pipelines(config, pipeline_id, validate_only)
        reply = self._r.unary(self._registry.RegisterPipelines, request)
        return requests.registered_pipelines(reply)

    def get_pipeline(self, ref: str) -> PipelineInfo:
        """A pipeline version by ``"id"`` (latest) or ``"id@version"``.

        Raises:
            NotFound: no such pipeline (version) in this namespace.
        """
        pipeline_id, version = requests.split_ref(ref)
        request = rpb.GetPipelineRequest(pipeline_id=pipeline_id, version=version)
        return PipelineInfo.from_proto(self._r.unary(self._registry.GetPipeline, request).pipeline)

    def list_pipelines(self, page_size: int = 100, pipeline_id: str = "") -> Iterator[PipelineInfo]:
        token = ""
        while True:
            request = rpb.ListPipelinesRequest(
                page_size=page_size, page_token=token, pipeline_id=pipeline_id
            )
            reply = self._r.unary(self._registry.ListPipelines, request)
            yield from (PipelineInfo.from_proto(p) for p in reply.pipelines)
            token = reply.next_page_token
            if not token:
                return

    # Runs --------------------------------------------------------------------------------

    def submit(
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
        """Submit a run of a task or a pipeline on one input document; returns at once.

        Args:
            task: "task_id" or "task_id@version" (or ``pipeline``: exactly one of them).
            pipeline: "pipeline_id" or "pipeline_id@version".
            input: the input document.
            priority: 1 (lowest) to 10; 0: the task's or pipeline's.
            request_id: an idempotency key: repeated submits with it make one run (and
                with it, a submit is retried while the scheduler is UNAVAILABLE).
            labels: labels of the run.
            cache: None follows the pipeline's enable_caching; False turns result caching
                off for this run; True on for every step (a task run too).
            run_timeout: the run's time limit in seconds (1 to 30 days; None: none): past
                it an unfinished run ends TIMED_OUT and its running steps are stopped.
            start_delay: start the run this many seconds from now (at most 30 days), as
                Celery's countdown: it is recorded at once and queued then.

        Raises:
            InvalidArgument: the input or a field of the request is not valid.
            NotFound: no such task or pipeline.
            FailedPrecondition: the pipeline is disabled.
        """
        request = requests.submit(
            task, pipeline, input, priority, request_id, labels, cache,
            run_timeout=run_timeout, start_delay=start_delay,
        )  # fmt: skip
        reply = self._s.unary(self._scheduler.SubmitRun, request, retry=bool(request_id))
        return RunInfo.from_proto(reply.run)

    def submit_many(
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
        """Submit one run per input document in one call; returns (batch id, run ids)."""
        request = requests.submit_many(
            inputs, task, pipeline, priority, request_id, labels, cache, run_timeout, start_delay
        )
        reply = self._s.unary(self._scheduler.SubmitRuns, request, retry=bool(request_id))
        return reply.batch_id, list(reply.run_ids)

    def rerun(
        self, run_id: str, latest: bool = False, request_id: str = "", from_failure: bool = False
    ) -> RunInfo:
        """Run again what run ``run_id`` ran, on the same input (as Flower's retry and
        Hatchet's replay do): a new run of the same task or pipeline version — the latest
        with ``latest`` —, priority, time limit and labels, labelled ``wtm.rerun_of`` with
        ``run_id``; returns it at once. Any run may be run again, finished or not. One call
        (``RerunRun``; a scheduler from before it answers UNIMPLEMENTED).

        ``from_failure`` resumes a run that failed, was cancelled or timed out (Argo's
        retry): its steps that completed are taken over — COMPLETED at once with their
        outputs, ``cached_from`` naming where each was computed — wherever the new run has
        them unchanged (the same task digest and input mapping, and every step they read
        taken over too); only the rest run. With ``latest``, a task fixed since keeps what
        comes before it.

        Raises:
            NotFound: no such run (or no longer that version, unless ``latest``).
            FailedPrecondition: ``from_failure`` of a run that has not ended, completed, or
                whose every step the new run would take over.
        """
        request = requests.rerun(run_id, latest, request_id, from_failure)
        reply = self._s.unary(self._scheduler.RerunRun, request, retry=bool(request_id))
        return RunInfo.from_proto(reply.run)

    def resume_runs(
        self,
        *,
        batch_id: str = "",
        labels: dict[str, str] | None = None,
        task_id: str = "",
        pipeline_id: str = "",
        latest: bool = False,
    ) -> ResumedRuns:
        """Resume (``rerun(..., from_failure=True)``) every run that matches all the filters
        given — a batch, labels, a task, a pipeline; at least one — and FAILED, was
        CANCELLED or TIMED_OUT, as Hatchet's bulk replay: each a new run taking over the
        steps its run completed. Each run is resumed once (request id ``resume/<run id>``):
        calling this again, after a cut-short call or to see them, returns the same new
        runs; and a resume that has failed again is resumed in turn (the chain is followed to
        its newest run, which ``resumed`` then names). Runs are read from the history.

        Raises:
            InvalidArgument: no filter given.
        """
        request = requests.resume_runs(batch_id, labels, task_id, pipeline_id, latest)
        result = ResumedRuns()
        for reply in self._s.pages(self._scheduler.ResumeRuns, request):
            requests.add_resumed(result, reply)
        return requests.in_order(result)

    def cancel(self, run_id: str, reason: str = "") -> RunInfo:
        """Cancel a run: queued steps are dropped, running ones stopped. A finished run is
        returned as it is."""
        return RunInfo.from_proto(self._cancel(run_id, reason).run)

    def _cancel(self, run_id: str, reason: str) -> spb.CancelRunResponse:
        request = spb.CancelRunRequest(run_id=run_id, reason=reason)
        return self._s.unary(self._scheduler.CancelRun, request)

    def cancel_runs(
        self,
        reason: str = "",
        *,
        batch_id: str = "",
        labels: dict[str, str] | None = None,
        task_id: str = "",
        pipeline_id: str = "",
    ) -> CancelledRuns:
        """Cancel every unfinished run (queued or running) that matches all the filters
        given — a batch, labels (a schedule's: ``{"wtm.schedule": its id}``), a task, a
        pipeline; at least one, so that nothing cancels every run by mistake. Runs another
        key submitted are left alone unless this key's role may cancel anyone's; they are
        counted in the answer. The scheduler cancels them, up to 500 a call
        (``CancelRuns``), over what the history shows unfinished (a run submitted while
        this goes on may be missed).

        Raises:
            InvalidArgument: no filter given.
        """
        request = requests.cancel_runs(reason, batch_id, labels, task_id, pipeline_id)
        result = CancelledRuns()
        for reply in self._s.pages(self._scheduler.CancelRuns, request):
            requests.add_cancelled(result, reply)
        return result

    def list_runs(
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
    ) -> Iterator[RunInfo]:
        """Runs newest first (without step outputs), fetching pages as needed; ``labels``:
        only runs with every one of them (a schedule's: ``{"wtm.schedule": its id}``)."""
        filters = (state, pipeline_id, task_id, batch_id, created_after, created_before)
        seen, token = 0, ""
        while True:
            runs, token = self.list_runs_page(
                *filters, page_size=page_size, page_token=token, labels=labels
            )
            for r in runs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield r
            if not token:
                return

    def list_runs_page(
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
        """One page of runs, newest first, and the token of the next ("" on the last)."""
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
        reply = self._s.unary(self._scheduler.ListRuns, request)
        return [RunInfo.from_proto(r) for r in reply.runs], reply.next_page_token

    def list_executors(self) -> list[ExecutorInfo]:
        """The executors serving this client's namespace, connected first (every page)."""
        pages = self._s.pages(self._scheduler.ListExecutors, spb.ListExecutorsRequest())
        return [ExecutorInfo.from_proto(e) for reply in pages for e in reply.executors]

    def pause_executor(self, executor_id: str, reason: str = "") -> ExecutorPauseInfo:
        """Give an executor no new step, on every scheduler replica within about a second,
        until ``resume_executor`` (Hatchet's worker pause, Kubernetes' cordon): its running
        steps go on and it stays connected. An operator's or an admin's call; one that
        serves other namespaces too, only a key of every namespace may pause.

        Raises:
            NotFound: no such executor serving this client's namespace.
            PermissionDenied: it serves other namespaces too, or the role may not.
        """
        request = spb.PauseExecutorRequest(executor_id=executor_id, reason=reason)
        reply = self._s.unary(self._scheduler.PauseExecutor, request)
        return ExecutorPauseInfo.from_proto(reply.pause)

    def resume_executor(self, executor_id: str) -> ExecutorResumed:
        """Give a paused executor work again, and end a resting one's rest (steps kept
        failing in it; should they fail in it again, its next rest is twice as long). Falsy
        when it was neither paused nor resting, or is too old to be told its rest is over.

        Raises:
            NotFound: no such executor serving this client's namespace.
            PermissionDenied: it serves other namespaces too, or the role may not.
        """
        request = spb.ResumeExecutorRequest(executor_id=executor_id)
        reply = self._s.unary(self._scheduler.ResumeExecutor, request)
        return ExecutorResumed(executor_id, reply.resumed, reply.rest_ended)

    def list_queues(self) -> tuple[list[QueueInfo], int]:
        """The queues of this client's namespace that have waiting work or an executor, and
        how many steps are held back from their queues (waiting for a time: a retry's
        backoff, a delayed start, a rate limit; or for a place: a concurrency limit)."""
        replies = list(self._s.pages(self._scheduler.ListQueues, spb.ListQueuesRequest()))
        found = [QueueInfo.from_proto(q) for reply in replies for q in reply.queues]
        return found, replies[-1].delayed

    def set_task_limits(
        self,
        task_id: str,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
        reset: Sequence[str] = (),
        rate_burst: int | None = None,
    ) -> TaskLimitsInfo | None:
        """Set a task's limits in this client's namespace over its task.json's (Celery's
        ``control rate_limit``): ``rate_limit`` "N/s|m|h" ("" for none), ``rate_burst`` 1 to
        10,000 (starts at once under the rate limit, the next ones at its rate),
        ``concurrency_limit`` 1 to 1,000 (0 for none); ``reset`` names limits to return to the
        task's own ("rate_limit", "rate_burst", "concurrency_limit"). Every scheduler replica
        applies them within about a second, to the steps already queued too. An operator's or
        an admin's call. Returns the limits as they now are (None when all are the task's own
        again).

        Raises:
            InvalidArgument: a bad limit, or nothing to change (naming the field).
            NotFound: no such task in this namespace.
            FailedPrecondition: the task batches.
            PermissionDenied: the key's role may not.
        """
        request = requests.set_task_limits(
            task_id, rate_limit, concurrency_limit, reset, rate_burst
        )
        reply = self._s.unary(self._scheduler.SetTaskLimits, request)
        return TaskLimitsInfo.from_proto(reply.limits) if reply.HasField("limits") else None

    def task_limits(self) -> list[TaskLimitsInfo]:
        """The task limits operators set in this client's namespace, by task id."""
        pages = self._s.pages(self._scheduler.ListTaskLimits, spb.ListTaskLimitsRequest())
        return [TaskLimitsInfo.from_proto(t) for reply in pages for t in reply.limits]

    def pause_queue(self, queue: str, reason: str = "") -> QueuePauseInfo:
        """Stop leasing the steps waiting on ``queue`` (its name in this client's namespace,
        "vision" or "vision|gpu=true", or its full name), on every scheduler replica within
        about a second, until ``resume_queue`` (Celery's ``cancel_consumer`` on every
        worker): runs are still accepted and their steps wait; running steps go on. An
        operator's or an admin's call.

        Raises:
            InvalidArgument: not a queue name, or ``reason`` over 500 characters.
            NotFound: a queue of another namespace.
            PermissionDenied: the key's role may not hold back others' runs.
        """
        request = spb.PauseQueueRequest(queue=queue, reason=reason)
        return QueuePauseInfo.from_proto(self._s.unary(self._scheduler.PauseQueue, request).pause)

    def resume_queue(self, queue: str) -> bool:
        """Lease a paused queue's steps again; False when it was not paused."""
        request = spb.ResumeQueueRequest(queue=queue)
        return self._s.unary(self._scheduler.ResumeQueue, request).resumed

    def list_namespaces(self) -> list[NamespaceInfo]:
        """The namespace the client acts in (every one in use, for ``namespace="*"`` with a
        key of every namespace): its runs queued or running, its limit of those, its weight
        in the turns new runs take between namespaces, and its steps waiting."""
        pages = self._s.pages(self._scheduler.ListNamespaces, spb.ListNamespacesRequest())
        return [NamespaceInfo.from_proto(n) for reply in pages for n in reply.namespaces]

    def update_namespace(
        self,
        run_limit: int | None = None,
        weight: float | None = None,
        history_retention_days: float | None = None,
        reset: tuple[str, ...] | list[str] = (),
        calls_per_second: float | None = None,
    ) -> NamespaceInfo:
        """Set the settings of the namespace this client acts in over the installation's
        (``reset``: return some to it — "run_limit", "weight", "history_retention_days",
        "calls_per_second"); every scheduler replica applies them within about a second, and
        every registry replica the calls a second too. A key of every
        namespace only. Returns the namespace as it now is."""
        request = requests.update_namespace(
            run_limit, weight, history_retention_days, reset, calls_per_second
        )
        reply = self._s.unary(self._scheduler.UpdateNamespace, request)
        return NamespaceInfo.from_proto(reply.namespace)

    def check_dependencies(self, service: str = "") -> list[DependencyInfo]:
        """The registry's MongoDB and object store, and the scheduler's Redis and MongoDB,
        as each service finds them now (``service``: only "registry" or "scheduler")."""
        found: list[DependencyInfo] = []
        if service in ("", "registry"):
            r = self._r.unary(
                self._registry.CheckDependencies, rpb.RegistryServiceCheckDependenciesRequest()
            )
            found += [DependencyInfo.from_proto("registry", d) for d in r.dependencies]
        if service in ("", "scheduler"):
            s = self._s.unary(
                self._scheduler.CheckDependencies,
                spb.SchedulerServiceCheckDependenciesRequest(),
            )
            found += [DependencyInfo.from_proto("scheduler", d) for d in s.dependencies]
        return found

    def get_run(self, run_id: str, resolve_refs: bool = True) -> RunInfo:
        """A run and its steps. Outputs too large to travel inline are fetched from the
        object store, unless ``resolve_refs`` is false (then they stay reference documents).

        Raises:
            NotFound: no such run in this namespace.
        """
        reply = self._s.unary(self._scheduler.GetRun, spb.GetRunRequest(run_id=run_id))
        run = RunInfo.from_proto(reply.run)
        return self._with_documents(run) if resolve_refs else run

    def _with_documents(self, run: RunInfo) -> RunInfo:
        """``run`` with its outputs that went by reference fetched."""
        if refs.REF_KEY not in repr((run.output, [s.output for s in run.steps])):
            return run
        fetched: dict[str, Any] = {}  # a sink's output is also the run's: fetched once
        return dataclasses.replace(
            run,
            output=self.resolve_refs(run.output, fetched),
            steps=[
                dataclasses.replace(s, output=self.resolve_refs(s.output, fetched))
                for s in run.steps
            ],
        )

    def run(
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
        """Submit a run and wait for it to finish, in one call (the scheduler answers when
        the run has ended); returns the finished run, large outputs fetched. The arguments
        are ``submit``'s.

        Raises:
            RunFailedError, RunCancelledError, RunTimedOutError: the run ended otherwise
                than COMPLETED (``raise_on_failure=False`` returns it instead).
            WaitTimeoutError: it had not finished within ``timeout`` seconds.
        """
        request = requests.submit(
            task, pipeline, input, priority, request_id, labels, cache, timeout, run_timeout
        )
        reply = self._s.unary(
            self._scheduler.SubmitRun, request, timeout=timeout + 30, retry=bool(request_id)
        )
        run = RunInfo.from_proto(reply.run)
        if not run.finished:
            raise WaitTimeoutError(run.run_id, timeout)
        run = self._with_documents(run)
        return self._outcome(run, raise_on_failure)

    def watch(
        self, run_id: str, after_event_id: str = "", timeout: float | None = None
    ) -> Iterator[RunEventInfo]:
        """The run's events from its start (or after an event id) until it finishes;
        ``timeout`` bounds the whole watch (None: as long as the run takes).

        Raises:
            NotFound: no such run.
            DeadlineExceeded: ``timeout`` passed first.
        """
        request = spb.WatchRunRequest(run_id=run_id, after_event_id=after_event_id)
        for reply in self._s.stream(self._scheduler.WatchRun, request, timeout=timeout):
            yield RunEventInfo.from_proto(reply.event)

    def wait(
        self, run_id: str, timeout: float = 300.0, raise_on_failure: bool | None = None
    ) -> RunInfo:
        """Block until the run finishes and return it. Rides out a scheduler restart: the
        watch is resumed while the scheduler is UNAVAILABLE, until the deadline.

        Raises:
            RunFailedError, RunCancelledError, RunTimedOutError: the run ended otherwise
                than COMPLETED (``raise_on_failure=False`` returns it instead).
            WaitTimeoutError: it had not finished within ``timeout`` seconds (0 or less:
                one look, no wait).
            NotFound: no such run.
        """
        if timeout <= 0:
            run = self.get_run(run_id)
            if not run.finished:
                raise WaitTimeoutError(run_id, timeout)
            return self._outcome(run, raise_on_failure)
        deadline = time.monotonic() + timeout
        retrying = Retrying(
            retry=retry_if_exception_type((Unavailable, DeadlineExceeded, _NotFinished)),
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    left = max(deadline - time.monotonic(), 0.001)
                    for event in self.watch(run_id, timeout=left):
                        if event.ends_run:
                            break
                    run = self.get_run(run_id)
                    if not run.finished:
                        raise _NotFinished
        except (Unavailable, DeadlineExceeded, _NotFinished):
            raise WaitTimeoutError(run_id, timeout) from None
        return self._outcome(run, raise_on_failure)


__all__ = [  # the types are clients.types', re-exported for the callers that import them here
    "ApiError",
    "ApiKeyInfo",
    "Client",
    "ExecutorInfo",
    "PipelineInfo",
    "PipelineStepInfo",
    "RunEventInfo",
    "RunInfo",
    "StepInfo",
    "TaskInfo",
    "resolve_key",
]
