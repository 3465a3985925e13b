"""Clients of Worker Task Manager: the Python SDK (``clients.sdk``) and the CLI (``wtm``)."""

import common  # noqa: F401 - first: it sets gRPC's fork setting before grpc is imported
from clients.sdk import (
    ApiError,
    Client,
    PipelineInfo,
    PipelineStepInfo,
    RunEventInfo,
    RunInfo,
    StepInfo,
    TaskInfo,
)

__all__ = [
    "ApiError",
    "Client",
    "PipelineInfo",
    "PipelineStepInfo",
    "RunEventInfo",
    "RunInfo",
    "StepInfo",
    "TaskInfo",
]
