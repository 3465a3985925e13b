"""The task kit: what task authors import."""

from tasks.base.task_base import (
    FatalError,
    MLTask,
    RetryableError,
    SimpleTask,
    TaskBase,
    TaskContext,
)

__all__ = ["FatalError", "MLTask", "RetryableError", "SimpleTask", "TaskBase", "TaskContext"]
