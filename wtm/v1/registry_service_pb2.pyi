import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from wtm.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegistryServiceCheckDependenciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegistryServiceCheckDependenciesResponse(_message.Message):
    __slots__ = ("dependencies",)
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    dependencies: _containers.RepeatedCompositeFieldContainer[_run_pb2.DependencyStatus]
    def __init__(self, dependencies: _Optional[_Iterable[_Union[_run_pb2.DependencyStatus, _Mapping]]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("name", "task_id", "version", "display_name", "description", "category", "tags", "queue", "priority", "timeout_seconds", "max_retries", "entry_point", "digest", "size_bytes", "manifest_json", "create_time", "deprecated", "deprecation_reason", "namespace", "shared")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    DEPRECATION_REASON_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    name: str
    task_id: str
    version: str
    display_name: str
    description: str
    category: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    queue: str
    priority: int
    timeout_seconds: int
    max_retries: int
    entry_point: str
    digest: str
    size_bytes: int
    manifest_json: str
    create_time: _timestamp_pb2.Timestamp
    deprecated: bool
    deprecation_reason: str
    namespace: str
    shared: bool
    def __init__(self, name: _Optional[str] = ..., task_id: _Optional[str] = ..., version: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., category: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., queue: _Optional[str] = ..., priority: _Optional[int] = ..., timeout_seconds: _Optional[int] = ..., max_retries: _Optional[int] = ..., entry_point: _Optional[str] = ..., digest: _Optional[str] = ..., size_bytes: _Optional[int] = ..., manifest_json: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deprecated: _Optional[bool] = ..., deprecation_reason: _Optional[str] = ..., namespace: _Optional[str] = ..., shared: _Optional[bool] = ...) -> None: ...

class UploadTaskPackageHeader(_message.Message):
    __slots__ = ("sha256", "size_bytes")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class UploadTaskPackageRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadTaskPackageHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadTaskPackageHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadTaskPackageResponse(_message.Message):
    __slots__ = ("task", "created")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    task: Task
    created: bool
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id", "version")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    version: str
    def __init__(self, task_id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "task_id", "category", "tag", "queue")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    task_id: str
    category: str
    tag: str
    queue: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., task_id: _Optional[str] = ..., category: _Optional[str] = ..., tag: _Optional[str] = ..., queue: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DownloadTaskPackageRequest(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    def __init__(self, digest: _Optional[str] = ...) -> None: ...

class DownloadTaskPackageResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class DeprecateTaskRequest(_message.Message):
    __slots__ = ("task_id", "version", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    version: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeprecateTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ShareTaskRequest(_message.Message):
    __slots__ = ("task_id", "shared")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    shared: bool
    def __init__(self, task_id: _Optional[str] = ..., shared: _Optional[bool] = ...) -> None: ...

class ShareTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class PipelineStep(_message.Message):
    __slots__ = ("step_id", "task_id", "task_version", "digest", "depends_on", "parallel_group", "timeout_seconds", "retry_count", "input_mapping_json", "queue", "cache", "retry_backoff", "skip_if_json", "for_each_json", "await_signal_json")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_GROUP_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    INPUT_MAPPING_JSON_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    SKIP_IF_JSON_FIELD_NUMBER: _ClassVar[int]
    FOR_EACH_JSON_FIELD_NUMBER: _ClassVar[int]
    AWAIT_SIGNAL_JSON_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    task_id: str
    task_version: str
    digest: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    parallel_group: str
    timeout_seconds: int
    retry_count: int
    input_mapping_json: str
    queue: str
    cache: bool
    retry_backoff: RetryBackoff
    skip_if_json: str
    for_each_json: str
    await_signal_json: str
    def __init__(self, step_id: _Optional[str] = ..., task_id: _Optional[str] = ..., task_version: _Optional[str] = ..., digest: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., parallel_group: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., retry_count: _Optional[int] = ..., input_mapping_json: _Optional[str] = ..., queue: _Optional[str] = ..., cache: _Optional[bool] = ..., retry_backoff: _Optional[_Union[RetryBackoff, _Mapping]] = ..., skip_if_json: _Optional[str] = ..., for_each_json: _Optional[str] = ..., await_signal_json: _Optional[str] = ...) -> None: ...

class RetryBackoff(_message.Message):
    __slots__ = ("first_seconds", "max_seconds")
    FIRST_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    first_seconds: float
    max_seconds: float
    def __init__(self, first_seconds: _Optional[float] = ..., max_seconds: _Optional[float] = ...) -> None: ...

class Pipeline(_message.Message):
    __slots__ = ("name", "pipeline_id", "version", "display_name", "description", "steps", "input_validation_json", "output_format_json", "metadata_json", "enabled", "create_time", "namespace", "max_parallel_tasks", "enable_caching", "log_level", "run_timeout_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    INPUT_VALIDATION_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_JSON_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_TASKS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_CACHING_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    RUN_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    pipeline_id: str
    version: str
    display_name: str
    description: str
    steps: _containers.RepeatedCompositeFieldContainer[PipelineStep]
    input_validation_json: str
    output_format_json: str
    metadata_json: str
    enabled: bool
    create_time: _timestamp_pb2.Timestamp
    namespace: str
    max_parallel_tasks: int
    enable_caching: bool
    log_level: str
    run_timeout_seconds: int
    def __init__(self, name: _Optional[str] = ..., pipeline_id: _Optional[str] = ..., version: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[PipelineStep, _Mapping]]] = ..., input_validation_json: _Optional[str] = ..., output_format_json: _Optional[str] = ..., metadata_json: _Optional[str] = ..., enabled: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., namespace: _Optional[str] = ..., max_parallel_tasks: _Optional[int] = ..., enable_caching: _Optional[bool] = ..., log_level: _Optional[str] = ..., run_timeout_seconds: _Optional[int] = ...) -> None: ...

class RegisterPipelinesRequest(_message.Message):
    __slots__ = ("config_json", "pipeline_id", "validate_only")
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    config_json: str
    pipeline_id: str
    validate_only: bool
    def __init__(self, config_json: _Optional[str] = ..., pipeline_id: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class RegisterPipelinesResponse(_message.Message):
    __slots__ = ("pipelines", "created", "registered_before", "warnings")
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    created: _containers.RepeatedScalarFieldContainer[bool]
    registered_before: _containers.RepeatedScalarFieldContainer[bool]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ..., created: _Optional[_Iterable[bool]] = ..., registered_before: _Optional[_Iterable[bool]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPipelineRequest(_message.Message):
    __slots__ = ("pipeline_id", "version")
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    pipeline_id: str
    version: str
    def __init__(self, pipeline_id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetPipelineResponse(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class ListPipelinesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "pipeline_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    pipeline_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., pipeline_id: _Optional[str] = ...) -> None: ...

class ListPipelinesResponse(_message.Message):
    __slots__ = ("pipelines", "next_page_token")
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    next_page_token: str
    def __init__(self, pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UploadArtifactHeader(_message.Message):
    __slots__ = ("filename",)
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    filename: str
    def __init__(self, filename: _Optional[str] = ...) -> None: ...

class UploadArtifactRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadArtifactHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadArtifactHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadArtifactResponse(_message.Message):
    __slots__ = ("uri", "digest", "size_bytes")
    URI_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    uri: str
    digest: str
    size_bytes: int
    def __init__(self, uri: _Optional[str] = ..., digest: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("uri",)
    URI_FIELD_NUMBER: _ClassVar[int]
    uri: str
    def __init__(self, uri: _Optional[str] = ...) -> None: ...

class DownloadArtifactResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("name", "digest", "namespace", "size_bytes", "store_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    digest: str
    namespace: str
    size_bytes: int
    store_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., digest: _Optional[str] = ..., namespace: _Optional[str] = ..., size_bytes: _Optional[int] = ..., store_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListArtifactsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListArtifactsResponse(_message.Message):
    __slots__ = ("artifacts", "next_page_token")
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    next_page_token: str
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteArtifactsRequest(_message.Message):
    __slots__ = ("digests",)
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, digests: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteArtifactsResponse(_message.Message):
    __slots__ = ("digests",)
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, digests: _Optional[_Iterable[str]] = ...) -> None: ...
