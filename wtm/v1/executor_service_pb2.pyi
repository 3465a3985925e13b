import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StepOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_OUTCOME_UNSPECIFIED: _ClassVar[StepOutcome]
    STEP_OUTCOME_SUCCEEDED: _ClassVar[StepOutcome]
    STEP_OUTCOME_FAILED: _ClassVar[StepOutcome]
    STEP_OUTCOME_FATAL: _ClassVar[StepOutcome]
    STEP_OUTCOME_TIMED_OUT: _ClassVar[StepOutcome]
    STEP_OUTCOME_CANCELLED: _ClassVar[StepOutcome]
    STEP_OUTCOME_RELEASED: _ClassVar[StepOutcome]
STEP_OUTCOME_UNSPECIFIED: StepOutcome
STEP_OUTCOME_SUCCEEDED: StepOutcome
STEP_OUTCOME_FAILED: StepOutcome
STEP_OUTCOME_FATAL: StepOutcome
STEP_OUTCOME_TIMED_OUT: StepOutcome
STEP_OUTCOME_CANCELLED: StepOutcome
STEP_OUTCOME_RELEASED: StepOutcome

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "heartbeat", "progress", "result", "log", "results")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    hello: ExecutorHello
    heartbeat: ExecutorHeartbeat
    progress: StepProgress
    result: StepResult
    log: StepLog
    results: StepResults
    def __init__(self, hello: _Optional[_Union[ExecutorHello, _Mapping]] = ..., heartbeat: _Optional[_Union[ExecutorHeartbeat, _Mapping]] = ..., progress: _Optional[_Union[StepProgress, _Mapping]] = ..., result: _Optional[_Union[StepResult, _Mapping]] = ..., log: _Optional[_Union[StepLog, _Mapping]] = ..., results: _Optional[_Union[StepResults, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("welcome", "assignment", "cancel", "heartbeat_ack", "assignments", "end_rest")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    END_REST_FIELD_NUMBER: _ClassVar[int]
    welcome: ExecutorWelcome
    assignment: StepAssignment
    cancel: CancelStep
    heartbeat_ack: HeartbeatAck
    assignments: StepAssignments
    end_rest: EndRest
    def __init__(self, welcome: _Optional[_Union[ExecutorWelcome, _Mapping]] = ..., assignment: _Optional[_Union[StepAssignment, _Mapping]] = ..., cancel: _Optional[_Union[CancelStep, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ..., assignments: _Optional[_Union[StepAssignments, _Mapping]] = ..., end_rest: _Optional[_Union[EndRest, _Mapping]] = ...) -> None: ...

class ExecutorHello(_message.Message):
    __slots__ = ("executor_id", "queues", "slots", "labels", "software_version", "python_version", "packages", "namespaces", "batching", "batched_messages", "sandbox", "ends_rests")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    BATCHED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    ENDS_RESTS_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    labels: _containers.ScalarMap[str, str]
    software_version: str
    python_version: str
    packages: _containers.RepeatedScalarFieldContainer[str]
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    batching: bool
    batched_messages: bool
    sandbox: str
    ends_rests: bool
    def __init__(self, executor_id: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., software_version: _Optional[str] = ..., python_version: _Optional[str] = ..., packages: _Optional[_Iterable[str]] = ..., namespaces: _Optional[_Iterable[str]] = ..., batching: _Optional[bool] = ..., batched_messages: _Optional[bool] = ..., sandbox: _Optional[str] = ..., ends_rests: _Optional[bool] = ...) -> None: ...

class ExecutorWelcome(_message.Message):
    __slots__ = ("lease_seconds", "heartbeat_interval_seconds", "acks_heartbeats", "batched_messages", "honours_rests", "stamps_leases")
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ACKS_HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    BATCHED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    HONOURS_RESTS_FIELD_NUMBER: _ClassVar[int]
    STAMPS_LEASES_FIELD_NUMBER: _ClassVar[int]
    lease_seconds: int
    heartbeat_interval_seconds: float
    acks_heartbeats: bool
    batched_messages: bool
    honours_rests: bool
    stamps_leases: bool
    def __init__(self, lease_seconds: _Optional[int] = ..., heartbeat_interval_seconds: _Optional[float] = ..., acks_heartbeats: _Optional[bool] = ..., batched_messages: _Optional[bool] = ..., honours_rests: _Optional[bool] = ..., stamps_leases: _Optional[bool] = ...) -> None: ...

class EndRest(_message.Message):
    __slots__ = ("ended_by",)
    ENDED_BY_FIELD_NUMBER: _ClassVar[int]
    ended_by: str
    def __init__(self, ended_by: _Optional[str] = ...) -> None: ...

class ExecutorHeartbeat(_message.Message):
    __slots__ = ("running", "draining", "sequence", "slot_errors", "last_slot_error", "cpu_percent", "memory_bytes", "disk_bytes", "resting_seconds")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SLOT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    LAST_SLOT_ERROR_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESTING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    running: _containers.RepeatedCompositeFieldContainer[StepAttemptRef]
    draining: bool
    sequence: int
    slot_errors: int
    last_slot_error: str
    cpu_percent: float
    memory_bytes: int
    disk_bytes: int
    resting_seconds: float
    def __init__(self, running: _Optional[_Iterable[_Union[StepAttemptRef, _Mapping]]] = ..., draining: _Optional[bool] = ..., sequence: _Optional[int] = ..., slot_errors: _Optional[int] = ..., last_slot_error: _Optional[str] = ..., cpu_percent: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., resting_seconds: _Optional[float] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class StepAttemptRef(_message.Message):
    __slots__ = ("run_id", "step_id", "attempt", "lease_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    step_id: str
    attempt: int
    lease_id: str
    def __init__(self, run_id: _Optional[str] = ..., step_id: _Optional[str] = ..., attempt: _Optional[int] = ..., lease_id: _Optional[str] = ...) -> None: ...

class StepAssignment(_message.Message):
    __slots__ = ("ref", "task_id", "task_version", "digest", "entry_point", "input_json", "timeout_seconds", "input_id", "output_id", "upstream_output_ids", "input_sources", "traceparent", "namespace", "log_level", "call_id", "call_size", "proven", "condition_paths", "leased_after_heartbeat")
    class UpstreamOutputIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class InputSourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INPUT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ID_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_OUTPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SOURCES_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROVEN_FIELD_NUMBER: _ClassVar[int]
    CONDITION_PATHS_FIELD_NUMBER: _ClassVar[int]
    LEASED_AFTER_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ref: StepAttemptRef
    task_id: str
    task_version: str
    digest: str
    entry_point: str
    input_json: str
    timeout_seconds: int
    input_id: str
    output_id: str
    upstream_output_ids: _containers.ScalarMap[str, str]
    input_sources: _containers.ScalarMap[str, str]
    traceparent: str
    namespace: str
    log_level: str
    call_id: str
    call_size: int
    proven: bool
    condition_paths: _containers.RepeatedScalarFieldContainer[str]
    leased_after_heartbeat: int
    def __init__(self, ref: _Optional[_Union[StepAttemptRef, _Mapping]] = ..., task_id: _Optional[str] = ..., task_version: _Optional[str] = ..., digest: _Optional[str] = ..., entry_point: _Optional[str] = ..., input_json: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., input_id: _Optional[str] = ..., output_id: _Optional[str] = ..., upstream_output_ids: _Optional[_Mapping[str, str]] = ..., input_sources: _Optional[_Mapping[str, str]] = ..., traceparent: _Optional[str] = ..., namespace: _Optional[str] = ..., log_level: _Optional[str] = ..., call_id: _Optional[str] = ..., call_size: _Optional[int] = ..., proven: _Optional[bool] = ..., condition_paths: _Optional[_Iterable[str]] = ..., leased_after_heartbeat: _Optional[int] = ...) -> None: ...

class CancelStep(_message.Message):
    __slots__ = ("ref", "reason")
    REF_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ref: StepAttemptRef
    reason: str
    def __init__(self, ref: _Optional[_Union[StepAttemptRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("ref", "fraction", "message")
    REF_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ref: StepAttemptRef
    fraction: float
    message: str
    def __init__(self, ref: _Optional[_Union[StepAttemptRef, _Mapping]] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class StepResult(_message.Message):
    __slots__ = ("ref", "outcome", "output_json", "error", "start_time", "end_time", "received_time", "sent_time", "condition_view_json")
    REF_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_FIELD_NUMBER: _ClassVar[int]
    CONDITION_VIEW_JSON_FIELD_NUMBER: _ClassVar[int]
    ref: StepAttemptRef
    outcome: StepOutcome
    output_json: str
    error: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    received_time: _timestamp_pb2.Timestamp
    sent_time: _timestamp_pb2.Timestamp
    condition_view_json: str
    def __init__(self, ref: _Optional[_Union[StepAttemptRef, _Mapping]] = ..., outcome: _Optional[_Union[StepOutcome, str]] = ..., output_json: _Optional[str] = ..., error: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., condition_view_json: _Optional[str] = ...) -> None: ...

class StepAssignments(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[StepAssignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[StepAssignment, _Mapping]]] = ...) -> None: ...

class StepResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StepResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StepResult, _Mapping]]] = ...) -> None: ...

class StepLog(_message.Message):
    __slots__ = ("ref", "level", "message", "time")
    REF_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ref: StepAttemptRef
    level: str
    message: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, ref: _Optional[_Union[StepAttemptRef, _Mapping]] = ..., level: _Optional[str] = ..., message: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
