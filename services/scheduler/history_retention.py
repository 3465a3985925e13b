"""``HistoryRetention``: finished runs leave MongoDB after WTM_HISTORY_RETENTION_DAYS.

Every run and every step attempt is recorded in MongoDB for good unless something removes
them: on a shared installation the history grows with every team's work until the
database's volume is full. So, as Temporal deletes a closed workflow's history after its
namespace's retention period and Celery expires results (``result_expires``), a finished
run created more than the retention ago is deleted with its step records; so are request
ids claimed that long ago (a retried submit after that makes a new run). Runs not finished
are kept whatever their age. 0 keeps everything.

Each replica prunes a minute after it starts and then every hour, off the reaper's tick (a
task of its own: a long pass must not hold up lease expiry), in batches of ``batch`` runs —
their step records first, then the runs, so a pass cut short leaves no step record without
its run that a later pass would not find — and at most ``max_batches`` per pass; a pass
that stopped there goes again a minute later. Replicas pruning at once delete the same
documents, which is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase

from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.models import TERMINAL

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400


class HistoryRetention:
    def __init__(
        self,
        db: AsyncDatabase,
        keep_days: float,
        clock: Clock = SYSTEM,
        batch: int = 500,
        max_batches: int = 20,
        first_after: float = 60.0,
        every: float = 3600.0,
    ) -> None:
        self._runs = db["runs"]
        self._steps = db["step_runs"]
        self._requests = db["run_requests"]
        self.keep_seconds = keep_days * DAY_SECONDS
        self.clock = clock
        self.batch = batch
        self.max_batches = max_batches
        self.every = every
        self._due = time.monotonic() + first_after
        self._pass: asyncio.Task[int] | None = None

    async def tick(self) -> None:
        """Start a pass when one is due (the reaper calls this each second)."""
        if not self.keep_seconds or time.monotonic() < self._due:
            return
        if self._pass is None or self._pass.done():
            self._due = time.monotonic() + self.every
            self._pass = asyncio.create_task(self._logged_pass())

    async def close(self) -> None:
        """Stop a pass under way (what it deleted stays deleted; the rest waits for the next)."""
        if self._pass is not None and not self._pass.done():
            self._pass.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pass

    async def _logged_pass(self) -> int:
        try:
            deleted = await self.prune()
        except Exception:
            log.exception("history retention: the pass failed (the next one tries again)")
            return 0
        if deleted:
            log.info("history retention: deleted %d finished runs and their steps", deleted)
        return deleted

    async def prune(self) -> int:
        """Delete what is past the retention; the number of runs deleted."""
        cutoff_ms = self.clock.now_ms() - int(self.keep_seconds * 1000)
        old = {"created_ms": {"$lt": cutoff_ms}, "state": {"$in": sorted(TERMINAL)}}
        deleted = 0
        for _ in range(self.max_batches):
            found = self._runs.find(old, {"_id": 1}).limit(self.batch)
            run_ids = [doc["_id"] async for doc in found]
            if not run_ids:
                break
            await self._steps.delete_many({"run_id": {"$in": run_ids}})
            deleted += (await self._runs.delete_many({"_id": {"$in": run_ids}})).deleted_count
        else:  # more may be left: go again soon
            self._due = min(self._due, time.monotonic() + 60.0)
        cutoff = datetime.fromtimestamp(cutoff_ms / 1000, UTC)
        await self._requests.delete_many({"created_at": {"$lt": cutoff}})
        return deleted
