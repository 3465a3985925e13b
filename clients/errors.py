"""What the SDK raises. One base, ``WtmError`` (``ApiError`` is its older name): every
exception carries ``code`` (the gRPC status name, or RUN_* for a run's outcome) and
``message``; ``field`` names what to fix when the services said.

- A call the services refused: the ``common.errors`` class of its status — ``NotFound``,
  ``InvalidArgument`` (``field``), ``AlreadyExists``, ``FailedPrecondition``,
  ``Unauthenticated``, ``PermissionDenied``, ``Unavailable`` (after the client core's
  retries), ``DeadlineExceeded`` (also a ``TimeoutError``), ``ResourceExhausted``,
  ``DataLoss``, ``Internal``.
- A run that ended otherwise than COMPLETED, from ``Client.run`` and ``Client.wait``:
  ``RunFailedError``, ``RunCancelledError``, ``RunTimedOutError`` (its step ran out of
  time), each a ``RunError`` carrying the finished ``run``; pass ``raise_on_failure=False``
  to get the run back instead.
- ``WaitTimeoutError`` (also a ``TimeoutError``): the run had not finished when the wait
  ended; it carries the ``run_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.errors import (
    AlreadyExists,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    WtmError,
)

if TYPE_CHECKING:
    from clients.types import RunInfo

ApiError = WtmError  # the name the SDK used before the hierarchy


class RunError(WtmError):
    """A run ended otherwise than COMPLETED; ``run`` is the finished run."""

    code = "RUN_FAILED"

    def __init__(self, run: RunInfo) -> None:
        super().__init__(f"run {run.run_id} ended {run.state}: {run.error or 'no error given'}")
        self.run = run


class RunFailedError(RunError):
    """A step failed for good (its retries spent, or a fatal error)."""

    code = "RUN_FAILED"


class RunCancelledError(RunError):
    """The run was cancelled."""

    code = "RUN_CANCELLED"


class RunTimedOutError(RunError):
    """A step ran past its timeout on its last attempt."""

    code = "RUN_TIMED_OUT"


class WaitTimeoutError(WtmError, TimeoutError):
    """The run had not finished when the wait ended (it goes on running)."""

    code = "DEADLINE_EXCEEDED"

    def __init__(self, run_id: str, timeout: float) -> None:
        super().__init__(f"run {run_id} did not finish in {timeout:g}s")
        self.run_id = run_id


_BY_STATE: dict[str, type[RunError]] = {
    "FAILED": RunFailedError,
    "CANCELLED": RunCancelledError,
    "TIMED_OUT": RunTimedOutError,
}


def raise_for_outcome(run: RunInfo) -> RunInfo:
    """``run`` if it COMPLETED, else the ``RunError`` for how it ended."""
    if run.state == "COMPLETED":
        return run
    raise _BY_STATE.get(run.state, RunError)(run)


__all__ = [
    "AlreadyExists",
    "ApiError",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RunCancelledError",
    "RunError",
    "RunFailedError",
    "RunTimedOutError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "WaitTimeoutError",
    "WtmError",
    "raise_for_outcome",
]
