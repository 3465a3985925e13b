"""``StepNotes``: what a lease adds to its step's hash — lineage edges, span ids, the result
cache's key — written behind the step's assignment.

The assignment goes out at once; the notes follow in a Redis write of their own, and a
result for the step is recorded only once its notes are in (``written``), since recording it
reads them back (the attempt's record in the history, its span). A step's result comes back
a pickup, a ``process()`` and a stream hop later, by which time the write has long landed:
the lease no longer waits a Redis round trip for it. A write that fails (Redis out of reach)
is made again by the next result that needs it; notes whose lease has long expired are
dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.run_notes import RunNotes

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    write: asyncio.Future[None]
    fields: dict[str, str]
    until: float  # clock time after which no result can still need them


class StepNotes:
    def __init__(self, writes: RunNotes, keep_seconds: float, clock: Clock = SYSTEM) -> None:
        self.writes = writes
        self.keep_seconds = keep_seconds  # a lease period and more
        self.clock = clock
        self._pending: dict[str, _Pending] = {}  # step key -> its notes, written or not

    def write_behind(self, notes: dict[str, dict[str, str]]) -> None:
        """Start writing these steps' notes (step key -> fields); return at once."""
        now = self.clock.time()
        self._pending = {m: p for m, p in self._pending.items() if p.until > now}
        write = asyncio.ensure_future(self.writes.annotate(notes))
        until = now + self.keep_seconds
        for member, fields in notes.items():
            self._pending[member] = _Pending(write, fields, until)
        write.add_done_callback(lambda w: self._landed(w, notes))

    def _landed(self, write: asyncio.Future[None], notes: dict[str, dict[str, str]]) -> None:
        if write.cancelled() or write.exception() is not None:
            log.warning("writing %d steps' notes failed; a result writes them again", len(notes))
            return
        for member in notes:
            pending = self._pending.get(member)
            if pending is not None and pending.write is write:
                del self._pending[member]

    async def written(self, members: Iterable[str]) -> None:
        """Once these steps' notes are in Redis: waits for a write in flight and makes a
        failed one again (raising if Redis is still out of reach)."""
        if not self._pending:  # the common case: nothing in flight, every result at once
            return
        pending = {m: self._pending[m] for m in members if m in self._pending}
        if not pending:
            return
        await asyncio.wait({p.write for p in pending.values()})
        again = {m: p.fields for m, p in pending.items() if self._pending.get(m) is p}
        if again:
            await self.writes.annotate(again)
            for member in again:
                self._pending.pop(member, None)

    def __len__(self) -> int:
        return len(self._pending)
