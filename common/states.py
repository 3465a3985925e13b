"""The states of runs and steps, defined once for the whole project (the proto's ``State``
without its ``STATE_`` prefix)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """A run's or a step's state. A str: ``State.COMPLETED == "COMPLETED"``."""

    PENDING = "PENDING"  # waiting for the steps it depends on
    QUEUED = "QUEUED"  # ready, waiting for an executor slot (or a retry's due time)
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"  # a step only: its skip_if held; done for the steps after it

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @classmethod
    def from_proto(cls, value: int) -> State:
        """From the proto enum's number (``wtm.v1.State``); UNSPECIFIED reads as PENDING."""
        from wtm.v1 import run_pb2

        name = run_pb2.State.Name(value).removeprefix("STATE_")
        return cls.PENDING if name == "UNSPECIFIED" else cls(name)

    def to_proto(self) -> int:
        from wtm.v1 import run_pb2

        return int(run_pb2.State.Value(f"STATE_{self.value}"))


RunState = State
StepState = State
TERMINAL_STATES = frozenset(
    {State.COMPLETED, State.FAILED, State.TIMED_OUT, State.CANCELLED, State.SKIPPED}
)
