"""The Python SDK: register tasks, submit runs, watch and wait for them.

    from clients import Client

    client = Client("127.0.0.1:50051", "127.0.0.1:50052")
    client.register_task("tasks/examples/text_sentiment")
    run = client.submit(task="text_sentiment", input={"text": "I love it"})
    print(client.wait(run.run_id).output)

Results are plain dataclasses; the generated gRPC classes stay inside this module. Errors
are ``ApiError`` with the canonical status name (``NOT_FOUND``, ``INVALID_ARGUMENT``...).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from common import refs, tls
from common.artifacts import is_file_field, is_uri, upload_requests
from common.packaging import pack_directory, sha256_hex
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import auth_service_pb2_grpc as apb_grpc
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc
from wtm.v1 import run_pb2
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc

CHUNK = 256 * 1024
TERMINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}


class ApiError(Exception):
    """A call the services refused: ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def resolve_key(key: str = "", path: str = "") -> str:
    """The API key to present: ``key``, else the one in the file ``path``, else
    ``WTM_API_KEY``, else the one in the file ``WTM_API_KEY_FILE`` names ("" for none)."""
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
        raise ApiError("UNAUTHENTICATED", f"cannot read the API key file {path}: {exc}") from exc


def _end_stream(stream: Any) -> None:
    """Stop reading a server stream: cancel the call, or, where OpenTelemetry's client
    instrumentation wrapped it in a generator (OTEL_EXPORTER_OTLP_ENDPOINT set), close that
    generator, which ends the call under it."""
    if callable(getattr(stream, "cancel", None)):
        stream.cancel()
    elif callable(getattr(stream, "close", None)):
        stream.close()


