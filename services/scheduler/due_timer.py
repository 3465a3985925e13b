"""``DueTimer``: one timer, on each replica, for the earliest thing a lease round left
waiting in Redis until a given time — a short dynamic batch (in its queue, until its
``max_wait_ms``) or a step put aside in the delayed set (a rate-limited task's reserved
start, a retry's backoff). When it fires, the due steps of the delayed set are queued
(``promote_due.lua``, which says when the next one is due, so the timer follows them) and
lease rounds ask the executors again. The reaper's one-second promotion is the backstop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from services.scheduler.run_queue import RunQueue

log = logging.getLogger(__name__)

MIN_GAP_MS = 10  # a timer fires at most this often: what comes due within it goes together


class DueTimer:
    def __init__(self, queue: RunQueue, wake: Callable[[], None]) -> None:
        self.queue = queue
        self.wake = wake
        self._timers: dict[str, asyncio.TimerHandle] = {}  # "batch", "delayed"
        self._promoting: asyncio.Task[None] | None = None
        self._again = False  # a timer fired while a promotion was under way

    def take(self, now_ms: int) -> None:
        """Arm for what the queue's last calls left waiting, if anything (each kind once,
        at its earliest due time)."""
        while self.queue.due_ms:
            kind, due = self.queue.due_ms.popitem()
            self._arm(kind, due, now_ms)

    def _arm(self, kind: str, due_ms: int, now_ms: int) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.0, (due_ms - now_ms) / 1000)
        timer = self._timers.get(kind)
        if timer is not None and not timer.cancelled() and timer.when() > loop.time():
            if timer.when() <= at:
                return
            timer.cancel()
        fire = self.queue.work_was_queued if kind == "batch" else self._promote_soon
        self._timers[kind] = loop.call_at(at, fire)

    def _promote_soon(self) -> None:
        self._again = True  # a promotion under way goes round once more
        if self._promoting is None or self._promoting.done():
            self._promoting = asyncio.create_task(self._promote())

    async def _promote(self) -> None:
        """Queue what came due (its queues' executors are asked), then follow the next."""
        while self._again:
            self._again = False
            try:
                if await self.queue.promote_due():
                    self.wake()
            except Exception:  # Redis away: the reaper's next tick promotes them
                log.warning("promoting due steps failed; the reaper tries again", exc_info=True)
                return
            await asyncio.sleep(MIN_GAP_MS / 1000)
            self.take(self.queue.clock.now_ms())
