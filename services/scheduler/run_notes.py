"""``RunNotes``: what is written about runs' steps without changing any state, so without
a script: notes on step hashes (lineage edges, span ids), progress events, and the lines a
step logs."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.scheduler import keys
from services.scheduler.clock import SYSTEM, Clock


class RunNotes:
    def __init__(
        self, client: aioredis.Redis, clock: Clock = SYSTEM, finished_ttl_s: int = 3600
    ) -> None:
        self.redis = client
        self.clock = clock
        self.finished_ttl_s = finished_ttl_s  # a step's log lines are kept as long as its run

    async def annotate(self, fields: dict[str, dict[str, str]]) -> None:
        """Set fields on step hashes (lineage edges, span ids): one write per dispatch round."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for member, values in fields.items():
                run_id, _, step_id = member.partition(":")
                pipe.hset(keys.step(run_id, step_id), mapping=values)  # type: ignore[arg-type]
            await pipe.execute()

    async def add_progress(
        self, run_id: str, step_id: str, attempt: int, fraction: float, message: str
    ) -> None:
        """Append a progress event to the run's stream (informational: no state changes)."""
        await self.redis.xadd(
            keys.events(run_id),
            {
                "step": step_id,
                "attempt": attempt,
                "state": "RUNNING",
                "msg": message,
                "progress": f"{fraction:.4f}",
                "t": self.clock.now_ms(),
                "kind": "PROGRESS",
            },
        )

    async def add_log(
        self, run_id: str, step_id: str, attempt: int, level: str, message: str
    ) -> None:
        """A line a running step logged: an event for watchers, and kept with the attempt."""
        line = f"{level} {message}"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                keys.events(run_id),
                {
                    "step": step_id,
                    "attempt": attempt,
                    "state": "RUNNING",
                    "msg": line,
                    "t": self.clock.now_ms(),
                    "kind": "LOG",
                },
            )
            pipe.rpush(keys.logs(run_id, step_id), line)
            pipe.ltrim(keys.logs(run_id, step_id), -200, -1)
            pipe.expire(keys.logs(run_id, step_id), self.finished_ttl_s)
            await pipe.execute()
