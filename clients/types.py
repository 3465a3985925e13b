"""What the SDK returns: plain, typed dataclasses made from the wire's messages
(``from_proto``); the generated classes stay behind them. States are ``common.states.State``
(a ``StrEnum``: ``run.state == "COMPLETED"`` holds, and so does ``run.state is
State.COMPLETED``).

One import for all of them; they live by what they describe: runs (``run_types``), the
catalog (``catalog_types``) and the fleet and its operators (``fleet_types``)."""

from __future__ import annotations

from clients.catalog_types import (
    ArtifactInfo,
    DependencyInfo,
    PipelineInfo,
    PipelineStepInfo,
    TaskInfo,
)
from clients.fleet_types import (
    ApiKeyInfo,
    ExecutorInfo,
    ExecutorPauseInfo,
    ExecutorResumed,
    NamespaceInfo,
    QueueInfo,
    QueuePauseInfo,
    TaskLimitsInfo,
)
from clients.run_types import (
    CancelledRuns,
    ResumedRuns,
    RunEventInfo,
    RunInfo,
    SignaledRuns,
    StepInfo,
)
from common.states import State

__all__ = [
    "ApiKeyInfo",
    "ArtifactInfo",
    "CancelledRuns",
    "DependencyInfo",
    "ExecutorInfo",
    "ExecutorPauseInfo",
    "ExecutorResumed",
    "NamespaceInfo",
    "PipelineInfo",
    "PipelineStepInfo",
    "QueueInfo",
    "QueuePauseInfo",
    "ResumedRuns",
    "SignaledRuns",
    "RunEventInfo",
    "RunInfo",
    "State",
    "StepInfo",
    "TaskInfo",
    "TaskLimitsInfo",
]
