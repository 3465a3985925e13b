"""``UnrecordedRuns``: runs that Redis holds and whose MongoDB document never landed,
recorded whole from Redis.

A submit queues its runs in Redis and inserts their documents in MongoDB side by side
(``runs.py``), so a replica killed between the two leaves a run that runs, or has run, with
no record; so does one whose insert failed after Redis took the run (the run is withdrawn,
but its first steps may have started). The history would never list such a run, and a Redis
flush would lose it. So the pipeline that queues a submit's runs first writes their plans
(``keys.plan``: run id -> its ``submit_run.lua`` arguments) under an index entry
(``keys.UNRECORDED``: the submit's first run id, by when it was submitted;
``queue_records.index_commands``): one entry and one hash per submit call, however many
runs it has. The replica whose insert landed forgets both within a second
(``forget_recorded``). An entry still there ``after_s`` after its submit is checked against
MongoDB by one replica at a time (``record``): each of its runs with no document is
inserted whole from Redis — its state, steps and labels as Redis has them, and its plan, so
that a Redis flush later rebuilds it as any other run. ``after_s`` (30 s) is above MongoDB's
operation timeout, so a live submit's insert has landed or failed by then; one that lands
later finds the document marked as recorded from Redis and takes it as its own
(``RunStore.insert_run``)."""

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
        self._landed: set[str] = set()  # index keys whose inserts landed, not yet forgotten
        self._next_check = 0.0  # time.monotonic()
        self.recorded = 0  # runs recorded from Redis by this replica

    async def forget_recorded(self) -> None:
        """Drop the index entries (and their plans) of the submits whose inserts landed."""
        self._landed |= self.store.take_inserted()
        await self._forget(sorted(self._landed))
        self._landed.clear()

    async def record(self, now_ms: int) -> list[str]:
        """Every ``check_every_s``, on one replica at a time: insert, whole from Redis, the
        runs of the entries indexed since before ``now_ms - after_s`` that have no
        document, and forget those entries. Returns the recorded runs that have ended."""
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
            entries = [k.decode() for k in found]
            if not entries:
                return ended
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in entries:
                    pipe.hgetall(keys.plan(key))
                saved: list[dict[bytes, bytes]] = await pipe.execute()
            plans = {r.decode(): text for plan in saved for r, text in plan.items()}
            missing = await self.store.missing(sorted(plans)) if plans else set()
            if missing:
                ended += await self._insert({r: plans[r] for r in sorted(missing)})
            await self._forget(entries)
            if len(entries) < BATCH:
                return ended

    async def _insert(self, plans: dict[str, bytes]) -> list[str]:
        runs = await self.reader.read_runs(list(plans))
        ended = []
        for run_id, saved in plans.items():
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

    async def _forget(self, entries: list[str]) -> None:
        for first in range(0, len(entries), BATCH):
            chunk = entries[first : first + BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.UNRECORDED, *chunk)
                pipe.unlink(*[keys.plan(k) for k in chunk])
                await pipe.execute()


def plan_of(saved: bytes) -> dict[str, Any]:
    """The plan MongoDB keeps (``stored_plans.plan_doc``), from the ``submit_run.lua``
    arguments kept in Redis (run fields and steps, JSON, joined by a newline): a taken-over
    step's fields already hold what it shows."""
    run_fields, steps_text = saved.split(b"\n", 1)
    steps = json.loads(steps_text)
    plan: dict[str, Any] = {
        "run_fields": json.loads(run_fields),
        "steps": [
            {"step_id": s["step_id"], "deps": s["deps"], "dependents": s["dependents"],
             "fields": s["fields"]}
            for s in steps
        ],
    }  # fmt: skip
    taken = {s["step_id"]: {"output": s["output"], "shown": {}} for s in steps if "output" in s}
    if taken:
        plan["taken_over"] = taken
    return plan
