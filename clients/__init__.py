"""Clients of Worker Task Manager: the Python SDK (``clients.sdk``) and the CLI (``wtm``)."""

from clients.sdk import ApiError, Client, RunEventInfo, RunInfo, StepInfo, TaskInfo

__all__ = ["ApiError", "Client", "RunEventInfo", "RunInfo", "StepInfo", "TaskInfo"]
