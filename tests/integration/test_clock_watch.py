"""ClockWatch against the session's valkey, as the schedulers' ACL user: a replica's clock
is compared with Redis's, and one that has drifted is warned of."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from services.localstack import Cluster
from services.scheduler.clock_watch import ClockWatch


class DriftedClock:
    def __init__(self, drift: float) -> None:
        self.drift = drift

    def time(self) -> float:
        return time.time() + self.drift

    def now_ms(self) -> int:
        return int(self.time() * 1000)


def test_a_replicas_clock_is_compared_with_redis_and_a_drift_is_warned_of(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    assert cluster.endpoints is not None

    async def measure(drifts: list[float]) -> list[float]:
        client = aioredis.Redis.from_url(cluster.endpoints.redis_url)  # type: ignore[union-attr]
        try:
            found = []
            for drift in drifts:
                watch = ClockWatch(client, DriftedClock(drift))
                found += [await watch.measure(), await watch.measure()]
            return found
        finally:
            await client.aclose()

    with caplog.at_level(logging.WARNING, "services.scheduler.clock_watch"):
        in_sync, _, ahead, _, behind, _ = asyncio.run(measure([0.0, 30.0, -4.5]))
    assert abs(in_sync) < 0.25  # valkey runs on this host: the same clock
    assert ahead == pytest.approx(30.0, abs=0.25) and behind == pytest.approx(-4.5, abs=0.25)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings  # once each, not at every tick
    assert warnings[0].startswith("this host's clock is 30.0 s ahead of Redis's")
    assert warnings[1].startswith("this host's clock is 4.5 s behind Redis's")
