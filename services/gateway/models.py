"""The gateway's JSON shapes (pydantic, so the OpenAPI description says them), made from the
SDK's types: the gateway speaks to the services through ``clients.aio.AsyncClient`` and
translates, nothing more."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from common import jsondoc

M = TypeVar("M", bound=BaseModel)

# The SDK's times are UTC without a zone; JSON says so (a browser reads a bare time as local).
Time = Annotated[datetime, AfterValidator(lambda t: t if t.tzinfo else t.replace(tzinfo=UTC))]


# A run's input or output as recorded: one that holds a lone surrogate (accepted before
# 2026-12-07) is answered with U+FFFD in its place, where it made the whole answer a 500.
Document = Annotated[Any, BeforeValidator(jsondoc.text_safe)]
DocumentObject = Annotated[dict[str, Any], BeforeValidator(jsondoc.text_safe)]


def of(model: type[M], value: Any) -> M:
    """The model of an SDK dataclass."""
    return model.model_validate(dataclasses.asdict(value))


class ErrorDetail(BaseModel):
    code: str = Field(description="the gRPC status name: NOT_FOUND, INVALID_ARGUMENT, ...")
    message: str
    field: str | None = Field(None, description="the request field to fix, when known")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Step(BaseModel):
    step_id: str
    task_id: str
    task_version: str
    state: str
    attempt: int
    output: Document = None
    error: str = ""
    executor_id: str = ""
    started_at: Time | None = None
    ended_at: Time | None = None
    logs: list[str] = []
    input_id: str = ""
    output_id: str = ""
    cached_from: str = ""
    awaiting_signal: str = ""  # while it waits for a signal: the input field it is given as
    signal_deadline: Time | None = None  # when that wait ends (TIMED_OUT)
    signaled_by: str = ""  # who sent it its signal
    continues_at_deadline: bool = False  # while it waits: then it runs without one
    ran_without_signal: bool = False  # its wait ran out and it went on without one


class Run(BaseModel):
    run_id: str
    state: str
    task_id: str = ""
    pipeline_id: str = ""
    pipeline_version: str = ""
    input: DocumentObject = {}
    output: Document = None
    error: str = ""
    priority: int = 0
    steps: list[Step] = []
    created_at: Time | None = None
    started_at: Time | None = None
    ended_at: Time | None = None
    lineage: list[tuple[str, str]] = Field([], description="(from id, to id) data lineage")
    processing_summary: dict[str, Any] | None = None
    batch_id: str = ""
    labels: dict[str, str] = {}
    trace_id: str = Field("", description="the run's trace, to open in Jaeger")
    namespace: str = ""
    deadline_at: Time | None = Field(None, description="when it times out (a run_timeout)")
    scheduled_at: Time | None = Field(None, description="when it may start (a start_delay)")
    task_version: str = Field("", description="a task run's version (empty for a pipeline run)")


class RunPage(BaseModel):
    runs: list[Run]
    next_page_token: str = Field("", description="pass as page_token for the next page")


class SubmitRun(BaseModel):
    """Exactly one of task and pipeline."""

    task: str = Field("", description='"task_id" or "task_id@version"')
    pipeline: str = Field("", description='"pipeline_id" or "pipeline_id@version"')
    input: dict[str, Any] = {}
    priority: int = Field(0, description="0-10, higher first")
    request_id: str = Field("", description="idempotency key: a repeat returns the first run")
    labels: dict[str, str] = {}
    cache: bool | None = None
    run_timeout_seconds: float | None = Field(
        None, description="the run's time limit (1 s to 30 days): past it, it ends TIMED_OUT"
    )
    start_delay_seconds: float | None = Field(
        None, description="start the run this long after it is accepted (at most 30 days)"
    )


class CreateSchedule(BaseModel):
    """Exactly one of task and pipeline, and of cron, every_seconds and at."""

    schedule_id: str = Field(description="1-63 letters, digits, '_', '.', '-'")
    task: str = ""
    pipeline: str = ""
    input: dict[str, Any] = {}
    cron: str = Field("", description="five fields: minute hour day-of-month month day-of-week")
    timezone: str = Field("", description="the IANA zone cron is read in (default UTC)")
    every_seconds: float | None = Field(None, description="an interval, 1 s to 366 days")
    at: datetime | None = Field(None, description="once, at this time")
    priority: int = 0
    labels: dict[str, str] = {}
    overlap: str = Field("skip", description="skip | allow: a due time while the last run goes on")
    paused: bool = False
    run_timeout_seconds: float | None = Field(None, description="each run's time limit")
    start_time: datetime | None = Field(None, description="with cron or every: none before")
    end_time: datetime | None = Field(None, description="with cron or every: none after")
    due_time_field: str = Field("", description="an input key set to each run's due time")
    jitter_seconds: float | None = Field(
        None, description="with cron or every: each run starts up to this long after its time"
    )


class CancelRun(BaseModel):
    reason: str = ""


class Signal(BaseModel):
    payload: DocumentObject = Field({}, description="what the step's task gets as its field")


class CancelRuns(BaseModel):
    """Every unfinished run matching all the filters given (at least one)."""

    reason: str = ""
    batch_id: str = ""
    labels: dict[str, str] = {}
    task_id: str = ""
    pipeline_id: str = ""


class CancelledRuns(BaseModel):
    cancelled: list[str] = Field(description="the runs this call cancelled")
    ended: list[str] = Field(description="those that had ended first")
    not_theirs: list[str] = Field(description="another key's, which this role may not cancel")


class ResumeRuns(BaseModel):
    """Every run matching all the filters given (at least one) that FAILED, was CANCELLED
    or TIMED_OUT."""

    batch_id: str = ""
    labels: dict[str, str] = {}
    task_id: str = ""
    pipeline_id: str = ""
    latest: bool = Field(False, description="the latest version of each task or pipeline")


class ResumedRun(BaseModel):
    run_id: str = Field(description="the run resumed")
    resumed_as: str = Field(description="the new run that took over its completed steps")


class RefusedRun(BaseModel):
    run_id: str
    error: str = Field(description="why it could not be resumed, or signalled (CODE: message)")


class ResumedRuns(BaseModel):
    resumed: list[ResumedRun]
    refused: list[RefusedRun]


class SignalRuns(BaseModel):
    """A signal to a step of every unfinished run matching all the filters given (at least
    one)."""

    step_id: str
    payload: DocumentObject = Field({}, description="what the step's task gets as its field")
    batch_id: str = ""
    labels: dict[str, str] = {}
    task_id: str = ""
    pipeline_id: str = ""


class SignaledRuns(BaseModel):
    signaled: list[str] = Field(description="the runs that took the signal")
    refused: list[RefusedRun] = Field(description="those that did not, with why")


class Rerun(BaseModel):
    latest: bool = Field(False, description="the latest version, not the one the run ran")
    request_id: str = Field("", description="idempotency key: a repeat returns the first rerun")
    from_failure: bool = Field(
        False, description="take over the steps the run completed (unchanged); run the rest"
    )


class Event(BaseModel):
    event_id: str = Field(description="resume a watch after it with ?after=")
    run_id: str
    step_id: str = ""
    attempt: int = 0
    state: str
    message: str = ""
    time: Time | None = None
    progress: float = 0.0
    kind: str = Field("STATE", description="STATE | PROGRESS | RETRYING | LOG")


class Task(BaseModel):
    task_id: str
    version: str
    name: str = ""
    description: str = ""
    category: str = ""
    tags: list[str] = []
    queue: str = ""
    digest: str = ""
    size_bytes: int = 0
    manifest: dict[str, Any] = {}
    deprecated: bool = False
    deprecation_reason: str = ""
    namespace: str = ""
    shared: bool = False


class PipelineStep(BaseModel):
    step_id: str
    task_id: str
    task_version: str
    digest: str = ""
    depends_on: list[str] = []
    parallel_group: str = ""
    timeout_seconds: int = 0
    retry_count: int = 0
    input_mapping: dict[str, Any] = {}
    queue: str = ""
    cache: bool | None = None
    retry_backoff: tuple[float, float] | None = None  # the step's own, seconds: first, longest
    skip_if: list[dict[str, Any]] = []  # on the run's input or an upstream output: any holds
    for_each: dict[str, str] = {}  # {input field: upstream list}: a run of the task per item
    await_signal: dict[str, Any] = {}  # {field, timeout_seconds[, on_timeout]}: waits for a signal


class Pipeline(BaseModel):
    pipeline_id: str
    version: str
    name: str = ""
    description: str = ""
    steps: list[PipelineStep] = []
    input_validation: dict[str, Any] = {}
    output_format: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    enabled: bool = True
    namespace: str = ""
    max_parallel_tasks: int = 0
    enable_caching: bool = False
    run_timeout_seconds: int = Field(0, description="each run's time limit, unless set (0: none)")


class Executor(BaseModel):
    executor_id: str
    state: str = Field(description="CONNECTED | DRAINING | LOST")
    queues: list[str] = []
    slots: int = 0
    in_flight: int = 0
    busy_slots: int = Field(0, description="slots taken: a dynamic batch's steps share one")
    labels: dict[str, str] = {}
    software_version: str = ""
    python_version: str = ""
    connected_at: Time | None = None
    last_seen_at: Time | None = None
    scheduler_id: str = ""
    packages: list[str] = []
    slot_errors: int = 0
    last_slot_error: str = ""
    namespaces: list[str] = []
    cpu_percent: float = Field(0.0, description="of one core, with its worker processes")
    memory_bytes: int = Field(0, description="resident, with its worker processes")
    disk_bytes: int = Field(
        0,
        description="kept in its cache: packages, input artifacts, installed requirements, its "
        "workers' files",
    )
    running_steps: list[str] = Field([], description='leased to it now, "run_id:step_id"')
    sandbox: str = Field(
        "",
        description='how task code is confined there: "isolated" (its own uid, network, mount '
        'and IPC namespaces, and limits), "limits" (environment and limits only), "" (older)',
    )
    pause: ExecutorPause | None = Field(None, description="set while it is given nothing new")
    resting_until: Time | None = Field(
        None,
        description="set while it rests: steps kept failing in the executor itself "
        "(last_slot_error), so it is given nothing new until then",
    )


class ExecutorPause(BaseModel):
    executor_id: str
    reason: str
    paused_by: str = Field(description="the id of the key that paused it")
    paused_at: datetime | None


class PauseExecutor(BaseModel):
    executor_id: str
    reason: str = Field("", description="why, shown with the executor (at most 500 characters)")


class ResumeExecutor(BaseModel):
    executor_id: str


class ExecutorResumed(BaseModel):
    executor_id: str
    resumed: bool = Field(description="false: it was not paused")
    rest_ended: bool = Field(
        False,
        description="true: it was resting (steps kept failing in it) and takes work again "
        "within about a second",
    )


class Queue(BaseModel):
    queue: str
    namespace: str
    depth: int
    oldest_age_seconds: float
    executors: int
    free_slots: int
    stranded: bool = Field(description="work waits and no connected executor takes from it")
    pause: QueuePause | None = Field(None, description="set while it is paused: its steps wait")


class QueuePause(BaseModel):
    queue: str
    namespace: str
    reason: str
    paused_by: str = Field(description="the id of the key that paused it")
    paused_at: datetime | None


class PauseQueue(BaseModel):
    queue: str = Field(description='as the queues list names it ("vision", "team-a/vision")')
    reason: str = Field("", description="why, shown with the queue (at most 500 characters)")


class TaskLimits(BaseModel):
    task_id: str
    namespace: str
    rate_limit: str | None = Field(
        description='"N/s", "N/m" or "N/h"; "" for none; null: the task\'s own (task.json\'s)'
    )
    concurrency_limit: int | None = Field(
        description="at most this many leased at once; 0 for none; null: the task's own"
    )
    set_by: str = Field(description="the id of the key that set them last")
    set_at: datetime | None
    rate_burst: int | None = Field(
        None, description="starts at once under the rate limit; null: the task's own"
    )


class SetTaskLimits(BaseModel):
    task_id: str = Field(description='a task of the namespace, or "owner/task_id" shared with it')
    rate_limit: str | None = Field(None, description='"N/s", "N/m" or "N/h"; "" for none')
    concurrency_limit: int | None = Field(
        None, ge=-(2**31), le=2**31 - 1, description="1 to 1000; 0 for none"
    )
    rate_burst: int | None = Field(
        None,
        ge=-(2**31),
        le=2**31 - 1,
        description="1 to 10000: starts at once under the rate limit, the next at its rate",
    )
    reset_fields: list[str] = Field(
        default_factory=list,
        description='limits to return to the task\'s own: "rate_limit", "rate_burst", '
        '"concurrency_limit"',
    )


class ResumeQueue(BaseModel):
    queue: str


class QueueResumed(BaseModel):
    queue: str
    resumed: bool = Field(description="false: it was not paused")


class Queues(BaseModel):
    queues: list[Queue]
    delayed: int = Field(
        description="steps held back from their queues: waiting for a time (a retry's "
        "backoff, their run's start time, their task's rate limit) or for a place under their "
        "task's concurrency limit"
    )


class Namespace(BaseModel):
    namespace: str
    unfinished_runs: int = Field(description="runs queued or running now")
    run_limit: int = Field(description="how many of those it may have (0: no limit)")
    weight: float = Field(description="its share of new runs while others' also wait (1: even)")
    waiting_steps: int
    history_retention_days: float = Field(
        default=0.0, description="how long its finished runs are kept, in days (0: for good)"
    )
    calls_per_second: float = Field(
        default=0.0, description="calls a second it may make to each replica (0: no limit)"
    )
    at_limit: bool = Field(description="a submit now would be refused until some runs end")


class Schedule(BaseModel):
    schedule_id: str
    namespace: str
    description: str = Field(
        description='when it runs: "every 5 minutes", "At 02:00 every day (UTC)"'
    )
    cron: str
    timezone: str
    every_seconds: float = Field(description="the interval, when not a cron expression (0)")
    task: str
    pipeline: str
    input: DocumentObject
    priority: int
    overlap: str = Field(description="skip | allow: a due time while the last run goes on")
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_run_id: str
    runs_started: int
    times_skipped: int
    last_error: str = Field(description="why the last due time started no run ('' once one did)")
    created_at: datetime | None
    created_by: str = Field(description="the key whose runs they are")
    labels: dict[str, str]
    at: datetime | None = Field(None, description="a one-off's time (instead of cron or every)")
    run_timeout_seconds: float = Field(0.0, description="each run's time limit (0: none)")
    start_time: datetime | None = Field(None, description="no due time before it")
    end_time: datetime | None = Field(None, description="no due time after it; then done")
    due_time_field: str = Field("", description="the input key set to each run's due time")
    jitter_seconds: float = Field(0.0, description="each run starts up to this long late (0: none)")
    backfill_waiting: int = Field(0, description="times of a backfill waiting for their runs")


class Backfill(BaseModel):
    start_time: datetime = Field(description="the first moment of the range (included)")
    end_time: datetime = Field(description="the last moment, past (included)")
    max_running: int = Field(
        0, description="at most this many of its runs at once; the rest wait (0: all at once)"
    )


class BackfilledRun(BaseModel):
    due_time: datetime = Field(description="the time the run stands for")
    run_id: str
    started: bool = Field(description="false: the time already had this run")
    waiting: bool = Field(False, description="its run waits for earlier ones (max_running)")


class BackfillCancelled(BaseModel):
    dropped: int = Field(description="the backfill times that were waiting, dropped (no run)")


class Triggered(BaseModel):
    run_id: str = Field(description="the run the schedule started now")
    schedule: Schedule


class HealthCheck(BaseModel):
    component: str
    status: str = Field(description="ok | warn | fail")
    detail: str


class Health(BaseModel):
    status: str = Field(description="ok | warn | fail: the worst of the checks")
    healthy: bool = Field(description="nothing is down (warnings allowed)")
    checks: list[HealthCheck]


class Login(BaseModel):
    api_key: str = Field(description="wtm_<id>.<secret>")
    namespace: str = Field("", description="act in this namespace (keys of every namespace)")


class Session(BaseModel):
    authenticated: bool
    namespace: str = ""


class ArtifactRef(BaseModel):
    uri: str = Field(description="artifact://... to put in a run's input")


class DashboardConfig(BaseModel):
    jaeger_url: str = ""
    auth: bool = True
    version: str = ""
