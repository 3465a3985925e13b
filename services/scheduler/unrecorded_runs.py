"""``UnrecordedRuns``: runs that Redis holds and whose MongoDB document never landed,
recorded whole from Redis.

A submit queues its runs in Redis and inserts their documents in MongoDB side by side
(``runs.py``), so a replica killed between the two leaves a run that runs, or has run, with
no record; so does one whose insert failed after Redis took the run (the run is withdrawn,
but its first steps may have started), and a batch whose second Redis pipeline went in
before its replica died. The history would never list such a run, and a Redis flush would
lose it. So ``submit_run.lua`` indexes each new run (``keys.UNRECORDED``, by when it was
submitted) beside the plan it was submitted with (``keys.plan``), and both are forgotten
once its document is known to be written: the replica whose insert landed forgets them
within a second, a thousand runs a round trip (``forget_recorded``). A run still indexed
``after_s`` after its submit is checked against MongoDB, by one replica at a time
(``record``): with no document, it is inserted whole from Redis — its state, steps and
labels as Redis has them, and its plan, so that a Redis flush later rebuilds it as any other
run. ``after_s`` (30 s) is above MongoDB's operation timeout, so a live submit's insert has
landed or failed by then; one that lands later finds the document marked as recorded from
Redis and takes it as its own (``RunStore.insert_run``)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from services.scheduler import keys
from services.scheduler.models import TERMINAL, Run
from services.scheduler.run_reader import RunReader
from services.scheduler.run_store import RunStore

log = logging.getLogger(__name__)
BATCH = 1000  # runs per round trip


class UnrecordedRuns:
    """Forgets the new runs whose documents were written; records those never written."""

    def __init__(
        self,
        redis: aioredis.Redis,
        reader: RunReader,
        store: RunStore,
        after_s: float = 30.0,
        check_every_s: float = 5.0,
    ) -> None:
        self.redis = redis
        self.reader = reader
        self.store = store
        self.after_ms = int(after_s * 1000)
        self.check_every_s = check_every_s
        self._written: set[str] = set()  # inserted, not yet forgotten in Redis
        self._next_check = 0.0  # time.monotonic()
        self.recorded = 0  # runs recorded from Redis by this replica

    async def forget_recorded(self) -> None:
        """Drop from the index (and their plans) the runs whose documents were written."""
        self._written |= self.store.take_inserted()
        await self._forget(sorted(self._written))
        self._written.clear()

    async def record(self, now_ms: int) -> list[str]:
        """Every ``check_every_s``, on one replica at a time: insert, whole from Redis, the
        runs indexed since before ``now_ms - after_s`` that have no document, and forget
        every run checked. Returns the recorded runs that have ended."""
        if time.monotonic() < self._next_check:
            return []
        self._next_check = time.monotonic() + self.check_every_s
        token = uuid.uuid4().hex  # one round at a time over the replicas; a minute at most
        if not await self.redis.set(keys.UNRECORDED_CHECK, token, nx=True, px=60_000):
            return []
        try:
            return await self._record(now_ms)
        finally:
            if await self.redis.get(keys.UNRECORDED_CHECK) == token.encode():
                await self.redis.delete(keys.UNRECORDED_CHECK)

    async def _record(self, now_ms: int) -> list[str]:
        ended: list[str] = []
        while True:
            found: Any = await self.redis.zrangebyscore(
                keys.UNRECORDED, "-inf", now_ms - self.after_ms, start=0, num=BATCH
            )
            run_ids = [r.decode() for r in found]
            if not run_ids:
                return ended
            missing = await self.store.missing(run_ids)
            if missing:
                ended += await self._insert(sorted(missing))
            await self._forget(run_ids)
            if len(run_ids) < BATCH:
                return ended

    async def _insert(self, run_ids: list[str]) -> list[str]:
        runs = await self.reader.read_runs(run_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(keys.plan(run_id))
            plans = await pipe.execute()
        ended = []
        for run_id, saved in zip(run_ids, plans, strict=True):
            run_hash, steps, outputs = runs[run_id]
            if not run_hash:
                log.error("run %s has no MongoDB document and Redis no longer has it", run_id)
                continue
            run = Run.from_redis(run_hash, steps, outputs)
            if await self.store.insert_run(run, plan_of(saved), from_redis=True):
                log.warning("run %s had no MongoDB document: recorded from Redis", run_id)
                self.recorded += 1
                if run.state in TERMINAL:
                    ended.append(run_id)
        return ended

    async def _forget(self, run_ids: list[str]) -> None:
        for first in range(0, len(run_ids), BATCH):
            chunk = run_ids[first : first + BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.UNRECORDED, *chunk)
                pipe.unlink(*[keys.plan(r) for r in chunk])
                await pipe.execute()


def plan_of(saved: dict[bytes, bytes]) -> dict[str, Any]:
    """The plan MongoDB keeps (``stored_plans.plan_doc``), from the one ``submit_run.lua``
    kept: a taken-over step's fields already hold what it shows. {} when none was kept."""
    if not saved:
        return {}
    steps = json.loads(saved[b"steps"])
    plan: dict[str, Any] = {
        "run_fields": json.loads(saved[b"run"]),
        "steps": [
            {
                "step_id": s["step_id"],
                "deps": s["deps"],
                "dependents": s["dependents"],
                "fields": s["fields"],
            }
            for s in steps
        ],
    }
    taken = {s["step_id"]: {"output": s["output"], "shown": {}} for s in steps if "output" in s}
    if taken:
        plan["taken_over"] = taken
    return plan
