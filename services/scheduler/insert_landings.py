"""``InsertLandings``: when new runs' MongoDB inserts land, so that the writes no run waits
for can go then.

A submit waits for its run's insert; nothing waits for the history written behind or for the
audit log. A MongoDB that applies one command at a time per database (nx-27017, the local
stack's) makes an insert that meets another write wait for that write. While submits come,
the moment an insert lands is when the next one is furthest off (~2.5 ms for a client that
submits one run after another: session 47 in ``docs/speed.md``), so the write-behind's calls
(``RunStore``, on the event loop) and the audit log's inserts (``AuditLog``, on a thread of
its own) wait for that moment, each for at most a bound, and go at once when no submit came
lately.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

ACTIVE_S = 0.02  # an insert began this recently: submits are coming


class InsertLandings:
    """The inserts of new runs in flight, and a signal as each lands; one per ``RunStore``.
    ``began`` and ``landed`` are called on the event loop."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._began = -ACTIVE_S  # when the last one began (time.monotonic())
        self._landed = asyncio.Event()
        self._landed_for_threads = threading.Event()

    def began(self) -> None:
        self.in_flight += 1
        self._began = time.monotonic()

    def landed(self) -> None:
        self.in_flight -= 1
        self._landed.set()
        self._landed_for_threads.set()

    def coming(self) -> bool:
        """Whether submits are coming: an insert is in flight or began a moment ago."""
        return self.in_flight > 0 or time.monotonic() - self._began < ACTIVE_S

    async def next_landing(self, at_most: float) -> None:
        """While submits come, until the next insert lands (at most ``at_most`` seconds);
        else at once."""
        if self.coming():
            self._landed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._landed.wait(), at_most)

    def next_landing_from_thread(self, at_most: float) -> None:
        """``next_landing``, blocking the calling thread (not the event loop's)."""
        if self.coming():
            self._landed_for_threads.clear()
            self._landed_for_threads.wait(at_most)
