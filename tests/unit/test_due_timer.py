"""``DueTimer``: what a lease round left waiting until a time is taken up then — a short
batch by asking the executors again, the delayed set by promoting it and following its next
due time — and a due time that comes while a promotion is under way is not lost."""

from __future__ import annotations

import asyncio
from typing import Any

from services.scheduler.clock import SYSTEM
from services.scheduler.due_timer import DueTimer


class Queue:
    """What DueTimer uses of RunQueue, recording when it was used (the system clock)."""

    def __init__(self, dues: list[int]) -> None:
        self.clock = SYSTEM
        self.due_ms: dict[str, int] = {}
        self.dues = dues  # the delayed set's due times, ms
        self.promoted: list[int] = []  # when each promotion found something due
        self.asked: list[int] = []  # when a short batch's wait ended

    def work_was_queued(self) -> None:
        self.asked.append(self.clock.now_ms())

    async def promote_due(self) -> int:
        now = self.clock.now_ms()
        due = [d for d in self.dues if d <= now]
        self.dues = [d for d in self.dues if d > now]
        if due:
            self.promoted.append(now)
        if self.dues:
            self.due_ms["delayed"] = min(self.dues)
        await asyncio.sleep(0.005)  # a round trip
        return len(due)


def test_each_due_time_is_taken_up_on_time_and_the_delayed_set_is_followed() -> None:
    async def scenario() -> tuple[Any, ...]:
        now = SYSTEM.now_ms()
        queue = Queue([now + 100, now + 200, now + 300])
        woken: list[int] = []
        timer = DueTimer(queue, lambda: woken.append(SYSTEM.now_ms()))  # type: ignore[arg-type]
        queue.due_ms = {"batch": now + 50, "delayed": now + 100}
        timer.take(now)
        await asyncio.sleep(0.45)
        return now, queue, woken

    now, queue, woken = asyncio.run(scenario())
    assert queue.asked and 50 <= queue.asked[0] - now < 150
    offsets = [t - now for t in queue.promoted]
    assert len(offsets) == 3 and all(
        d <= o < d + 80 for o, d in zip(offsets, (100, 200, 300), strict=True)
    )
    assert len(woken) == 3 and queue.dues == []


def test_a_due_time_that_comes_during_a_promotion_is_not_lost() -> None:
    """A lease round arms the next due time while the timer's promotion waits out its
    10 ms: the timer fires then, and the promotion goes round once more."""

    async def scenario() -> list[int]:
        now = SYSTEM.now_ms()
        queue = Queue([now + 30, now + 35])
        timer = DueTimer(queue, lambda: None)  # type: ignore[arg-type]
        queue.due_ms = {"delayed": now + 30}
        timer.take(now)
        await asyncio.sleep(0.038)  # the first promoted, its promotion waits out its gap
        timer.take(SYSTEM.now_ms())  # a lease round takes the next due time meanwhile
        await asyncio.sleep(0.2)
        return queue.dues

    assert asyncio.run(scenario()) == []
