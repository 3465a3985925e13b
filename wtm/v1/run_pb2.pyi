import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATE_UNSPECIFIED: _ClassVar[State]
    STATE_PENDING: _ClassVar[State]
    STATE_QUEUED: _ClassVar[State]
    STATE_RUNNING: _ClassVar[State]
    STATE_COMPLETED: _ClassVar[State]
    STATE_FAILED: _ClassVar[State]
    STATE_TIMED_OUT: _ClassVar[State]
    STATE_CANCELLED: _ClassVar[State]
    STATE_SKIPPED: _ClassVar[State]
STATE_UNSPECIFIED: State
STATE_PENDING: State
STATE_QUEUED: State
STATE_RUNNING: State
STATE_COMPLETED: State
STATE_FAILED: State
STATE_TIMED_OUT: State
STATE_CANCELLED: State
STATE_SKIPPED: State

class Run(_message.Message):
    __slots__ = ("name", "run_id", "pipeline_id", "pipeline_version", "task_id", "state", "input_json", "output_json", "error", "priority", "labels", "request_id", "steps", "lineage", "create_time", "start_time", "end_time", "processing_summary", "batch_id", "trace_id", "namespace", "deadline_time", "scheduled_time", "task_version")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_TIME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    TASK_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    run_id: str
    pipeline_id: str
    pipeline_version: str
    task_id: str
    state: State
    input_json: str
    output_json: str
    error: str
    priority: int
    labels: _containers.ScalarMap[str, str]
    request_id: str
    steps: _containers.RepeatedCompositeFieldContainer[StepRun]
    lineage: _containers.RepeatedCompositeFieldContainer[LineageEdge]
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    processing_summary: ProcessingSummary
    batch_id: str
    trace_id: str
    namespace: str
    deadline_time: _timestamp_pb2.Timestamp
    scheduled_time: _timestamp_pb2.Timestamp
    task_version: str
    def __init__(self, name: _Optional[str] = ..., run_id: _Optional[str] = ..., pipeline_id: _Optional[str] = ..., pipeline_version: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[_Union[State, str]] = ..., input_json: _Optional[str] = ..., output_json: _Optional[str] = ..., error: _Optional[str] = ..., priority: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[StepRun, _Mapping]]] = ..., lineage: _Optional[_Iterable[_Union[LineageEdge, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., processing_summary: _Optional[_Union[ProcessingSummary, _Mapping]] = ..., batch_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., namespace: _Optional[str] = ..., deadline_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task_version: _Optional[str] = ...) -> None: ...

class ProcessingSummary(_message.Message):
    __slots__ = ("wall_seconds", "step_seconds_sum", "parallel_speedup", "steps", "cache_hits", "taken_over", "signal_wait_seconds")
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STEP_SECONDS_SUM_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    TAKEN_OVER_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    wall_seconds: float
    step_seconds_sum: float
    parallel_speedup: float
    steps: _containers.RepeatedCompositeFieldContainer[StepTiming]
    cache_hits: int
    taken_over: int
    signal_wait_seconds: float
    def __init__(self, wall_seconds: _Optional[float] = ..., step_seconds_sum: _Optional[float] = ..., parallel_speedup: _Optional[float] = ..., steps: _Optional[_Iterable[_Union[StepTiming, _Mapping]]] = ..., cache_hits: _Optional[int] = ..., taken_over: _Optional[int] = ..., signal_wait_seconds: _Optional[float] = ...) -> None: ...

class StepTiming(_message.Message):
    __slots__ = ("step_id", "queued_seconds", "run_seconds", "process_seconds", "pickup_seconds", "report_seconds", "cached")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RUN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PICKUP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REPORT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    queued_seconds: float
    run_seconds: float
    process_seconds: float
    pickup_seconds: float
    report_seconds: float
    cached: bool
    def __init__(self, step_id: _Optional[str] = ..., queued_seconds: _Optional[float] = ..., run_seconds: _Optional[float] = ..., process_seconds: _Optional[float] = ..., pickup_seconds: _Optional[float] = ..., report_seconds: _Optional[float] = ..., cached: _Optional[bool] = ...) -> None: ...

class StepRun(_message.Message):
    __slots__ = ("step_id", "task_id", "task_version", "state", "attempt", "input_id", "output_id", "output_json", "error", "executor_id", "start_time", "end_time", "logs", "cached_from", "awaiting_signal", "signal_deadline", "signaled_by", "continues_at_deadline", "ran_without_signal")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    INPUT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FROM_FIELD_NUMBER: _ClassVar[int]
    AWAITING_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    SIGNALED_BY_FIELD_NUMBER: _ClassVar[int]
    CONTINUES_AT_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    RAN_WITHOUT_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    task_id: str
    task_version: str
    state: State
    attempt: int
    input_id: str
    output_id: str
    output_json: str
    error: str
    executor_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    logs: _containers.RepeatedScalarFieldContainer[str]
    cached_from: str
    awaiting_signal: str
    signal_deadline: _timestamp_pb2.Timestamp
    signaled_by: str
    continues_at_deadline: bool
    ran_without_signal: bool
    def __init__(self, step_id: _Optional[str] = ..., task_id: _Optional[str] = ..., task_version: _Optional[str] = ..., state: _Optional[_Union[State, str]] = ..., attempt: _Optional[int] = ..., input_id: _Optional[str] = ..., output_id: _Optional[str] = ..., output_json: _Optional[str] = ..., error: _Optional[str] = ..., executor_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., logs: _Optional[_Iterable[str]] = ..., cached_from: _Optional[str] = ..., awaiting_signal: _Optional[str] = ..., signal_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., signaled_by: _Optional[str] = ..., continues_at_deadline: _Optional[bool] = ..., ran_without_signal: _Optional[bool] = ...) -> None: ...

class LineageEdge(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class DependencyStatus(_message.Message):
    __slots__ = ("name", "ok", "detail", "latency", "clock_offset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    detail: str
    latency: _duration_pb2.Duration
    clock_offset: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., clock_offset: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
