"""Signals to runs' steps (``SignalRun``; ``services/common/signals.py`` says what a step's
``await_signal`` is): the checks that name what is wrong, the signal taken in Redis
(``signal.lua``, through the dispatcher), and kept on the run's document in MongoDB, so that
a run Redis lost is rebuilt with the signals it had (``history.py``), and a run that resumes
it (``rerun --from-failure``) starts with them (``runs.py``)."""

from __future__ import annotations

import time
from typing import Protocol

from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common import auth, signals
from services.scheduler.models import Run, ms_to_dt
from services.scheduler.runs import RunService
from services.scheduler.signal_records import SignalRecords


class SignalQueue(Protocol):
    """Where a signal is taken (the dispatcher)."""

    async def signal_step(self, run_id: str, step_id: str, document: str, by: str) -> list[str]: ...


class RunSignals:
    """Takes signals for runs' steps."""

    def __init__(self, runs: RunService, queue: SignalQueue, records: SignalRecords) -> None:
        self.runs = runs
        self.queue = queue
        self.records = records

    async def send(self, run_id: str, step_id: str, payload_json: str, namespace: str) -> Run:
        """Send ``step_id`` of ``run_id`` (a run of ``namespace``) the signal
        ``payload_json``; the run after it. NOT_FOUND: no such run or step; ALREADY_EXISTS:
        the step had another signal; FAILED_PRECONDITION: the run has ended, the step awaits
        no signal, or it was skipped or cancelled. The same signal again from the same key (a
        retry whose first try was taken) is answered as the first was: while the run is
        unfinished with its record written again (in case the first's write failed), and
        once it has ended as its record says."""
        if not step_id:
            raise InvalidArgument("is required", field="step_id")
        document = signals.parse_payload(payload_json)
        run = await self.runs.get(run_id, namespace)  # NOT_FOUND outside the caller's
        by = auth.current().key_id or "anonymous"
        if run.finished:
            return await self._ended(run, step_id, document, by)
        words = await self.queue.signal_step(run_id, step_id, document, by)
        verdict = words[0]
        if verdict in ("queued", "kept", "repeated"):
            await self.records.add(run_id, step_id, document, by, int(time.time() * 1000))
            return await self.runs.get(run_id)
        if verdict == "no_step":
            raise NotFound(f"run {run_id} has no step {step_id!r}", field="step_id")
        if verdict == "not_awaiting":
            raise FailedPrecondition(
                f"step {step_id} awaits no signal (its pipeline step has no await_signal)",
                field="step_id",
            )
        if verdict == "signaled":
            raise AlreadyExists(
                f"step {step_id} has had another signal (from {words[1] or 'anonymous'})",
                field="step_id",
            )
        if verdict == "timed_out":
            until = ms_to_dt(int(words[1]))
            raise FailedPrecondition(
                f"step {step_id} waited for its signal until {until:%Y-%m-%d %H:%M:%S} UTC, "
                "then went on without one (its await_signal's on_timeout)",
                field="step_id",
            )
        if verdict == "not_pending":
            raise FailedPrecondition(f"step {step_id} is {words[1]}", field="step_id")
        if verdict == "missing":  # unfinished in MongoDB, not yet rebuilt in Redis (history.py)
            raise Unavailable(f"run {run_id} is being restored; send the signal again shortly")
        return await self._ended(await self.runs.get(run_id), step_id, document, by)

    async def _ended(self, run: Run, step_id: str, document: str, by: str) -> Run:
        """A signal to a run that has ended: FAILED_PRECONDITION, unless it is the signal the
        run's record says this key sent the step (a retry): then the run, as it ended."""
        kept = (await self.records.read(run.run_id)).get(step_id, {})
        if kept.get("signal_json") == document and kept.get("signaled_by") == by:
            return run
        raise FailedPrecondition(f"run {run.run_id} has ended {run.state}", field="run_id")
