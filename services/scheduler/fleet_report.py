"""``FleetReport``: what operators ask the scheduler about the installation rather than about
one run — the executors (ListExecutors), the queues with their waiting work (ListQueues), the
namespaces' use of the fleet (ListNamespaces) and whether this replica reaches its Redis and
MongoDB (CheckDependencies)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import InvalidArgument, NotFound, PermissionDenied
from services.common import auth
from services.common.dependencies import DependencyStatus, check
from services.common.paging import page_of, page_size_of
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.clock_watch import ClockWatch
from services.scheduler.fleet import FleetRecord
from services.scheduler.namespace_settings import NamespaceSettings
from services.scheduler.pauses import Pause, Pauses
from services.scheduler.queue_names import full_name, held_by, own_queues, serves, split
from services.scheduler.rest_ends import RestEnds
from services.scheduler.run_limits import RunLimits
from services.scheduler.run_queue import RunQueue
from services.scheduler.run_store import RunStore

_ORDER = {"CONNECTED": 0, "DRAINING": 1, "LOST": 2}
# Pages (default, maximum): an executor's record lists its packages and running steps (a few
# KiB), so 500 of them stay well under gRPC's 4 MiB; a queue or namespace is a few numbers.
EXECUTOR_PAGES = (100, 500)
REPORT_PAGES = (1000, 1000)


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    namespace: str
    depth: int  # steps waiting, ready to run
    oldest_age_seconds: float  # 0 when none waits
    executors: int  # connected, not draining or resting, taking from it
    free_slots: int  # over those executors
    pause: Pause | None = None  # set while it is paused


@dataclass(frozen=True)
class NamespaceStatus:
    namespace: str
    unfinished_runs: int  # queued or running
    run_limit: int  # 0: none
    weight: float  # in the turns new runs take (1 unless set)
    waiting_steps: int  # on its queues, ready to run
    history_retention_days: float  # 0: for good
    calls_per_second: float = 0.0  # to each replica; 0: no limit


def serves_namespace(executor: dict[str, Any], namespace: str) -> bool:
    return namespace == auth.ALL_NAMESPACES or bool(
        {namespace, auth.ALL_NAMESPACES} & set(executor.get("namespaces", ["*"]))
    )


class FleetReport:
    def __init__(
        self,
        queue: RunQueue,
        record: FleetRecord,
        store: RunStore,
        clock: Clock = SYSTEM,
        limits: RunLimits | None = None,
        settings: NamespaceSettings | None = None,
        clock_watch: ClockWatch | None = None,
        queue_pauses: Pauses | None = None,
        executor_pauses: Pauses | None = None,
        rest_ends: RestEnds | None = None,
    ) -> None:
        self.queue = queue
        self.record = record
        self.store = store
        self.clock = clock
        self.limits = limits or RunLimits()
        self.settings = settings or NamespaceSettings(store.db)
        self.clock_watch = clock_watch
        self.queue_pauses = queue_pauses
        self.executor_pauses = executor_pauses
        self.rest_ends = rest_ends

    async def executors(self, namespace: str = auth.ALL_NAMESPACES) -> list[dict[str, Any]]:
        """The fleet serving ``namespace``, as every replica recorded it: connected first,
        then by id."""
        found = [json.loads(v) for v in (await self.record.load()).values()]
        found = [e for e in found if serves_namespace(e, namespace)]
        if self.executor_pauses is not None and self.executor_pauses.paused:
            for e in found:
                e["pause"] = self.executor_pauses.paused.get(e["executor_id"])
        return sorted(found, key=_executor_key)

    async def executors_page(
        self, namespace: str, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        """A page of ``executors``, and the token of the next."""
        size = page_size_of(page_size, *EXECUTOR_PAGES)
        found = await self.executors(namespace)
        return page_of(found, _executor_key, (int, str), size, page_token)

    async def queues_page(
        self, namespace: str, page_size: int, page_token: str
    ) -> tuple[list[QueueStatus], int, str]:
        """A page of ``queues``, the retries waiting, and the token of the next page."""
        size = page_size_of(page_size, *REPORT_PAGES)
        found, delayed = await self.queues(namespace)
        page, token = page_of(found, lambda q: [q.queue], (str,), size, page_token)
        return page, delayed, token

    async def namespaces_page(
        self, namespace: str, page_size: int, page_token: str
    ) -> tuple[list[NamespaceStatus], str]:
        """A page of ``namespaces``, and the token of the next."""
        size = page_size_of(page_size, *REPORT_PAGES)
        found = await self.namespaces(namespace)
        return page_of(found, lambda n: [n.namespace], (str,), size, page_token)

    async def queues(self, namespace: str = auth.ALL_NAMESPACES) -> tuple[list[QueueStatus], int]:
        """The queues of ``namespace`` that have waiting work or a connected executor, by
        name, and the retries waiting out their backoff (over every namespace's queues)."""
        live = [e for e in await self.executors(namespace) if e["state"] == "CONNECTED"]
        now_ms = self.clock.now_ms()
        taking = [e for e in live if e.get("resting_until", 0) * 1000 <= now_ms]  # not resting
        names = await self.queue.refresh_queue_variants() | self.queue.plain_queues
        paused = self.queue_pauses.paused if self.queue_pauses is not None else {}
        names |= set(paused)
        for e in live:
            names.update(own_queues(e["queues"], e.get("namespaces", ["*"])))
        if namespace != auth.ALL_NAMESPACES:
            names = {q for q in names if split(q)[0] == namespace}
        stats = await self.queue.queue_stats(names)
        delayed = await self.queue.reader.delayed_count()
        found = []
        for name in sorted(names):
            depth, oldest = stats[name]
            serving = [
                e
                for e in taking
                if serves(name, e["queues"], e["labels"], e.get("namespaces", ["*"]))
            ]
            holder = held_by(name, paused)
            pause = paused[holder] if holder is not None else None
            if not depth and not serving and pause is None:
                continue
            found.append(
                QueueStatus(
                    queue=name,
                    namespace=split(name)[0],
                    depth=depth,
                    oldest_age_seconds=max(0.0, (now_ms - oldest) / 1000) if oldest else 0.0,
                    executors=len(serving),
                    free_slots=sum(max(0, e["slots"] - busy_slots(e)) for e in serving),
                    pause=pause,
                )
            )
        return found, delayed

    async def namespaces(self, namespace: str = auth.ALL_NAMESPACES) -> list[NamespaceStatus]:
        """``namespace`` — or, for every namespace, each that has runs, waiting steps, a
        limit or a weight — with its runs queued or running (counted now), its limit, its
        weight and its steps waiting, by name."""
        counts = await self.queue.reader.unfinished_counts()
        queues, _ = await self.queues(namespace)
        waiting: dict[str, int] = {}
        for q in queues:
            waiting[q.namespace] = waiting.get(q.namespace, 0) + q.depth
        if namespace != auth.ALL_NAMESPACES:
            names = {namespace}
        else:
            names = {n for n, c in counts.items() if c} | set(waiting) | self.settings.named()
        return [
            NamespaceStatus(
                namespace=name,
                unfinished_runs=counts.get(name, 0),
                run_limit=self.limits.limit(name),
                weight=self.settings.weight(name),
                waiting_steps=waiting.get(name, 0),
                history_retention_days=self.settings.retention_days(name),
                calls_per_second=self.settings.calls_per_second(name),
            )
            for name in sorted(names)
        ]

    async def update_namespace(
        self, values: Mapping[str, float], reset: list[str], by: auth.Principal
    ) -> NamespaceStatus:
        """UpdateNamespace: change the settings of the namespace ``by`` acts in; that
        namespace as it now is."""
        namespace = await self.settings.update(values, reset, by)
        [status] = await self.namespaces(namespace)
        return status

    async def pause_queue(self, queue: str, reason: str, by: auth.Principal) -> Pause:
        """PauseQueue: ``queue`` as ``by`` names it (``full_name``) leases nothing more."""
        assert self.queue_pauses is not None
        return await self.queue_pauses.pause(full_name(queue, by.scope), reason, by)

    async def resume_queue(self, queue: str, by: auth.Principal) -> bool:
        """ResumeQueue."""
        assert self.queue_pauses is not None
        return await self.queue_pauses.resume(full_name(queue, by.scope))

    async def pause_executor(self, executor_id: str, reason: str, by: auth.Principal) -> Pause:
        """PauseExecutor: the executor is given no new step (its running ones go on)."""
        assert self.executor_pauses is not None
        await self._may_pause(executor_id, by)
        return await self.executor_pauses.pause(executor_id, reason, by)

    async def resume_executor(self, executor_id: str, by: auth.Principal) -> tuple[bool, bool]:
        """ResumeExecutor: whether the executor was paused, and whether it was resting and
        is told to end its rest (``rest_ends.py``)."""
        assert self.executor_pauses is not None
        record = await self._may_pause(executor_id, by)
        resumed = await self.executor_pauses.resume(executor_id)
        if self.rest_ends is None:
            return resumed, False
        return resumed, await self.rest_ends.end(record, by.key_id or by.name)

    async def _may_pause(self, executor_id: str, by: auth.Principal) -> dict[str, Any]:
        """An executor in the fleet's record that ``by`` sees, serving only ``by``'s
        namespace unless ``by`` is a key of every namespace (it holds back others' work):
        its record."""
        if not executor_id:
            raise InvalidArgument("is required", field="executor_id")
        found = {e["executor_id"]: e for e in await self.executors(by.scope)}
        if executor_id not in found:
            raise NotFound(f"no executor {executor_id[:120]}", field="executor_id")
        served = set(found[executor_id].get("namespaces", [auth.ALL_NAMESPACES]))
        if by.namespace != auth.ALL_NAMESPACES and served != {by.scope}:
            raise PermissionDenied(
                f"executor {executor_id} serves other namespaces too ({', '.join(sorted(served))}):"
                " only a key of every namespace may hold it back",
                field="executor_id",
            )
        return found[executor_id]

    async def dependencies(self) -> list[DependencyStatus]:
        """Redis and MongoDB, each asked now."""

        async def redis() -> str:
            await self.queue.redis.ping()
            return "answered PING"

        async def mongodb() -> str:
            await self.store.ping()
            return "answered ping"

        found = list(await asyncio.gather(check("redis", redis), check("mongodb", mongodb)))
        if self.clock_watch is not None and self.clock_watch.offset is not None:
            found[0] = dataclasses.replace(found[0], clock_offset_seconds=self.clock_watch.offset)
        return found


def _executor_key(record: dict[str, Any]) -> list[Any]:
    """Connected first, then draining, then lost; by id within each."""
    return [_ORDER.get(record["state"], 3), record["executor_id"]]


def busy_slots(record: dict[str, Any]) -> int:
    """An executor record's slots taken (a record of an older replica: its steps in flight)."""
    return int(record.get("busy_slots", record["in_flight"]))