def _time(message: Any, name: str) -> datetime | None:
    return getattr(message, name).ToDatetime() if message.HasField(name) else None


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as the registry describes it (never its secret)."""

    key_id: str
    name: str
    role: str
    namespace: str
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str

    @classmethod
    def _from(cls, k: apb.ApiKey) -> ApiKeyInfo:
        return cls(
            k.key_id,
            k.name,
            k.role,
            k.namespace,
            _time(k, "create_time"),
            _time(k, "expire_time"),
            _time(k, "revoke_time"),
            k.created_by,
        )


@dataclass(frozen=True)
class TaskInfo:
    """A registered task version."""

    task_id: str
    version: str
    name: str
    description: str
    category: str
    tags: list[str]
    queue: str
    digest: str
    size_bytes: int
    manifest: dict[str, Any]
    created: bool = False
    deprecated: bool = False
    deprecation_reason: str = ""
    namespace: str = ""
    shared: bool = False  # every namespace may use it, as "namespace/task_id"

    @classmethod
    def _from(cls, t: rpb.Task, created: bool = False) -> TaskInfo:
        return cls(
            t.task_id,
            t.version,
            t.display_name,
            t.description,
            t.category,
            list(t.tags),
            t.queue,
            t.digest,
            t.size_bytes,
            json.loads(t.manifest_json or "{}"),
            created,
            t.deprecated,
            t.deprecation_reason,
            t.namespace,
            t.shared,
        )


@dataclass(frozen=True)
class PipelineStepInfo:
    """One step of a registered pipeline, pinned to a task version."""

    step_id: str
    task_id: str
    task_version: str
    digest: str
    depends_on: list[str]
    parallel_group: str
    timeout_seconds: int
    retry_count: int
    input_mapping: dict[str, Any]
    queue: str
    cache: bool | None = None  # the step's own "cache" (None: as the pipeline's)


@dataclass(frozen=True)
class PipelineInfo:
    """A registered pipeline version."""

    pipeline_id: str
    version: str
    name: str
    description: str
    steps: list[PipelineStepInfo]
    input_validation: dict[str, Any]
    output_format: dict[str, Any]
    metadata: dict[str, Any]
    enabled: bool
    created: bool = False  # stored by the call that returned it
    registered_before: bool = False  # that version existed before the call
    namespace: str = ""
    # Keys of the registered config kept but not acted on (from RegisterPipelines).
    warnings: list[str] = field(default_factory=list)
    max_parallel_tasks: int = 0  # global_settings: 0 = no limit of its own
    enable_caching: bool = False
    log_level: str = ""

    @classmethod
    def _from(
        cls, p: rpb.Pipeline, created: bool = False, registered_before: bool = False
    ) -> PipelineInfo:
        steps = [
            PipelineStepInfo(
                s.step_id,
                s.task_id,
                s.task_version,
                s.digest,
                list(s.depends_on),
                s.parallel_group,
                s.timeout_seconds,
                s.retry_count,
                json.loads(s.input_mapping_json or "{}"),
                s.queue,
                s.cache if s.HasField("cache") else None,
            )
            for s in p.steps
        ]
        return cls(
            p.pipeline_id,
            p.version,
            p.display_name,
            p.description,
            steps,
            json.loads(p.input_validation_json or "{}"),
            json.loads(p.output_format_json or "{}"),
            json.loads(p.metadata_json or "{}"),
            p.enabled,
            created,
            registered_before,
            p.namespace,
            max_parallel_tasks=p.max_parallel_tasks,
            enable_caching=p.enable_caching,
            log_level=p.log_level,
        )


@dataclass(frozen=True)
class StepInfo:
    """The latest attempt of one step of a run."""

    step_id: str
    task_id: str
    task_version: str
    state: str
    attempt: int
    output: Any
    error: str
    executor_id: str
    started_at: datetime | None
    ended_at: datetime | None
    logs: list[str] = field(default_factory=list)
    input_id: str = ""  # the lineage ids of the step's input and output documents
    output_id: str = ""
    cached_from: str = ""  # "run_id/output_id" when the output came from the result cache


@dataclass(frozen=True)
class RunInfo:
    """A run and its steps."""

    run_id: str
    state: str
    task_id: str
    pipeline_id: str
    input: dict[str, Any]
    output: Any
    error: str
    priority: int
    steps: list[StepInfo] = field(default_factory=list)
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    pipeline_version: str = ""
    lineage: list[tuple[str, str]] = field(default_factory=list)
    processing_summary: dict[str, Any] | None = None
    batch_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    trace_id: str = ""  # open in Jaeger: http://<jaeger>:16686/trace/<trace_id>
    namespace: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def _from(cls, r: run_pb2.Run) -> RunInfo:
        steps = [
            StepInfo(
                s.step_id,
                s.task_id,
                s.task_version,
                run_pb2.State.Name(s.state)[6:],
                s.attempt,
                json.loads(s.output_json) if s.output_json else None,
                s.error,
                s.executor_id,
                _time(s, "start_time"),
                _time(s, "end_time"),
                list(s.logs),
                s.input_id,
                s.output_id,
                s.cached_from,
            )
            for s in r.steps
        ]
        summary = None
        if r.HasField("processing_summary"):
            ps = r.processing_summary
            summary = {
                "wall_seconds": ps.wall_seconds,
                "step_seconds_sum": ps.step_seconds_sum,
                "parallel_speedup": ps.parallel_speedup,
                "steps": [
                    {
                        "step_id": t.step_id,
                        "queued_seconds": t.queued_seconds,
                        "run_seconds": t.run_seconds,
                        "process_seconds": t.process_seconds,
                        "pickup_seconds": t.pickup_seconds,
                        "report_seconds": t.report_seconds,
                        "cached": t.cached,
                    }
                    for t in ps.steps
                ],
                "cache_hits": ps.cache_hits,
            }
        return cls(
            r.run_id,
            run_pb2.State.Name(r.state)[6:],
            r.task_id,
            r.pipeline_id,
            json.loads(r.input_json or "{}"),
            json.loads(r.output_json) if r.output_json else None,
            r.error,
            r.priority,
            steps,
            _time(r, "create_time"),
            _time(r, "start_time"),
            _time(r, "end_time"),
            r.pipeline_version,
            [(e.source, e.target) for e in r.lineage],
            summary,
            r.batch_id,
            dict(r.labels),
            r.trace_id,
            r.namespace,
        )


@dataclass(frozen=True)
class ExecutorInfo:
    """One executor of the fleet, as the schedulers see it."""

    executor_id: str
    state: str  # CONNECTED | DRAINING | LOST
    queues: list[str]
    slots: int
    in_flight: int
    labels: dict[str, str]
    software_version: str
    python_version: str
    connected_at: datetime | None
    last_seen_at: datetime | None
    scheduler_id: str
    packages: list[str] = field(default_factory=list)
    slot_errors: int = 0  # steps that failed in the executor itself: its slots are unhealthy
    last_slot_error: str = ""
    namespaces: list[str] = field(default_factory=list)  # whose queues it serves; "*": all


@dataclass(frozen=True)
class RunEventInfo:
    """One event of a run; ``event_id`` resumes a watch after it."""

    event_id: str
    run_id: str
    step_id: str
    attempt: int
    state: str
    message: str
    time: datetime | None
    progress: float = 0.0
    kind: str = "STATE"  # STATE | PROGRESS | RETRYING | LOG

    @property
    def ends_run(self) -> bool:
        return not self.step_id and self.state in TERMINAL and self.kind == "STATE"


class Client:
    """A connection to the registry and the scheduler."""

    def __init__(
        self,
        registry: str = "127.0.0.1:50051",
        scheduler: str = "127.0.0.1:50052",
        token: str = "",
        timeout: float = 30.0,
        api_key: str | None = None,
        tls_ca: str | None = None,
        api_key_file: str = "",
        namespace: str | None = None,
    ) -> None:
        """``api_key`` (or ``token``, its older name) or ``api_key_file``: the key to
        present; by default the one in ``WTM_API_KEY`` or the file named by
        ``WTM_API_KEY_FILE``. ``tls_ca``: the CA
        to check the services' certificates against (default ``WTM_TLS_CA``; "" and no
        such variable: plaintext). ``namespace``: the one to act in (default
        ``WTM_NAMESPACE``); a key bound to a namespace acts in it without saying so."""
        token = resolve_key(api_key or token, api_key_file)
        self._registry_channel = tls.channel(registry, tls_ca)
        self._scheduler_channel = tls.channel(scheduler, tls_ca)
        self._registry = rpb_grpc.RegistryServiceStub(self._registry_channel)
        self._auth = apb_grpc.AuthServiceStub(self._registry_channel)
        self._scheduler = spb_grpc.SchedulerServiceStub(self._scheduler_channel)
        self.namespace = os.environ.get("WTM_NAMESPACE", "") if namespace is None else namespace
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        if self.namespace:
            self._metadata += (("wtm-namespace", self.namespace),)
        self._timeout = timeout

    def close(self) -> None:
        self._registry_channel.close()
        self._scheduler_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, **kw: Any) -> Any:
        try:
            return method(
                request, metadata=self._metadata, timeout=kw.pop("timeout", self._timeout), **kw
            )
        except grpc.RpcError as exc:
            raise ApiError(exc.code().name, exc.details() or "") from None

    # API keys and audit (admin) --------------------------------------------------------

    def create_api_key(
        self, name: str, role: str, namespace: str, ttl_seconds: float = 0
    ) -> tuple[ApiKeyInfo, str]:
        """Make a key; returns it and its secret (the whole key text), shown this once."""
        request = apb.CreateApiKeyRequest(name=name, role=role, namespace=namespace)
        if ttl_seconds:
            request.ttl.FromNanoseconds(int(ttl_seconds * 1e9))
        reply = self._call(self._auth.CreateApiKey, request)
        return ApiKeyInfo._from(reply.key), reply.secret

    def list_api_keys(self) -> list[ApiKeyInfo]:
        reply = self._call(self._auth.ListApiKeys, apb.ListApiKeysRequest())
        return [ApiKeyInfo._from(k) for k in reply.keys]

    def revoke_api_key(self, key_id: str) -> ApiKeyInfo:
        reply = self._call(self._auth.RevokeApiKey, apb.RevokeApiKeyRequest(key_id=key_id))
        return ApiKeyInfo._from(reply.key)

    def list_audit_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded mutations, newest first."""
        reply = self._call(self._auth.ListAuditEvents, apb.ListAuditEventsRequest(page_size=limit))
        return [
            {
                "time": _time(e, "time"),
                "service": e.service,
                "method": e.method,
                "key_id": e.key_id,
                "principal": e.principal,
                "role": e.role,
                "namespace": e.namespace,
                "outcome": e.outcome,
            }
            for e in reply.events
        ]

    # Tasks -------------------------------------------------------------------------------

    def register_task(self, path: str | Path) -> TaskInfo:
        """Pack a task directory deterministically and register it."""
        return self.upload_package(pack_directory(path))

    def upload_package(self, data: bytes) -> TaskInfo:
        """Register an already packed archive (tar.gz bytes)."""

        def messages() -> Iterator[rpb.UploadTaskPackageRequest]:
            header = rpb.UploadTaskPackageHeader(sha256=sha256_hex(data), size_bytes=len(data))
            yield rpb.UploadTaskPackageRequest(header=header)
            for i in range(0, len(data), CHUNK):
                yield rpb.UploadTaskPackageRequest(chunk=data[i : i + CHUNK])

        reply = self._call(self._registry.UploadTaskPackage, messages())
        return TaskInfo._from(reply.task, reply.created)

    def get_task(self, ref: str) -> TaskInfo:
        """A task version by ``"id"`` (latest) or ``"id@version"``."""
        task_id, _, version = ref.partition("@")
        return TaskInfo._from(
            self._call(
                self._registry.GetTask, rpb.GetTaskRequest(task_id=task_id, version=version)
            ).task
        )

    def list_tasks(self, page_size: int = 100, **filters: str) -> Iterator[TaskInfo]:
        """Every task version matching the filters (task_id, category, tag, queue)."""
        token = ""
        while True:
            reply = self._call(
                self._registry.ListTasks,
                rpb.ListTasksRequest(page_size=page_size, page_token=token, **filters),
            )
            yield from (TaskInfo._from(t) for t in reply.tasks)
            token = reply.next_page_token
            if not token:
                return

    def download_package(self, digest: str) -> bytes:
        """A package archive by digest, checked against it."""
        request = rpb.DownloadTaskPackageRequest(digest=digest)
        try:
            data = b"".join(
                r.chunk
                for r in self._registry.DownloadTaskPackage(request, metadata=self._metadata)
            )
        except grpc.RpcError as exc:
            raise ApiError(exc.code().name, exc.details() or "") from None
        if sha256_hex(data) != digest:
            raise ApiError("DATA_LOSS", f"package does not match digest {digest}")
        return data

    def deprecate_task(self, ref: str, reason: str = "") -> TaskInfo:
        """Deprecate ``"id@version"``: kept for pinned pipelines, no longer "latest"."""
        task_id, _, version = ref.partition("@")
        request = rpb.DeprecateTaskRequest(task_id=task_id, version=version, reason=reason)
        return TaskInfo._from(self._call(self._registry.DeprecateTask, request).task)

    def share_task(self, task_id: str, shared: bool = True) -> TaskInfo:
        """Let every namespace's pipelines use this task of yours, as "namespace/task_id"
        (admins); ``shared=False`` stops that."""
        request = rpb.ShareTaskRequest(task_id=task_id, shared=shared)
        return TaskInfo._from(self._call(self._registry.ShareTask, request).task)

    def upload_artifact(self, path: str | Path) -> str:
        """Store a local file in the object store; returns the ``artifact://`` URI to put in a
        run's input."""
        path = Path(path)
        requests = upload_requests(path.name, path.read_bytes())
        return str(self._call(self._registry.UploadArtifact, requests).uri)

    def download_artifact(self, uri: str) -> bytes:
        """The bytes of a stored artifact (an uploaded input, or an output that went by
        reference)."""
        try:
            return b"".join(
                reply.chunk
                for reply in self._registry.DownloadArtifact(
                    rpb.DownloadArtifactRequest(uri=uri),
                    metadata=self._metadata,
                    timeout=self._timeout,
                )
            )
        except grpc.RpcError as exc:
            raise ApiError(exc.code().name, exc.details() or "") from None

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
        dry run that stores nothing."""
        text = json.dumps(config) if isinstance(config, dict) else Path(config).read_text()
        request = rpb.RegisterPipelinesRequest(
            config_json=text, pipeline_id=pipeline_id, validate_only=validate_only
        )
        reply = self._call(self._registry.RegisterPipelines, request)
        before = list(reply.registered_before) or [not c for c in reply.created]
        return [
            dataclasses.replace(PipelineInfo._from(p, created, was), warnings=list(reply.warnings))
            for p, created, was in zip(reply.pipelines, reply.created, before, strict=True)
        ]

    def get_pipeline(self, ref: str) -> PipelineInfo:
        """A pipeline version by ``"id"`` (latest) or ``"id@version"``."""
        pipeline_id, _, version = ref.partition("@")
        request = rpb.GetPipelineRequest(pipeline_id=pipeline_id, version=version)
        return PipelineInfo._from(self._call(self._registry.GetPipeline, request).pipeline)

    def list_pipelines(self, page_size: int = 100, pipeline_id: str = "") -> Iterator[PipelineInfo]:
        token = ""
        while True:
            request = rpb.ListPipelinesRequest(
                page_size=page_size, page_token=token, pipeline_id=pipeline_id
            )
            reply = self._call(self._registry.ListPipelines, request)
            yield from (PipelineInfo._from(p) for p in reply.pipelines)
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
    ) -> RunInfo:
        """Submit a run of a task or a pipeline on one input document. ``cache``: None
        follows the pipeline's enable_caching; False turns result caching off for this run;
        True turns it on for every step (a task run too)."""
        request = _submit_request(task, pipeline, input, priority, request_id, labels, cache)
        return RunInfo._from(self._call(self._scheduler.SubmitRun, request).run)

    def submit_many(
        self,
        inputs: list[dict[str, Any]],
        task: str = "",
        pipeline: str = "",
        priority: int = 0,
        request_id: str = "",
        labels: dict[str, str] | None = None,
        cache: bool | None = None,
    ) -> tuple[str, list[str]]:
        """Submit one run per input document in one call; returns (batch id, run ids)."""
        request = spb.SubmitRunsRequest(
            task=task,
            pipeline=pipeline,
            inputs_json=[json.dumps(i) for i in inputs],
            priority=priority,
            request_id=request_id,
            labels=labels or {},
            cache=cache,
        )
        reply = self._call(self._scheduler.SubmitRuns, request)
        return reply.batch_id, list(reply.run_ids)

    def cancel(self, run_id: str, reason: str = "") -> RunInfo:
        """Cancel a run: queued steps are dropped, running ones stopped."""
        request = spb.CancelRunRequest(run_id=run_id, reason=reason)
        return RunInfo._from(self._call(self._scheduler.CancelRun, request).run)

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
    ) -> Iterator[RunInfo]:
        """Runs newest first (without step outputs), fetching pages as needed."""
        request = spb.ListRunsRequest(
            state=f"STATE_{state}" if state else "STATE_UNSPECIFIED",
            pipeline_id=pipeline_id,
            task_id=task_id,
            batch_id=batch_id,
            page_size=page_size,
        )
        if created_after is not None:
            request.created_after.FromDatetime(created_after)
        if created_before is not None:
            request.created_before.FromDatetime(created_before)
        seen = 0
        while True:
            reply = self._call(self._scheduler.ListRuns, request)
            for r in reply.runs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield RunInfo._from(r)
            if not reply.next_page_token:
                return
            request.page_token = reply.next_page_token

    def list_executors(self) -> list[ExecutorInfo]:
        reply = self._call(self._scheduler.ListExecutors, spb.ListExecutorsRequest())
        return [
            ExecutorInfo(
                e.executor_id,
                spb.ExecutorState.Name(e.state).removeprefix("EXECUTOR_STATE_"),
                list(e.queues),
                e.slots,
                e.in_flight,
                dict(e.labels),
                e.software_version,
                e.python_version,
                _time(e, "connect_time"),
                _time(e, "last_seen_time"),
                e.scheduler_id,
                list(e.packages),
                e.slot_errors,
                e.last_slot_error,
                list(e.namespaces),
            )
            for e in reply.executors
        ]

    def get_run(self, run_id: str, resolve_refs: bool = True) -> RunInfo:
        """A run and its steps. Outputs too large to travel inline are fetched from the
        object store, unless ``resolve_refs`` is false (then they stay reference documents)."""
        run = RunInfo._from(
            self._call(self._scheduler.GetRun, spb.GetRunRequest(run_id=run_id)).run
        )
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
    ) -> RunInfo:
        """Submit a run and wait for it to finish, in one call: the scheduler answers when
        the run has ended. Returns the finished run (large outputs fetched); raises
        ``TimeoutError`` if it has not finished within ``timeout`` seconds."""
        request = _submit_request(task, pipeline, input, priority, request_id, labels, cache)
        request.wait.FromNanoseconds(int(min(timeout, 3600.0) * 1e9))
        reply = self._call(self._scheduler.SubmitRun, request, timeout=timeout + 30)
        run = RunInfo._from(reply.run)
        if not run.finished:
            raise TimeoutError(f"run {run.run_id} did not finish in {timeout:g}s")
        return self._with_documents(run)

    def watch(
        self, run_id: str, after_event_id: str = "", timeout: float | None = None
    ) -> Iterator[RunEventInfo]:
        """The run's events from its start (or after an event id) until it finishes."""
        stream = self._scheduler.WatchRun(
            spb.WatchRunRequest(run_id=run_id, after_event_id=after_event_id),
            metadata=self._metadata,
            timeout=timeout,
        )
        try:
            for reply in stream:
                e = reply.event
                yield RunEventInfo(
                    e.event_id,
                    e.run_id,
                    e.step_id,
                    e.attempt,
                    run_pb2.State.Name(e.state)[6:],
                    e.message,
                    _time(e, "time"),
                    e.progress,
                    spb.RunEventKind.Name(e.kind).removeprefix("RUN_EVENT_KIND_") or "STATE",
                )
        except grpc.RpcError as exc:
            raise ApiError(exc.code().name, exc.details() or "") from None
        finally:
            _end_stream(stream)

    def wait(self, run_id: str, timeout: float = 300.0) -> RunInfo:
        """Block until the run finishes (or ``timeout`` passes) and return it. Rides out a
        scheduler restart: UNAVAILABLE is retried until the deadline."""
        deadline = time.monotonic() + timeout
        pause = 0.05
        while time.monotonic() < deadline:
            try:
                for event in self.watch(run_id, timeout=deadline - time.monotonic()):
                    if event.ends_run:
                        break
                run = self.get_run(run_id)
                if run.finished:
                    return run
                pause = 0.05
            except ApiError as exc:
                if exc.code not in {"DEADLINE_EXCEEDED", "UNAVAILABLE"}:
                    raise
                pause = min(pause * 2, 1.0)
            time.sleep(pause)
        raise TimeoutError(f"run {run_id} did not finish in {timeout:g}s")


def _submit_request(
    task: str,
    pipeline: str,
    document: dict[str, Any] | None,
    priority: int,
    request_id: str,
    labels: dict[str, str] | None,
    cache: bool | None = None,
) -> spb.SubmitRunRequest:
    return spb.SubmitRunRequest(
        task=task,
        pipeline=pipeline,
        input_json=json.dumps(document or {}),
        priority=priority,
        request_id=request_id,
        labels=labels or {},
        cache=cache,
    )
