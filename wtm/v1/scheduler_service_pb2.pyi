import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from wtm.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_EVENT_KIND_UNSPECIFIED: _ClassVar[RunEventKind]
    RUN_EVENT_KIND_STATE: _ClassVar[RunEventKind]
    RUN_EVENT_KIND_PROGRESS: _ClassVar[RunEventKind]
    RUN_EVENT_KIND_RETRYING: _ClassVar[RunEventKind]
    RUN_EVENT_KIND_LOG: _ClassVar[RunEventKind]

class ExecutorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTOR_STATE_UNSPECIFIED: _ClassVar[ExecutorState]
    EXECUTOR_STATE_CONNECTED: _ClassVar[ExecutorState]
    EXECUTOR_STATE_DRAINING: _ClassVar[ExecutorState]
    EXECUTOR_STATE_LOST: _ClassVar[ExecutorState]
RUN_EVENT_KIND_UNSPECIFIED: RunEventKind
RUN_EVENT_KIND_STATE: RunEventKind
RUN_EVENT_KIND_PROGRESS: RunEventKind
RUN_EVENT_KIND_RETRYING: RunEventKind
RUN_EVENT_KIND_LOG: RunEventKind
EXECUTOR_STATE_UNSPECIFIED: ExecutorState
EXECUTOR_STATE_CONNECTED: ExecutorState
EXECUTOR_STATE_DRAINING: ExecutorState
EXECUTOR_STATE_LOST: ExecutorState

class SubmitRunRequest(_message.Message):
    __slots__ = ("task", "pipeline", "input_json", "priority", "request_id", "labels", "wait", "cache", "run_timeout", "start_delay", "reuse_from")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    RUN_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    START_DELAY_FIELD_NUMBER: _ClassVar[int]
    REUSE_FROM_FIELD_NUMBER: _ClassVar[int]
    task: str
    pipeline: str
    input_json: str
    priority: int
    request_id: str
    labels: _containers.ScalarMap[str, str]
    wait: _duration_pb2.Duration
    cache: bool
    run_timeout: _duration_pb2.Duration
    start_delay: _duration_pb2.Duration
    reuse_from: str
    def __init__(self, task: _Optional[str] = ..., pipeline: _Optional[str] = ..., input_json: _Optional[str] = ..., priority: _Optional[int] = ..., request_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cache: _Optional[bool] = ..., run_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., start_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reuse_from: _Optional[str] = ...) -> None: ...

class SubmitRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id", "after_event_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_event_id: str
    def __init__(self, run_id: _Optional[str] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: RunEvent
    def __init__(self, event: _Optional[_Union[RunEvent, _Mapping]] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("event_id", "run_id", "step_id", "attempt", "state", "message", "progress", "time", "kind")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    run_id: str
    step_id: str
    attempt: int
    state: _run_pb2.State
    message: str
    progress: float
    time: _timestamp_pb2.Timestamp
    kind: RunEventKind
    def __init__(self, event_id: _Optional[str] = ..., run_id: _Optional[str] = ..., step_id: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[_Union[_run_pb2.State, str]] = ..., message: _Optional[str] = ..., progress: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[RunEventKind, str]] = ...) -> None: ...

class SubmitRunsRequest(_message.Message):
    __slots__ = ("task", "pipeline", "inputs_json", "priority", "request_id", "labels", "cache", "run_timeout", "start_delay")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    RUN_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    START_DELAY_FIELD_NUMBER: _ClassVar[int]
    task: str
    pipeline: str
    inputs_json: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    request_id: str
    labels: _containers.ScalarMap[str, str]
    cache: bool
    run_timeout: _duration_pb2.Duration
    start_delay: _duration_pb2.Duration
    def __init__(self, task: _Optional[str] = ..., pipeline: _Optional[str] = ..., inputs_json: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ..., request_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., cache: _Optional[bool] = ..., run_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., start_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SubmitRunsResponse(_message.Message):
    __slots__ = ("batch_id", "run_ids")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, batch_id: _Optional[str] = ..., run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelRunResponse(_message.Message):
    __slots__ = ("run", "cancelled")
    RUN_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    cancelled: bool
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class SignalRunRequest(_message.Message):
    __slots__ = ("run_id", "step_id", "payload_json")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    step_id: str
    payload_json: str
    def __init__(self, run_id: _Optional[str] = ..., step_id: _Optional[str] = ..., payload_json: _Optional[str] = ...) -> None: ...

class SignalRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class SignalRunsRequest(_message.Message):
    __slots__ = ("step_id", "payload_json", "batch_id", "labels", "pipeline_id", "page_size", "page_token", "task_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    payload_json: str
    batch_id: str
    labels: _containers.ScalarMap[str, str]
    pipeline_id: str
    page_size: int
    page_token: str
    task_id: str
    def __init__(self, step_id: _Optional[str] = ..., payload_json: _Optional[str] = ..., batch_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., pipeline_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class RefusedSignal(_message.Message):
    __slots__ = ("run_id", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SignalRunsResponse(_message.Message):
    __slots__ = ("signaled", "refused", "next_page_token")
    SIGNALED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    signaled: _containers.RepeatedScalarFieldContainer[str]
    refused: _containers.RepeatedCompositeFieldContainer[RefusedSignal]
    next_page_token: str
    def __init__(self, signaled: _Optional[_Iterable[str]] = ..., refused: _Optional[_Iterable[_Union[RefusedSignal, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelRunsRequest(_message.Message):
    __slots__ = ("reason", "batch_id", "labels", "task_id", "pipeline_id", "page_size", "page_token")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REASON_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reason: str
    batch_id: str
    labels: _containers.ScalarMap[str, str]
    task_id: str
    pipeline_id: str
    page_size: int
    page_token: str
    def __init__(self, reason: _Optional[str] = ..., batch_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., task_id: _Optional[str] = ..., pipeline_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class CancelRunsResponse(_message.Message):
    __slots__ = ("cancelled", "ended", "not_theirs", "next_page_token")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    NOT_THEIRS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    cancelled: _containers.RepeatedCompositeFieldContainer[_run_pb2.Run]
    ended: _containers.RepeatedCompositeFieldContainer[_run_pb2.Run]
    not_theirs: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, cancelled: _Optional[_Iterable[_Union[_run_pb2.Run, _Mapping]]] = ..., ended: _Optional[_Iterable[_Union[_run_pb2.Run, _Mapping]]] = ..., not_theirs: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RerunRunRequest(_message.Message):
    __slots__ = ("run_id", "latest", "from_failure", "request_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    FROM_FAILURE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    latest: bool
    from_failure: bool
    request_id: str
    def __init__(self, run_id: _Optional[str] = ..., latest: _Optional[bool] = ..., from_failure: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class RerunRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: _run_pb2.Run
    def __init__(self, run: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class ResumeRunsRequest(_message.Message):
    __slots__ = ("batch_id", "labels", "task_id", "pipeline_id", "latest", "page_size", "page_token")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    labels: _containers.ScalarMap[str, str]
    task_id: str
    pipeline_id: str
    latest: bool
    page_size: int
    page_token: str
    def __init__(self, batch_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., task_id: _Optional[str] = ..., pipeline_id: _Optional[str] = ..., latest: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ResumedRun(_message.Message):
    __slots__ = ("run_id", "resumed_by")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_BY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    resumed_by: _run_pb2.Run
    def __init__(self, run_id: _Optional[str] = ..., resumed_by: _Optional[_Union[_run_pb2.Run, _Mapping]] = ...) -> None: ...

class RefusedResume(_message.Message):
    __slots__ = ("run_id", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeRunsResponse(_message.Message):
    __slots__ = ("resumed", "refused", "next_page_token")
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    resumed: _containers.RepeatedCompositeFieldContainer[ResumedRun]
    refused: _containers.RepeatedCompositeFieldContainer[RefusedResume]
    next_page_token: str
    def __init__(self, resumed: _Optional[_Iterable[_Union[ResumedRun, _Mapping]]] = ..., refused: _Optional[_Iterable[_Union[RefusedResume, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("state", "pipeline_id", "task_id", "batch_id", "created_after", "created_before", "page_size", "page_token", "labels", "awaiting_signal")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AWAITING_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    state: _run_pb2.State
    pipeline_id: str
    task_id: str
    batch_id: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    labels: _containers.ScalarMap[str, str]
    awaiting_signal: bool
    def __init__(self, state: _Optional[_Union[_run_pb2.State, str]] = ..., pipeline_id: _Optional[str] = ..., task_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., awaiting_signal: _Optional[bool] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[_run_pb2.Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[_run_pb2.Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListExecutorsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExecutorsResponse(_message.Message):
    __slots__ = ("executors", "next_page_token")
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    executors: _containers.RepeatedCompositeFieldContainer[Executor]
    next_page_token: str
    def __init__(self, executors: _Optional[_Iterable[_Union[Executor, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Executor(_message.Message):
    __slots__ = ("executor_id", "state", "queues", "slots", "in_flight", "labels", "software_version", "python_version", "connect_time", "last_seen_time", "scheduler_id", "packages", "slot_errors", "last_slot_error", "namespaces", "cpu_percent", "memory_bytes", "running_steps", "busy_slots", "sandbox", "disk_bytes", "pause", "resting_until")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    SLOT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    LAST_SLOT_ERROR_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_STEPS_FIELD_NUMBER: _ClassVar[int]
    BUSY_SLOTS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    RESTING_UNTIL_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    state: ExecutorState
    queues: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    in_flight: int
    labels: _containers.ScalarMap[str, str]
    software_version: str
    python_version: str
    connect_time: _timestamp_pb2.Timestamp
    last_seen_time: _timestamp_pb2.Timestamp
    scheduler_id: str
    packages: _containers.RepeatedScalarFieldContainer[str]
    slot_errors: int
    last_slot_error: str
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    cpu_percent: float
    memory_bytes: int
    running_steps: _containers.RepeatedScalarFieldContainer[str]
    busy_slots: int
    sandbox: str
    disk_bytes: int
    pause: ExecutorPause
    resting_until: _timestamp_pb2.Timestamp
    def __init__(self, executor_id: _Optional[str] = ..., state: _Optional[_Union[ExecutorState, str]] = ..., queues: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ..., in_flight: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., software_version: _Optional[str] = ..., python_version: _Optional[str] = ..., connect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduler_id: _Optional[str] = ..., packages: _Optional[_Iterable[str]] = ..., slot_errors: _Optional[int] = ..., last_slot_error: _Optional[str] = ..., namespaces: _Optional[_Iterable[str]] = ..., cpu_percent: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., running_steps: _Optional[_Iterable[str]] = ..., busy_slots: _Optional[int] = ..., sandbox: _Optional[str] = ..., disk_bytes: _Optional[int] = ..., pause: _Optional[_Union[ExecutorPause, _Mapping]] = ..., resting_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExecutorPause(_message.Message):
    __slots__ = ("executor_id", "reason", "paused_by", "pause_time")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAUSED_BY_FIELD_NUMBER: _ClassVar[int]
    PAUSE_TIME_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    reason: str
    paused_by: str
    pause_time: _timestamp_pb2.Timestamp
    def __init__(self, executor_id: _Optional[str] = ..., reason: _Optional[str] = ..., paused_by: _Optional[str] = ..., pause_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PauseExecutorRequest(_message.Message):
    __slots__ = ("executor_id", "reason")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    reason: str
    def __init__(self, executor_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseExecutorResponse(_message.Message):
    __slots__ = ("pause",)
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    pause: ExecutorPause
    def __init__(self, pause: _Optional[_Union[ExecutorPause, _Mapping]] = ...) -> None: ...

class ResumeExecutorRequest(_message.Message):
    __slots__ = ("executor_id",)
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    def __init__(self, executor_id: _Optional[str] = ...) -> None: ...

class ResumeExecutorResponse(_message.Message):
    __slots__ = ("resumed", "rest_ended")
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    REST_ENDED_FIELD_NUMBER: _ClassVar[int]
    resumed: bool
    rest_ended: bool
    def __init__(self, resumed: _Optional[bool] = ..., rest_ended: _Optional[bool] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("queues", "delayed", "next_page_token")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    DELAYED_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueStatus]
    delayed: int
    next_page_token: str
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueStatus, _Mapping]]] = ..., delayed: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class QueueStatus(_message.Message):
    __slots__ = ("queue", "namespace", "depth", "oldest_age", "executors", "free_slots", "pause")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    namespace: str
    depth: int
    oldest_age: _duration_pb2.Duration
    executors: int
    free_slots: int
    pause: QueuePause
    def __init__(self, queue: _Optional[str] = ..., namespace: _Optional[str] = ..., depth: _Optional[int] = ..., oldest_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., executors: _Optional[int] = ..., free_slots: _Optional[int] = ..., pause: _Optional[_Union[QueuePause, _Mapping]] = ...) -> None: ...

class QueuePause(_message.Message):
    __slots__ = ("queue", "namespace", "reason", "paused_by", "pause_time")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAUSED_BY_FIELD_NUMBER: _ClassVar[int]
    PAUSE_TIME_FIELD_NUMBER: _ClassVar[int]
    queue: str
    namespace: str
    reason: str
    paused_by: str
    pause_time: _timestamp_pb2.Timestamp
    def __init__(self, queue: _Optional[str] = ..., namespace: _Optional[str] = ..., reason: _Optional[str] = ..., paused_by: _Optional[str] = ..., pause_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PauseQueueRequest(_message.Message):
    __slots__ = ("queue", "reason")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    queue: str
    reason: str
    def __init__(self, queue: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseQueueResponse(_message.Message):
    __slots__ = ("pause",)
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    pause: QueuePause
    def __init__(self, pause: _Optional[_Union[QueuePause, _Mapping]] = ...) -> None: ...

class ResumeQueueRequest(_message.Message):
    __slots__ = ("queue",)
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    def __init__(self, queue: _Optional[str] = ...) -> None: ...

class ResumeQueueResponse(_message.Message):
    __slots__ = ("resumed",)
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    resumed: bool
    def __init__(self, resumed: _Optional[bool] = ...) -> None: ...

class TaskLimits(_message.Message):
    __slots__ = ("task_id", "namespace", "rate_limit", "concurrency_limit", "set_by", "set_at", "rate_burst")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    SET_BY_FIELD_NUMBER: _ClassVar[int]
    SET_AT_FIELD_NUMBER: _ClassVar[int]
    RATE_BURST_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    namespace: str
    rate_limit: str
    concurrency_limit: int
    set_by: str
    set_at: _timestamp_pb2.Timestamp
    rate_burst: int
    def __init__(self, task_id: _Optional[str] = ..., namespace: _Optional[str] = ..., rate_limit: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., set_by: _Optional[str] = ..., set_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rate_burst: _Optional[int] = ...) -> None: ...

class SetTaskLimitsRequest(_message.Message):
    __slots__ = ("task_id", "rate_limit", "concurrency_limit", "reset_fields", "rate_burst")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELDS_FIELD_NUMBER: _ClassVar[int]
    RATE_BURST_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    rate_limit: str
    concurrency_limit: int
    reset_fields: _containers.RepeatedScalarFieldContainer[str]
    rate_burst: int
    def __init__(self, task_id: _Optional[str] = ..., rate_limit: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., reset_fields: _Optional[_Iterable[str]] = ..., rate_burst: _Optional[int] = ...) -> None: ...

class SetTaskLimitsResponse(_message.Message):
    __slots__ = ("limits",)
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: TaskLimits
    def __init__(self, limits: _Optional[_Union[TaskLimits, _Mapping]] = ...) -> None: ...

class ListTaskLimitsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTaskLimitsResponse(_message.Message):
    __slots__ = ("limits", "next_page_token")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[TaskLimits]
    next_page_token: str
    def __init__(self, limits: _Optional[_Iterable[_Union[TaskLimits, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces", "next_page_token")
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[NamespaceStatus]
    next_page_token: str
    def __init__(self, namespaces: _Optional[_Iterable[_Union[NamespaceStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class NamespaceStatus(_message.Message):
    __slots__ = ("namespace", "unfinished_runs", "run_limit", "weight", "waiting_steps", "history_retention_days", "calls_per_second")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_RUNS_FIELD_NUMBER: _ClassVar[int]
    RUN_LIMIT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    WAITING_STEPS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    CALLS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    unfinished_runs: int
    run_limit: int
    weight: float
    waiting_steps: int
    history_retention_days: float
    calls_per_second: float
    def __init__(self, namespace: _Optional[str] = ..., unfinished_runs: _Optional[int] = ..., run_limit: _Optional[int] = ..., weight: _Optional[float] = ..., waiting_steps: _Optional[int] = ..., history_retention_days: _Optional[float] = ..., calls_per_second: _Optional[float] = ...) -> None: ...

class UpdateNamespaceRequest(_message.Message):
    __slots__ = ("run_limit", "weight", "history_retention_days", "reset_fields", "calls_per_second")
    RUN_LIMIT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELDS_FIELD_NUMBER: _ClassVar[int]
    CALLS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    run_limit: int
    weight: float
    history_retention_days: float
    reset_fields: _containers.RepeatedScalarFieldContainer[str]
    calls_per_second: float
    def __init__(self, run_limit: _Optional[int] = ..., weight: _Optional[float] = ..., history_retention_days: _Optional[float] = ..., reset_fields: _Optional[_Iterable[str]] = ..., calls_per_second: _Optional[float] = ...) -> None: ...

class UpdateNamespaceResponse(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: NamespaceStatus
    def __init__(self, namespace: _Optional[_Union[NamespaceStatus, _Mapping]] = ...) -> None: ...

class SchedulerServiceCheckDependenciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SchedulerServiceCheckDependenciesResponse(_message.Message):
    __slots__ = ("dependencies",)
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    dependencies: _containers.RepeatedCompositeFieldContainer[_run_pb2.DependencyStatus]
    def __init__(self, dependencies: _Optional[_Iterable[_Union[_run_pb2.DependencyStatus, _Mapping]]] = ...) -> None: ...
