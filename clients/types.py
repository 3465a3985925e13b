"""What the SDK returns: plain, typed dataclasses made from the wire's messages
(``from_proto``); the generated classes stay behind them. States are ``common.states.State``
(a ``StrEnum``: ``run.state == "COMPLETED"`` holds, and so does ``run.state is
State.COMPLETED``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.states import State
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import run_pb2
from wtm.v1 import scheduler_service_pb2 as spb


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
    def from_proto(cls, k: apb.ApiKey) -> ApiKeyInfo:
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
    def from_proto(cls, t: rpb.Task, created: bool = False) -> TaskInfo:
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
    run_timeout_seconds: int = 0  # global_settings.run_timeout: each run's limit (0: none)

    @classmethod
    def from_proto(
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
            run_timeout_seconds=p.run_timeout_seconds,
        )


@dataclass(frozen=True)
class StepInfo:
    """The latest attempt of one step of a run."""

    step_id: str
    task_id: str
    task_version: str
    state: State
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
    state: State
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
    deadline_at: datetime | None = None  # submitted with a run_timeout: when it times out
    scheduled_at: datetime | None = None  # submitted with a start_delay: when it may start

    @property
    def finished(self) -> bool:
        return self.state.is_terminal

    @classmethod
    def from_proto(cls, r: run_pb2.Run) -> RunInfo:
        steps = [
            StepInfo(
                s.step_id,
                s.task_id,
                s.task_version,
                State.from_proto(s.state),
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
                "taken_over": ps.taken_over,
            }
        return cls(
            r.run_id,
            State.from_proto(r.state),
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
            _time(r, "deadline_time"),
            _time(r, "scheduled_time"),
        )


@dataclass
class CancelledRuns:
    """What ``Client.cancel_runs`` did: the runs it cancelled, those that had ended first,
    and the ids of those another key submitted (this key's role may cancel only its own)."""

    cancelled: list[RunInfo] = field(default_factory=list)
    ended: list[RunInfo] = field(default_factory=list)
    not_theirs: list[str] = field(default_factory=list)


@dataclass
class ResumedRuns:
    """What ``Client.resume_runs`` did: each run it resumed, with the run resuming it (the
    same one again when it had been resumed by this call before), and the runs it could not
    resume, with why (``code: message``: nothing would be left to run, a pipeline version no
    longer registered, another key's run the role may not read...)."""

    resumed: list[tuple[str, RunInfo]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


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
    cpu_percent: float = 0.0  # of one core, with its worker processes (last heartbeat)
    memory_bytes: int = 0  # resident, with its worker processes (last heartbeat)
    running_steps: list[str] = field(default_factory=list)  # "run_id:step_id" leased to it
    busy_slots: int = 0  # slots taken (a dynamic batch's steps share one)
    # How task code is confined there: "isolated" (own uid and namespaces, limits) or
    # "limits" (environment and limits only); "" from an executor too old to say.
    sandbox: str = ""
    # What it keeps on disk in its cache: packages, input artifacts, installed requirements,
    # its workers' files (last heartbeat).
    disk_bytes: int = 0
    pause: ExecutorPauseInfo | None = None  # set while it is paused: it is given nothing new
    # Set while it rests: steps kept failing in it (``last_slot_error``),
    # so it is given nothing new until then.
    resting_until: datetime | None = None

    def resting(self, now: datetime | None = None) -> bool:
        """Whether it rests now (a connected executor whose rest is not over). Times here
        are naive UTC, as protobuf gives them."""
        now = now or datetime.now(UTC).replace(tzinfo=None)
        return self.state != "LOST" and self.resting_until is not None and self.resting_until > now

    @classmethod
    def from_proto(cls, e: spb.Executor) -> ExecutorInfo:
        return cls(
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
            e.cpu_percent,
            e.memory_bytes,
            list(e.running_steps),
            e.busy_slots,
            e.sandbox,
            e.disk_bytes,
            ExecutorPauseInfo.from_proto(e.pause) if e.HasField("pause") else None,
            _time(e, "resting_until"),
        )


@dataclass(frozen=True)
class ExecutorPauseInfo:
    """Who paused an executor (``Client.pause_executor``), when and why."""

    executor_id: str
    reason: str
    paused_by: str  # the key's id
    paused_at: datetime | None

    @classmethod
    def from_proto(cls, p: spb.ExecutorPause) -> ExecutorPauseInfo:
        return cls(p.executor_id, p.reason, p.paused_by, _time(p, "pause_time"))


@dataclass(frozen=True)
class ExecutorResumed:
    """What ``Client.resume_executor`` changed: a pause lifted, a rest ended. Truthy when
    either did."""

    executor_id: str
    resumed: bool  # it was paused, and is no longer
    rest_ended: bool  # it was resting and is told to take work again, within about a second

    def __bool__(self) -> bool:
        return self.resumed or self.rest_ended


@dataclass(frozen=True)
class QueueInfo:
    """One queue: its waiting work and the executors that take from it."""

    queue: str
    namespace: str
    depth: int  # steps waiting, ready to run
    oldest_age_seconds: float  # how long the oldest waiting step has waited (0: none waits)
    executors: int  # connected executors (not draining or resting) that take from it
    free_slots: int
    pause: QueuePauseInfo | None = None  # set while it is paused: its steps wait

    @property
    def stranded(self) -> bool:
        """Work waits and no executor takes from this queue: it will wait forever."""
        return self.depth > 0 and self.executors == 0

    @classmethod
    def from_proto(cls, q: spb.QueueStatus) -> QueueInfo:
        return cls(
            q.queue,
            q.namespace,
            q.depth,
            q.oldest_age.ToNanoseconds() / 1e9,
            q.executors,
            q.free_slots,
            QueuePauseInfo.from_proto(q.pause) if q.HasField("pause") else None,
        )


@dataclass(frozen=True)
class QueuePauseInfo:
    """Who paused a queue (``Client.pause_queue``), when and why."""

    queue: str
    namespace: str
    reason: str
    paused_by: str  # the key's id
    paused_at: datetime | None

    @classmethod
    def from_proto(cls, p: spb.QueuePause) -> QueuePauseInfo:
        return cls(p.queue, p.namespace, p.reason, p.paused_by, _time(p, "pause_time"))


@dataclass(frozen=True)
class TaskLimitsInfo:
    """What an operator set for a task in a namespace (``Client.set_task_limits``), over its
    task.json's: None is the task's own; "" and 0 are no limit."""

    task_id: str
    namespace: str
    rate_limit: str | None
    concurrency_limit: int | None
    set_by: str  # the key's id
    set_at: datetime | None
    rate_burst: int | None = None  # starts at once under the rate limit

    @classmethod
    def from_proto(cls, p: spb.TaskLimits) -> TaskLimitsInfo:
        return cls(
            p.task_id,
            p.namespace,
            p.rate_limit if p.HasField("rate_limit") else None,
            p.concurrency_limit if p.HasField("concurrency_limit") else None,
            p.set_by,
            _time(p, "set_at"),
            p.rate_burst if p.HasField("rate_burst") else None,
        )


@dataclass(frozen=True)
class NamespaceInfo:
    """One namespace's use of the shared installation."""

    namespace: str
    unfinished_runs: int  # queued or running now
    run_limit: int  # how many of those it may have (0: no limit)
    weight: float  # its share of new runs while other namespaces' also wait (1: even)
    waiting_steps: int  # on its queues, ready to run
    history_retention_days: float = 0.0  # how long its finished runs are kept (0: for good)
    calls_per_second: float = 0.0  # calls a second to each replica (0: no limit)

    @property
    def at_limit(self) -> bool:
        """A submit now would be refused (RESOURCE_EXHAUSTED) until some of its runs end."""
        return bool(self.run_limit) and self.unfinished_runs >= self.run_limit

    @classmethod
    def from_proto(cls, n: spb.NamespaceStatus) -> NamespaceInfo:
        return cls(
            n.namespace,
            n.unfinished_runs,
            n.run_limit,
            n.weight,
            n.waiting_steps,
            n.history_retention_days,
            n.calls_per_second,
        )


@dataclass(frozen=True)
class ArtifactInfo:
    """A stored artifact: an uploaded file, or an output that went by reference."""

    digest: str
    namespace: str
    size_bytes: int
    stored_at: datetime | None  # when last stored (an upload of the same bytes stores it again)

    @classmethod
    def from_proto(cls, a: rpb.Artifact) -> ArtifactInfo:
        return cls(a.digest, a.namespace, a.size_bytes, _time(a, "store_time"))


@dataclass(frozen=True)
class DependencyInfo:
    """A backing service as a service found it just now."""

    service: str  # who checked: "registry" or "scheduler"
    name: str  # "redis", "mongodb", "s3"
    ok: bool
    detail: str
    latency_seconds: float
    # A scheduler's Redis: that replica's clock minus Redis's (None: not reported).
    clock_offset_seconds: float | None = None

    @classmethod
    def from_proto(cls, service: str, d: run_pb2.DependencyStatus) -> DependencyInfo:
        offset = d.clock_offset.ToNanoseconds() / 1e9 if d.HasField("clock_offset") else None
        return cls(service, d.name, d.ok, d.detail, d.latency.ToNanoseconds() / 1e9, offset)


@dataclass(frozen=True)
class RunEventInfo:
    """One event of a run; ``event_id`` resumes a watch after it."""

    event_id: str
    run_id: str
    step_id: str
    attempt: int
    state: State
    message: str
    time: datetime | None
    progress: float = 0.0
    kind: str = "STATE"  # STATE | PROGRESS | RETRYING | LOG

    @property
    def ends_run(self) -> bool:
        return not self.step_id and self.state.is_terminal and self.kind == "STATE"

    @classmethod
    def from_proto(cls, e: spb.RunEvent) -> RunEventInfo:
        return cls(
            e.event_id,
            e.run_id,
            e.step_id,
            e.attempt,
            State.from_proto(e.state),
            e.message,
            _time(e, "time"),
            e.progress,
            spb.RunEventKind.Name(e.kind).removeprefix("RUN_EVENT_KIND_") or "STATE",
        )
