"""``FleetReport``: what operators ask the scheduler about the installation rather than about
one run — the executors (ListExecutors), the queues with their waiting work (ListQueues) and
whether this replica reaches its Redis and MongoDB (CheckDependencies)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from services.common import auth
from services.common.dependencies import DependencyStatus, check
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.fleet import FleetRecord
from services.scheduler.queue_names import own_queues, serves, split
from services.scheduler.run_queue import RunQueue
from services.scheduler.run_store import RunStore

_ORDER = {"CONNECTED": 0, "DRAINING": 1, "LOST": 2}


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    namespace: str
    depth: int  # steps waiting, ready to run
    oldest_age_seconds: float  # 0 when none waits
    executors: int  # connected, not draining, taking from it
    free_slots: int  # over those executors


def serves_namespace(executor: dict[str, Any], namespace: str) -> bool:
    return namespace == auth.ALL_NAMESPACES or bool(
        {namespace, auth.ALL_NAMESPACES} & set(executor.get("namespaces", ["*"]))
    )


class FleetReport:
    def __init__(
        self, queue: RunQueue, record: FleetRecord, store: RunStore, clock: Clock = SYSTEM
    ) -> None:
        self.queue = queue
        self.record = record
        self.store = store
        self.clock = clock

    async def executors(self, namespace: str = auth.ALL_NAMESPACES) -> list[dict[str, Any]]:
        """The fleet serving ``namespace``, as every replica recorded it: connected first,
        then by id."""
        found = [json.loads(v) for v in (await self.record.load()).values()]
        found = [e for e in found if serves_namespace(e, namespace)]
        return sorted(found, key=lambda e: (_ORDER.get(e["state"], 3), e["executor_id"]))

    async def queues(self, namespace: str = auth.ALL_NAMESPACES) -> tuple[list[QueueStatus], int]:
        """The queues of ``namespace`` that have waiting work or a connected executor, by
        name, and the retries waiting out their backoff (over every namespace's queues)."""
        live = [e for e in await self.executors(namespace) if e["state"] == "CONNECTED"]
        names = await self.queue.refresh_queue_variants() | self.queue.plain_queues
        for e in live:
            names.update(own_queues(e["queues"], e.get("namespaces", ["*"])))
        if namespace != auth.ALL_NAMESPACES:
            names = {q for q in names if split(q)[0] == namespace}
        stats = await self.queue.queue_stats(names)
        delayed = await self.queue.delayed_count()
        now_ms = self.clock.now_ms()
        found = []
        for name in sorted(names):
            depth, oldest = stats[name]
            serving = [
                e
                for e in live
                if serves(name, e["queues"], e["labels"], e.get("namespaces", ["*"]))
            ]
            if not depth and not serving:
                continue
            found.append(
                QueueStatus(
                    queue=name,
                    namespace=split(name)[0],
                    depth=depth,
                    oldest_age_seconds=max(0.0, (now_ms - oldest) / 1000) if oldest else 0.0,
                    executors=len(serving),
                    free_slots=sum(max(0, e["slots"] - busy_slots(e)) for e in serving),
                )
            )
        return found, delayed

    async def dependencies(self) -> list[DependencyStatus]:
        """Redis and MongoDB, each asked now."""

        async def redis() -> str:
            await self.queue.redis.ping()
            return "answered PING"

        async def mongodb() -> str:
            await self.store.ping()
            return "answered ping"

        return list(await asyncio.gather(check("redis", redis), check("mongodb", mongodb)))


def busy_slots(record: dict[str, Any]) -> int:
    """An executor record's slots taken (a record of an older replica: its steps in flight)."""
    return int(record.get("busy_slots", record["in_flight"]))
