"""``RunReader``: runs as Redis holds them, read (never written): a run with its steps and
outputs, its events, the few facts a watch starts from, and the counts operators see (steps
held back, unfinished runs per namespace, steps waiting for signals)."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from services.common import auth
from services.scheduler import keys
from services.scheduler.queue_records import RunSnapshot, text_of


class RunReader:
    """Reads runs from Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def read_run(self, run_id: str) -> RunSnapshot:
        """The run hash, its step hashes in order, and its outputs; empty when not in Redis."""
        return (await self.read_runs([run_id]))[run_id]

    async def read_runs(self, run_ids: list[str]) -> dict[str, RunSnapshot]:
        """``read_run`` for many runs in two round trips."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(keys.run(run_id))
                pipe.hgetall(keys.outputs(run_id))
            first = await pipe.execute()
        runs = {rid: text_of(first[2 * i]) for i, rid in enumerate(run_ids)}
        outputs = {rid: text_of(first[2 * i + 1]) for i, rid in enumerate(run_ids)}
        wanted = [
            (rid, sid) for rid, h in runs.items() if h for sid in json.loads(h.get("steps", "[]"))
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid, sid in wanted:
                pipe.hgetall(keys.step(rid, sid))
            second = await pipe.execute()
        steps: dict[str, list[dict[str, str]]] = {rid: [] for rid in run_ids}
        for (rid, sid), h in zip(wanted, second, strict=True):
            steps[rid].append({"step_id": sid, **text_of(h)})
        return {
            rid: RunSnapshot(runs[rid], steps[rid], outputs[rid])
            if runs[rid]
            else RunSnapshot({}, [], {})
            for rid in run_ids
        }

    async def read_events(
        self, run_id: str, after: str, block_ms: int | None
    ) -> list[tuple[str, dict[str, str]]]:
        """Events of a run after ``after`` ("0" for all), waiting up to ``block_ms`` for one
        (None: not waiting)."""
        found: Any = await self.redis.xread({keys.events(run_id): after}, block=block_ms, count=200)
        return [
            (event_id.decode(), text_of(fields))
            for _stream, entries in found or []
            for event_id, fields in entries
        ]

    async def run_state(self, run_id: str) -> str:
        """The run's state as Redis holds it ("" when Redis no longer has the run)."""
        state: Any = await self.redis.hget(keys.run(run_id), "state")  # type: ignore[misc]
        return bytes(state).decode() if state else ""

    async def watch_facts(self, run_id: str) -> tuple[str | None, bool]:
        """What a watch starts from, in one round trip: the run's namespace as Redis holds
        it (None when Redis no longer has the run), and whether its events are there."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.run(run_id), ["state", "namespace"])
            pipe.exists(keys.events(run_id))
            (state, namespace), events = await pipe.execute()
        if not state:
            return None, bool(events)
        return (bytes(namespace).decode() if namespace else auth.DEFAULT_NAMESPACE), bool(events)

    async def events_exist(self, run_id: str) -> bool:
        return bool(await self.redis.exists(keys.events(run_id)))

    async def run_states(self, run_ids: list[str]) -> list[str]:
        """Each run's state as Redis holds it ("" when Redis does not have the run), in one
        round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hget(keys.run(run_id), "state")
            return [bytes(x).decode() if x else "" for x in await pipe.execute()]

    async def awaiting_signals(self) -> int:
        """How many steps wait for a signal now (``lib.lua``'s ``await_signal``)."""
        return int(await self.redis.zcard(keys.SIGNALS))

    async def runs_awaiting_signals(self, limit: int) -> set[str]:
        """The runs of the first ``limit`` steps (by when their waits end) that wait for a
        signal now."""
        members = await self.redis.zrange(keys.SIGNALS, 0, limit - 1)
        return {bytes(m).decode().rpartition(":")[0] for m in members}  # type: ignore[arg-type]

    async def delayed_count(self) -> int:
        """Steps held back from their queues, over every queue: waiting for a time (a retry's
        backoff, a delayed start, a rate limit: the delayed set) or for a place of their
        task's concurrency limit."""
        names = await self.redis.hkeys(keys.PLACE_LIMITS)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.DELAYED)
            for name in names:
                pipe.zcard(keys.place_waits(name.decode() if isinstance(name, bytes) else name))
            counts = await pipe.execute()
        return sum(int(n) for n in counts)

    async def unfinished_counts(self) -> dict[str, int]:
        """Runs queued or running, per namespace (kept by the scripts)."""
        found = text_of(await self.redis.hgetall(keys.UNFINISHED))
        return {namespace: int(n) for namespace, n in found.items()}
