"""Clients of Worker Task Manager: the Python SDK and the CLI (``wtm``).

    from clients import Client, RunFailedError

    with Client() as client:
        try:
            run = client.run(pipeline="face_processing_pipeline", input={"image_path": uri})
        except RunFailedError as failed:
            print(failed.run.error)

``Client`` (``clients.sdk``) and ``AsyncClient`` (``clients.aio``) have the same methods;
results are ``clients.types``; errors ``clients.errors``; states ``State``. This package
depends on the generated ``wtm`` code and on ``common`` only.
"""

import common  # noqa: F401 - first: it sets gRPC's fork setting before grpc is imported
from clients.aio import AsyncClient
from clients.errors import (
    AlreadyExists,
    ApiError,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RunCancelledError,
    RunError,
    RunFailedError,
    RunTimedOutError,
    Unauthenticated,
    Unavailable,
    WaitTimeoutError,
    WtmError,
)
from clients.schedules import BackfilledRun, ScheduleInfo
from clients.sdk import Client
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
from common.states import TERMINAL_STATES, RunState, State, StepState

__version__ = "0.1.0"

__all__ = [
    "TERMINAL_STATES",
    "AlreadyExists",
    "ApiError",
    "ApiKeyInfo",
    "ArtifactInfo",
    "AsyncClient",
    "BackfilledRun",
    "CancelledRuns",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "DependencyInfo",
    "ExecutorInfo",
    "ExecutorPauseInfo",
    "ExecutorResumed",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "PipelineInfo",
    "PipelineStepInfo",
    "NamespaceInfo",
    "QueueInfo",
    "QueuePauseInfo",
    "TaskLimitsInfo",
    "ResourceExhausted",
    "RunCancelledError",
    "RunError",
    "ResumedRuns",
    "RunEventInfo",
    "RunFailedError",
    "RunInfo",
    "RunState",
    "RunTimedOutError",
    "ScheduleInfo",
    "State",
    "StepInfo",
    "StepState",
    "TaskInfo",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeoutError",
    "WtmError",
]
