"""What a round trip tells the other replicas (``wake.left_waiting``), and that a wake
message that cannot be sent costs nothing but a log line."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.localstack.processes import free_port
from services.scheduler import wake
from services.scheduler.queue_records import Leased


def lease(queue: str) -> Leased:
    return Leased(f"r:{queue}", "r", "s", 1, {"queue": queue}, "{}", {})


def test_only_what_the_round_trip_did_not_lease_is_left_waiting() -> None:
    queued = Counter({"q": 2, "vision": 1})
    assert wake.left_waiting(queued, [[lease("q")], [lease("q"), lease("vision")]]) == Counter()
    assert wake.left_waiting(queued, [[lease("q")]]) == Counter({"q": 1, "vision": 1})
    # Older work on the same queue taken instead of the new: still nothing new to announce.
    assert wake.left_waiting(Counter({"q": 1}), [[lease("q"), lease("q")]]) == Counter()
    assert wake.left_waiting(None, [[lease("q")]]) is None  # not known where: ask everyone


def test_a_wake_message_that_cannot_be_sent_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        nobody = free_port()  # a port no one listens on: the connection is refused
        client = aioredis.Redis(
            port=nobody, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        announcer = wake.Announcer(client, "origin1")
        announcer.left(Counter({"q": 1}), [])
        announcer.left(Counter({"q": 1}), [[lease("q")]])  # all leased: nothing to send
        await announcer.close()
        await client.aclose()

    with caplog.at_level(logging.WARNING, logger="services.scheduler.wake"):
        asyncio.run(scenario())
    assert [r.getMessage()[:22] for r in caplog.records] == ["wake message not sent "]
