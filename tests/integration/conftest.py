"""Fixtures shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from clients.sdk import Client
from services.localstack import Cluster
from services.scheduler.clock import FakeClock
from services.scheduler.run_queue import RunQueue
from tests.integration.ledger_fleet import LEDGER_TASK, PIPELINE, Fleet, register_probe
from tests.integration.lua_scenarios import Scenario


@pytest.fixture
def fleet(cluster: Cluster, client: Client, tmp_path: Path) -> Iterator[Fleet]:
    register_probe(client, tmp_path, "ledger", LEDGER_TASK, timeout=30, max_retries=0)
    client.register_pipelines(PIPELINE)
    f = Fleet(cluster, tmp_path)
    try:
        yield f
    finally:
        f.group.stop_all()


@pytest.fixture
def on_valkey(cluster: Cluster) -> Callable[[Scenario], Any]:
    """Runs a scenario against a ``RunQueue`` on database 1 of the session's valkey, emptied
    first: the Lua scripts' tests (``test_lua_*.py``)."""
    assert cluster.endpoints is not None
    # The queue as the schedulers' ACL user (its scripts touch only keys it may); the flush
    # as the admin.
    url = cluster.endpoints.redis_url.rsplit("/", 1)[0] + "/1"
    admin_url = cluster.endpoints.redis_admin_url.rsplit("/", 1)[0] + "/1"

    def run(scenario: Scenario) -> Any:
        async def main() -> Any:
            admin = aioredis.Redis.from_url(admin_url)
            await admin.flushdb()
            client = aioredis.Redis.from_url(url)
            queue = RunQueue(client, finished_ttl_s=60, clock=FakeClock())  # moved by hand
            queue.admin = admin  # type: ignore[attr-defined]  # what a scenario does as an operator
            try:
                return await scenario(queue)
            finally:
                await queue.close()
                await client.aclose()
                await admin.aclose()

        return asyncio.run(main())

    return run
