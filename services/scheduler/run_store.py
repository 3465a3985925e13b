"""``RunStore``: run history in MongoDB — ``runs`` and one ``step_runs`` document per attempt.

A run is inserted durably before SubmitRun returns. Later changes (step attempts, the end of
a run) are written behind: queued in memory and flushed in one ``bulk_write`` per collection
every ``flush_interval`` seconds, so the scheduling path never waits on MongoDB per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError

from services.scheduler.models import Run, StepRun

log = logging.getLogger(__name__)


class RunStore:
    """Runs and step attempts in MongoDB, with write-behind for updates."""

    def __init__(self, uri: str, database: str, flush_interval: float = 0.05) -> None:
        self._client: AsyncMongoClient = AsyncMongoClient(
            uri, tz_aware=True, serverSelectionTimeoutMS=5000
        )
        db = self._client[database]
        self._runs = db["runs"]
        self._steps = db["step_runs"]
        self._flush_interval = flush_interval
        self._pending_runs: dict[str, dict[str, Any]] = {}
        self._pending_steps: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._runs.create_index([("run_id", ASCENDING)], unique=True)
        await self._steps.create_index(
            [("run_id", ASCENDING), ("step_id", ASCENDING), ("attempt", ASCENDING)], unique=True
        )
        self._task = asyncio.create_task(self._flusher())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        await self._client.close()

    async def insert_run(self, run: Run) -> bool:
        """Insert a new run durably; False when a run with that id already exists."""
        try:
            await self._runs.insert_one(run.to_doc())
        except DuplicateKeyError:
            return False
        return True

    async def find_by_request_id(self, request_id: str) -> str | None:
        doc = await self._runs.find_one({"request_id": request_id}, {"run_id": 1})
        return doc["run_id"] if doc else None

    async def get_run(self, run_id: str) -> Run | None:
        doc = await self._runs.find_one({"run_id": run_id})
        if doc is None:
            return None
        latest: dict[str, StepRun] = {}
        async for s in self._steps.find({"run_id": run_id}).sort("attempt", ASCENDING):
            latest[s["step_id"]] = StepRun.from_doc(s)
        return Run.from_doc(doc, list(latest.values()))

    def update_run_later(self, run_id: str, fields: dict[str, Any]) -> None:
        self._pending_runs.setdefault(run_id, {}).update(fields)
        self._wake.set()

    def record_step_later(self, run_id: str, step: StepRun) -> None:
        self._pending_steps[(run_id, step.step_id, step.attempt)] = step.to_doc(run_id)
        self._wake.set()

    async def flush(self) -> None:
        runs, self._pending_runs = self._pending_runs, {}
        steps, self._pending_steps = self._pending_steps, {}
        if steps:
            await self._steps.bulk_write(
                [
                    UpdateOne({"run_id": r, "step_id": s, "attempt": a}, {"$set": doc}, upsert=True)
                    for (r, s, a), doc in steps.items()
                ],
                ordered=False,
            )
        if runs:
            await self._runs.bulk_write(
                [UpdateOne({"run_id": r}, {"$set": f}) for r, f in runs.items()], ordered=False
            )

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception:  # keep the writer alive; the next flush retries new data
                log.exception("write-behind flush failed")
