"""Clients of Worker Task Manager: the Python SDK (``clients.sdk``) and the CLI (``wtm``)."""

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
