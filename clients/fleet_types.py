"""What the SDK returns to operators: API keys, executors, queues, task limits and
namespaces (``clients.types`` re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from clients.wire_time import time_of
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import scheduler_service_pb2 as spb


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
            time_of(k, "create_time"),
            time_of(k, "expire_time"),
            time_of(k, "revoke_time"),
            k.created_by,
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
            time_of(e, "connect_time"),
            time_of(e, "last_seen_time"),
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
            time_of(e, "resting_until"),
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
        return cls(p.executor_id, p.reason, p.paused_by, time_of(p, "pause_time"))


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
        return cls(p.queue, p.namespace, p.reason, p.paused_by, time_of(p, "pause_time"))


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
            time_of(p, "set_at"),
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
