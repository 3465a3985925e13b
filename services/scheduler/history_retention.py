"""``HistoryRetention``: finished runs leave MongoDB after WTM_HISTORY_RETENTION_DAYS.

Every run and every step attempt is recorded in MongoDB for good unless something removes
them: on a shared installation the history grows with every team's work until the
database's volume is full. So, as Temporal deletes a closed workflow's history after its
namespace's retention period and Celery expires results (``result_expires``), a finished
run created more than the retention ago is deleted with its step records. A namespace may
have a retention of its own (WTM_NAMESPACE_RETENTION_DAYS, ``team-a=7,team-b=0``; 0: for
good). Request ids go once every namespace's retention has passed since they were claimed
(never while any namespace keeps runs for good): a request id must not go before its run,
or a retried submit would make a second one. Runs not finished are kept whatever their age.

Each replica prunes a minute after it starts and then every hour, off the reaper's tick (a
task of its own: a long pass must not hold up lease expiry), in batches of ``batch`` runs —
their step records first, then the runs, so a pass cut short leaves no step record without
its run that a later pass would not find — and at most ``max_batches`` per pass; a pass
that stopped there goes again a minute later. Replicas pruning at once delete the same
documents, which is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Meter
from pymongo.asynchronous.database import AsyncDatabase

from services.common.config import namespace_values, namespace_values_problem
from services.common.stopping import cancel_and_wait
from services.scheduler.artifact_sweep import ArtifactSweep
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.models import TERMINAL

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400


def retention_problem(entries: list[str]) -> str | None:
    """Why WTM_NAMESPACE_RETENTION_DAYS is not a list of NAMESPACE=DAYS, or None."""
    return namespace_values_problem(
        entries,
        "days",
        float,
        "a number (0: for good)",
        lambda d: None if d >= 0 else "must be 0 or more (0: for good)",
    )


def parse_retention(entries: list[str]) -> dict[str, float]:
    """``["team-a=7", ...]`` as {namespace: days} (checked by ``retention_problem``)."""
    return namespace_values(entries, float)


class HistoryRetention:
    def __init__(
        self,
        db: AsyncDatabase,
        keep_days: float,
        per_namespace: Mapping[str, float] | None = None,
        clock: Clock = SYSTEM,
        batch: int = 500,
        max_batches: int = 20,
        first_after: float = 60.0,
        every: float = 3600.0,
        sweep: ArtifactSweep | None = None,
        meter: Meter | None = None,
    ) -> None:
        self._runs = db["runs"]
        self._steps = db["step_runs"]
        self._requests = db["run_requests"]
        self.keep_days = keep_days
        # Live when given (``NamespaceSettings.retentions``: UpdateNamespace changes it).
        self.per_namespace = per_namespace if per_namespace is not None else {}
        self.clock = clock
        self.batch = batch
        self.max_batches = max_batches
        self.every = every
        self._due = time.monotonic() + first_after
        self._pass: asyncio.Task[int] | None = None
        self.sweep = sweep  # the artifacts no kept run names, after a pass (once a day)
        self.deleted = (meter or metrics.get_meter("wtm.scheduler")).create_counter(
            "wtm_history_runs_deleted", description="finished runs deleted past their retention"
        )

    async def tick(self) -> None:
        """Start a pass when one is due (the reaper calls this each second)."""
        kept = [self.keep_days, *self.per_namespace.values()]
        if not any(kept) or time.monotonic() < self._due:
            return
        if self._pass is None or self._pass.done():
            self._due = time.monotonic() + self.every
            self._pass = asyncio.create_task(self._logged_pass())

    async def close(self) -> None:
        """Stop a pass under way (what it deleted stays deleted; the rest waits for the next)."""
        if self._pass is not None and not self._pass.done():
            await cancel_and_wait([self._pass])

    async def _logged_pass(self) -> int:
        try:
            deleted = await self.prune()
        except Exception:
            log.exception("history retention: the pass failed (the next one tries again)")
            return 0
        if deleted:
            log.info("history retention: deleted %d finished runs and their steps", deleted)
        if self.sweep is not None:
            try:
                await self.sweep.maybe_sweep(self.keep_days, self.per_namespace)
            except Exception:
                log.exception("artifact sweep: the pass failed (the next hour's tries again)")
        return deleted

    def _cutoff_ms(self, days: float) -> int:
        return self.clock.now_ms() - int(days * DAY_SECONDS * 1000)

    def _past_retention(self) -> list[dict[str, Any]]:
        """A query per retention: each named namespace's, then everyone else's."""
        finished = {"state": {"$in": sorted(TERMINAL)}}
        queries = [
            {"namespace": ns, "created_ms": {"$lt": self._cutoff_ms(days)}, **finished}
            for ns, days in sorted(self.per_namespace.items())
            if days
        ]
        if self.keep_days:
            others = (
                {"namespace": {"$nin": sorted(self.per_namespace)}} if self.per_namespace else {}
            )
            queries.append(
                {**others, "created_ms": {"$lt": self._cutoff_ms(self.keep_days)}, **finished}
            )
        return queries

    async def prune(self) -> int:
        """Delete what is past its retention; the number of runs deleted."""
        deleted, batches = 0, 0
        for query in self._past_retention():
            while batches < self.max_batches:
                batches += 1
                found = self._runs.find(query, {"_id": 1}).limit(self.batch)
                run_ids = [doc["_id"] async for doc in found]
                if not run_ids:
                    break
                await self._steps.delete_many({"run_id": {"$in": run_ids}})
                done = await self._runs.delete_many({"_id": {"$in": run_ids}})
                deleted += done.deleted_count
                self.deleted.add(done.deleted_count)
        if batches >= self.max_batches:  # more may be left: go again soon
            self._due = min(self._due, time.monotonic() + 60.0)
        kept = [self.keep_days, *self.per_namespace.values()]
        if all(kept):  # request ids go once every namespace's runs of that age have gone
            cutoff = datetime.fromtimestamp(self._cutoff_ms(max(kept)) / 1000, UTC)
            await self._requests.delete_many({"created_at": {"$lt": cutoff}})
        return deleted
