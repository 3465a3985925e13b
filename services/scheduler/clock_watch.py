"""``ClockWatch``: how far this replica's clock is from Redis's, measured once a second.

Lease deadlines, retry due times and run timestamps are written by each scheduler replica
from its own wall clock (``Clock``), and any replica's reaper expires what any other leased.
So replicas must agree on the time. Executors stop a step whose renewals are no longer
acknowledged at the lease less a margin (a fifth of it: 6 s of the default 30), measured on
their own clocks; a replica whose clock runs ahead of the one that renewed a lease by more
than that margin can expire it, and start the step elsewhere, before a silent executor's
fence has stopped it — and by more than a lease less a heartbeat (25 s), even while the
executor's renewals are acknowledged. Either way a step would run twice at once. (Celery's
workers warn of drift between them for the same kind of reason.) Redis's clock is the one
every replica can read: each compares its own with it (``TIME``, halfway through the round
trip), reports the offset (``wtm_scheduler_clock_offset_seconds``, an alert past a second)
and logs a warning past WARN_SECONDS, once a minute. It does not correct its clock by it: a
Redis failover to a host with another clock would move every replica's time at once.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis

from services.scheduler.clock import SYSTEM, Clock

log = logging.getLogger(__name__)

WARN_SECONDS = 1.0
WARN_EVERY_SECONDS = 60.0


class ClockWatch:
    def __init__(
        self, redis: aioredis.Redis, clock: Clock = SYSTEM, warn_seconds: float = WARN_SECONDS
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.warn_seconds = warn_seconds
        self.offset: float | None = None  # this clock minus Redis's, seconds (None: unread)
        self._warned_at = -WARN_EVERY_SECONDS

    async def measure(self) -> float:
        """This replica's clock minus Redis's, in seconds (warned of past ``warn_seconds``)."""
        before = self.clock.time()
        seconds, micros = await self.redis.time()
        after = self.clock.time()
        self.offset = (before + after) / 2 - (seconds + micros / 1e6)
        now = time.monotonic()
        if abs(self.offset) > self.warn_seconds and now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "this host's clock is %.1f s %s Redis's: scheduler replicas whose clocks "
                "differ by more than a fifth of a lease can expire each other's leases early, "
                "and a step could run twice at once; keep the hosts' clocks in sync (NTP)",
                abs(self.offset),
                "ahead of" if self.offset > 0 else "behind",
            )
        return self.offset
