"""Stopping a service's background tasks, so that a stopping service never waits forever.

A task cancelled once may miss it: on Python 3.11, ``asyncio.wait_for`` returns its inner
call's result when that call completes at the moment the waiting task is cancelled, and
the cancellation is lost (python/cpython#86296, fixed in 3.12 by rewriting ``wait_for``).
pymongo's and redis-py's asyncio clients wait on their sockets through ``wait_for``, so a
loop cancelled mid-call to MongoDB or Redis can go on looping. CI caught a scheduler that
stopped its reaper that way and then waited for it for good, its MongoDB and Redis gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

AGAIN_S = 0.1  # how often a task that is still running is cancelled again


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], grace: float = 5.0) -> None:
    """Cancel ``tasks`` and wait until they end, cancelling those still running again every
    ``AGAIN_S``; after ``grace`` seconds the rest are left running (and logged). What a task
    raised other than its cancellation is logged, not raised: its service is stopping."""
    tasks = list(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            log.warning(
                "still running %gs after being cancelled: %s",
                grace,
                sorted(t.get_name() for t in pending),
            )
            break
        _, pending = await asyncio.wait(pending, timeout=min(AGAIN_S, left))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error(
                "%s ended with an error while stopping", task.get_name(), exc_info=task.exception()
            )
