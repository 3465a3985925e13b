"""``Dispatcher``: the scheduler's core, assembled — what the executor stream and the run
service call. Each part does one thing:

- ``Fleet`` (fleet.py): executor sessions, what each holds, the fleet's record;
- ``Leaser`` (leasing.py): queued steps to free slots, in rounds;
- ``Intake`` (intake.py): heartbeats, progress, logs and results, results in batches;
- ``Reaper`` (reaper.py): expired leases, due retries, the record, once a second;
- ``Listeners`` (listeners.py): history, tracing, metrics and waiting submits hear what
  happened to runs and attempts.

A run's data flows one way: submit → queue (Redis) → lease → execute (executor) → complete
→ unblock its dependents (Lua) → record (listeners).
"""

from __future__ import annotations

import asyncio

from services.common.stopping import cancel_and_wait
from services.scheduler import keys
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.fleet import ExecutorProfile, ExecutorSession, Fleet
from services.scheduler.intake import Intake
from services.scheduler.large_documents import LargeDocuments
from services.scheduler.leasing import Leaser
from services.scheduler.listeners import Listeners
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.queue_records import Submission
from services.scheduler.reaper import Reaper
from services.scheduler.result_cache import ResultCache
from services.scheduler.retry_policy import RetryPolicy
from services.scheduler.run_queue import RunQueue


class Dispatcher:
    """The parts of the core, built together; their loops started and stopped together."""

    def __init__(
        self,
        queue: RunQueue,
        listeners: Listeners,
        lease_seconds: int = 30,
        retry: RetryPolicy = RetryPolicy(),
        scheduler_id: str = "",
        documents: LargeDocuments | None = None,
        prefetch: int = 0,
        silent_after: float = 15.0,
        clock: Clock = SYSTEM,
        cache: ResultCache | None = None,
        require_isolation: bool = False,
        isolation_optional: frozenset[str] = frozenset(),
    ) -> None:
        self.queue = queue
        self.listeners = listeners
        self.fleet = Fleet(
            queue, scheduler_id, silent_after, clock, require_isolation, isolation_optional
        )
        self.metrics = SchedulerMetrics(self.fleet, cache)
        self.leaser = Leaser(
            queue, self.fleet, listeners, lease_seconds, retry, documents, prefetch, clock, cache
        )
        self.intake = Intake(queue, self.fleet, self.leaser, listeners, clock)
        self.reaper = Reaper(queue, self.fleet, self.leaser, listeners, self.metrics)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.leaser.run()),
            asyncio.create_task(self.leaser.listen_for_work()),
            asyncio.create_task(self.intake.run()),
            asyncio.create_task(self.reaper.run()),
        ]

    async def stop(self) -> None:
        """End every executor stream (they reconnect elsewhere) and the loops."""
        self.fleet.close_all()
        await cancel_and_wait(self._tasks)

    # The executor stream -----------------------------------------------------------------

    def open_session(self, profile: ExecutorProfile) -> ExecutorSession:
        session = self.fleet.open(profile)
        self.leaser.new_executor(session)
        return session

    def close_session(self, session: ExecutorSession) -> None:
        self.fleet.close(session)
        self.leaser.forget(session)

    # What the stream brings up (heartbeats, progress, logs, results) goes to ``intake``.

    def pause_only(self, queues: frozenset[str]) -> None:
        """Lease from no queue of ``queues`` (pauses.py); a queue resumed is looked at by
        every idle executor in the next round."""
        resumed = self.fleet.paused - queues
        self.fleet.paused = queues
        if resumed:
            self.queue.work_was_queued()
            self.leaser.wake()

    def hold_only(self, executors: frozenset[str]) -> None:
        """Lease to no executor of ``executors`` (pauses.py); one resumed is asked in the
        next round."""
        resumed = self.fleet.paused_executors - executors
        self.fleet.paused_executors = executors
        if resumed:
            self.queue.work_was_queued()
            self.leaser.wake()

    # The run service ---------------------------------------------------------------------

    async def submit(self, runs: list[Submission]) -> list[tuple[bool, str]]:
        return await self.leaser.submit(runs)

    async def signal_step(self, run_id: str, step_id: str, document: str, by: str) -> list[str]:
        """A signal for a step that awaits one (``RunQueue.signal``: its verdict's words); a
        step it made ready is new work, leased in the next round."""
        return await self.queue.signal(keys.step_key(run_id, step_id), document, by)

    async def cancel_run(self, run_id: str, reason: str) -> str:
        """Cancel a run; tells executors to stop its running steps. Returns "cancelled" when
        this call ended it, else the state it had already ended in, or "missing"."""
        state, running = await self.queue.cancel_run(run_id, reason)
        if state == "cancelled":
            self.fleet.send_cancels(running, reason=f"run cancelled: {reason}")
            self.listeners.run_ended(run_id, None)
        return state
