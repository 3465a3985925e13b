"""The wake channel's messages: "work was queued", from one scheduler process to the others.

A message is the sender's origin, then, when it knows them, the steps it queued per queue as
JSON: ``ORIGIN {"vision": 3}``. A replica that hears one asks only those queues' executors
(as many as there are steps); a bare origin (an older replica's) means "somewhere", and every
idle executor is asked. ``complete.lua`` writes the same form for the steps a result made
ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.scheduler import keys
from services.scheduler.queue_records import Leased

log = logging.getLogger(__name__)


def message(origin: str, queued: Counter[str] | None) -> str:
    return origin if not queued else f"{origin} {json.dumps(queued)}"


def parse(data: bytes | str) -> tuple[str, Counter[str] | None]:
    """(origin, steps per queue or None when it does not say)."""
    text = data.decode() if isinstance(data, bytes) else data
    origin, _, hint = text.partition(" ")
    try:
        counts = json.loads(hint) if hint else None
        return origin, Counter({str(q): int(n) for q, n in counts.items()}) if counts else None
    except (ValueError, TypeError, AttributeError):
        return origin, None  # garbled: ask everyone


def left_waiting(
    queued: Counter[str] | None, leases: Iterable[Iterable[Leased]]
) -> Counter[str] | None:
    """What of ``queued`` (steps per queue; None: not known where) the round trip that
    queued it did not also lease (``leases``: what it leased, per executor)."""
    if queued is None:
        return None
    return queued - Counter(leased.step.get("queue", "") for got in leases for leased in got)


class Announcer:
    """Tells the other replicas, on the wake channel, of the work this one queued and left
    waiting: after the round trip that queued it, and not at all when that round trip leased
    it all (their executors would find nothing, and this replica would read its own message
    back on the critical path of the run it just leased). A message is a hint: a replica
    that misses one (this one stopped before sending it, Redis was out) still leases the
    work within a second."""

    def __init__(self, client: aioredis.Redis, origin: str) -> None:
        self.client = client
        self.origin = origin
        self._sending: set[asyncio.Task[None]] = set()

    def left(self, queued: Counter[str] | None, leases: Iterable[Iterable[Leased]]) -> None:
        waiting = left_waiting(queued, leases)
        if waiting is not None and not waiting:
            return
        task = asyncio.create_task(self._send(message(self.origin, waiting)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, text: str) -> None:
        try:
            await self.client.publish(keys.WAKE_CHANNEL, text)
        except (RedisError, OSError) as exc:
            log.warning("wake message not sent (%s); other replicas find the work anyway", exc)

    async def close(self) -> None:
        await asyncio.gather(*self._sending, return_exceptions=True)
