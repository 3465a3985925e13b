"""``RestEnds``: an operator ends an executor's rest before it runs out (ResumeExecutor, ``wtm
executor resume``, on a resting executor; ``services/executor/slot_faults.py`` says why an
executor rests).

The rest is the executor's own, in its memory, so ending it is a message down its stream
(``EndRest``), sent by the replica that holds the stream. The replica that takes the call
sends it at once when the stream is its own. Otherwise it leaves the request in Redis
(``keys.REST_ENDS``: executor id -> when and by whom), and the holding replica's reaper
sends it and takes it away; the reaper looks each second while one of its executors rests,
and not at all otherwise, so this costs nothing while no executor rests. A request not
taken within ``REQUEST_SECONDS`` (the executor left, its replica is gone), or made before the
rest it would end began (that rest ran out first), is dropped unsent: it cannot end a later
rest. The requests of executors that never came back to a replica (no reaper takes them) are
dropped by the next request left, so the hash holds no more than the last
``REQUEST_SECONDS`` of them. The executor answers with a heartbeat that says it rests no
more, and the lease rounds ask it again (``Intake.heartbeat``).

Should its steps fail in it again before one ends otherwise, its next rest is twice as long,
as after a rest that ran out: an ended rest does not reset the back-off. An executor too old
to take ``EndRest`` (its hello has no ``ends_rests``) rests until its rest runs out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from services.scheduler import keys
from services.scheduler.clock import SYSTEM, Clock

if TYPE_CHECKING:
    from services.scheduler.fleet import Fleet

REQUEST_SECONDS = 30.0  # a request for another replica's executor is sent within this, or not


@dataclass(frozen=True)
class EndRest:
    """An executor's rest is over: it takes work again now."""

    ended_by: str  # the key's id


class RestEnds:
    """Ends the rests of this replica's executors, and asks other replicas to end theirs."""

    def __init__(self, client: aioredis.Redis, fleet: Fleet, clock: Clock = SYSTEM) -> None:
        self.redis = client
        self.fleet = fleet
        self.clock = clock

    async def end(self, record: Mapping[str, Any], ended_by: str) -> bool:
        """End the rest of the executor ``record`` describes (its fleet record, as
        ``ListExecutors`` reads it); False when it is not resting or cannot be told."""
        resting = float(record.get("resting_until") or 0) > self.clock.time()
        if not resting or not record.get("ends_rests") or record.get("state") == "LOST":
            return False
        executor_id = str(record["executor_id"])
        session = self.fleet.sessions.get(executor_id)
        if session is not None:
            session.outbox.put_nowait(EndRest(ended_by))
            return True
        now_ms = self.clock.now_ms()
        asked = json.dumps({"ms": now_ms, "by": ended_by})

        async def leave(pipe: Pipeline) -> None:  # again if another request lands meanwhile
            stale = [
                other
                for other, raw in (await pipe.hgetall(keys.REST_ENDS)).items()
                if now_ms - int(json.loads(raw)["ms"]) > REQUEST_SECONDS * 1000
            ]
            pipe.multi()
            if stale:  # left for executors no replica holds any more: no one will take them
                pipe.hdel(keys.REST_ENDS, *stale)
            pipe.hset(keys.REST_ENDS, executor_id, asked)

        await self.redis.transaction(leave, keys.REST_ENDS)
        return True

    async def tick(self) -> None:
        """Send the requests other replicas left for this replica's resting executors (each
        second, the reaper)."""
        now = self.clock.time()
        resting = [s for s in self.fleet.sessions.values() if s.resting_until > now]
        if not resting:
            return
        found = await self.redis.hmget(keys.REST_ENDS, [s.executor_id for s in resting])
        taken = []
        for session, raw in zip(resting, found, strict=True):
            if raw is None:
                continue
            taken.append(session.executor_id)
            asked = json.loads(raw)
            at = int(asked["ms"]) / 1000
            if session.rest_began <= at and now - at <= REQUEST_SECONDS:  # for this rest
                session.outbox.put_nowait(EndRest(str(asked.get("by", ""))))
        if taken:
            await self.redis.hdel(keys.REST_ENDS, *taken)
