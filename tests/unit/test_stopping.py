"""Stopping background tasks (``services.common.stopping``): a task that misses a
cancellation — as one can on Python 3.11 when ``asyncio.wait_for`` loses it — is cancelled
again until it ends, and one that never ends is left after the grace period, so a stopping
service never waits forever."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from services.common.stopping import cancel_and_wait


async def misses_cancellations(missed: int, ticks: list[int]) -> None:
    """A loop whose first ``missed`` cancellations are lost, as a lost one is: it goes on."""
    while True:
        try:
            await asyncio.sleep(0.01)
            ticks.append(1)
        except asyncio.CancelledError:
            if missed == 0:
                raise
            missed -= 1  # not uncancel()ed: as wait_for loses one, the task stays cancelling


def test_a_task_that_missed_a_cancellation_is_cancelled_again_until_it_ends() -> None:
    async def main() -> None:
        ticks: list[int] = []
        task = asyncio.create_task(misses_cancellations(2, ticks))
        await asyncio.sleep(0.05)
        await cancel_and_wait([task], grace=5)
        assert task.cancelled()

    asyncio.run(main())


def test_a_task_that_never_ends_is_left_after_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> float:
        ticks: list[int] = []
        task = asyncio.create_task(misses_cancellations(10**9, ticks), name="stubborn")
        await asyncio.sleep(0.02)
        started = time.monotonic()
        await cancel_and_wait([task], grace=0.3)
        took = time.monotonic() - started
        assert not task.done()
        task.get_coro().close()  # type: ignore[union-attr]
        return took

    with caplog.at_level(logging.WARNING):
        took = asyncio.run(main())
    assert 0.3 <= took < 2.0
    assert "still running 0.3s after being cancelled: ['stubborn']" in caplog.text


def test_an_error_a_task_ended_with_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("MongoDB is gone")

    async def main() -> None:
        task = asyncio.create_task(fails(), name="flusher")
        await asyncio.sleep(0)
        await cancel_and_wait([task])

    asyncio.run(main())
    assert "flusher ended with an error while stopping" in caplog.text
