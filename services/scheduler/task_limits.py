"""``TaskLimits``: an operator's rate and concurrency limits for a task in a namespace, over
its ``task.json``'s — what Celery's operators do with ``celery control rate_limit`` when a
partner API starts refusing calls, without registering a new version.

Each is a document of ``task_limits`` (``_id`` "<namespace>/<task_id>"; it outlives restarts
and a Redis flush) with the fields the operator set: ``rate_limit`` ("N/s|m|h", "" for none),
``rate_burst`` (starts at once, 1 to 10,000) and ``concurrency_limit`` (0 for none); a field
not there is the task's own. Every replica reads them each second (the reaper, as ``Pauses``)
and writes them to Redis (``wtm:task-limits``: "rate:<key>" → ms between two starts,
"burst:<key>" → starts at once, "conc:<key>" → places), where
``dispatch.lua`` looks up the task of every step it pops — a step queued before the change
as well — so a change holds within about a second over the whole fleet, backlog included.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from pymongo.asynchronous.collection import AsyncCollection

from common import rate_limits
from common.errors import FailedPrecondition, InvalidArgument
from services.common import auth
from services.common.paging import page_of, page_size_of
from services.scheduler import keys
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.task_catalog import TaskCatalog

RATE, BURST, CONCURRENCY = "rate_limit", "rate_burst", "concurrency_limit"
FIELDS = (RATE, BURST, CONCURRENCY)
PAGES = (1000, 1000)  # ListTaskLimits: default and largest page


@dataclass(frozen=True)
class TaskLimit:
    """What an operator set for a task in a namespace (None: the task's own)."""

    namespace: str
    task_id: str
    rate_limit: str | None  # "": no limit
    concurrency_limit: int | None  # 0: no limit
    set_by: str  # the key's id
    set_ms: int
    rate_burst: int | None = None  # starts at once under the rate limit (1: spaced)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.task_id}"

    def redis_fields(self) -> dict[str, str]:
        """Its entries in ``wtm:task-limits`` (see the module's doc)."""
        found = {}
        if self.rate_limit is not None:
            found[f"rate:{self.key}"] = repr(rate_limits.interval_ms(self.rate_limit))
        if self.rate_burst is not None:
            found[f"burst:{self.key}"] = str(self.rate_burst)
        if self.concurrency_limit is not None:
            found[f"conc:{self.key}"] = str(self.concurrency_limit)
        return found


def _of(doc: dict[str, object]) -> TaskLimit:
    namespace, _, task_id = str(doc["_id"]).partition("/")
    conc, burst = doc.get(CONCURRENCY), doc.get(BURST)
    return TaskLimit(
        namespace,
        task_id,
        doc.get(RATE) if isinstance(doc.get(RATE), str) else None,  # type: ignore[arg-type]
        int(conc) if isinstance(conc, int) else None,
        str(doc.get("set_by", "")),
        int(doc.get("ms", 0)),  # type: ignore[call-overload]
        int(burst) if isinstance(burst, int) else None,
    )


def checked_change(
    rate_limit: str | None,
    concurrency_limit: int | None,
    reset: list[str],
    rate_burst: int | None = None,
) -> dict[str, object]:
    """What an operator's call sets (None: left as it is; "" or 0: no limit), checked: an
    InvalidArgument names the field that is wrong, set and reset at once, or unknown."""
    unknown = sorted(set(reset) - set(FIELDS))
    if unknown:
        raise InvalidArgument(
            f"{unknown[0]!r} is not one of {', '.join(FIELDS)}", field="reset_fields"
        )
    given = {RATE: rate_limit, BURST: rate_burst, CONCURRENCY: concurrency_limit}
    for name, value in given.items():
        if value is not None and name in reset:
            raise InvalidArgument(f"is both set and reset: {name}", field=name)
    if all(v is None for v in given.values()) and not reset:
        raise InvalidArgument(
            f"nothing to change: set {RATE}, {BURST} or {CONCURRENCY}, or reset one", field=RATE
        )
    doc: dict[str, object] = {}
    if rate_burst is not None:
        try:
            doc[BURST] = rate_limits.burst(rate_burst)
        except ValueError as exc:
            raise InvalidArgument(str(exc), field=BURST) from None
    if rate_limit:
        try:
            doc[RATE] = rate_limits.normalized(rate_limit)
        except ValueError as exc:
            raise InvalidArgument(f"{exc} (or empty: no limit)", field=RATE) from None
    elif rate_limit is not None:
        doc[RATE] = ""
    if concurrency_limit is not None:
        if not 0 <= concurrency_limit <= rate_limits.MAX_CONCURRENCY:
            raise InvalidArgument(
                f"must be from 0 (no limit) to {rate_limits.MAX_CONCURRENCY}", field=CONCURRENCY
            )
        doc[CONCURRENCY] = concurrency_limit
    return doc


class TaskLimits:
    """The operators' task limits, in one collection, published to Redis for the scripts."""

    def __init__(
        self,
        collection: AsyncCollection,
        redis: aioredis.Redis,
        catalog: TaskCatalog,
        clock: Clock = SYSTEM,
    ) -> None:
        self._c = collection
        self.redis = redis
        self.catalog = catalog
        self.clock = clock
        self.limits: dict[str, TaskLimit] = {}  # "<namespace>/<task_id>" -> its limit

    async def refresh(self) -> None:
        """Read what every replica set, and write it to Redis (again: Redis may have been
        flushed; in one transaction, so a script never sees it half written)."""
        self.limits = {d["_id"]: _of(d) async for d in self._c.find({})}
        fields = {k: v for limit in self.limits.values() for k, v in limit.redis_fields().items()}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.TASK_LIMITS)
            if fields:
                pipe.hset(keys.TASK_LIMITS, mapping=fields)  # type: ignore[arg-type]
            await pipe.execute()

    def page(self, namespace: str, page_size: int, page_token: str) -> tuple[list[TaskLimit], str]:
        """A page of the limits set in ``namespace``, by task id, and the next page's token."""
        found = [t for t in self.limits.values() if t.namespace == namespace]
        size = page_size_of(page_size, *PAGES)
        return page_of(found, lambda t: [t.task_id], (str,), size, page_token)

    async def set(
        self,
        namespace: str,
        task_id: str,
        rate_limit: str | None,
        concurrency_limit: int | None,
        reset: list[str],
        by: auth.Principal,
        rate_burst: int | None = None,
    ) -> TaskLimit | None:
        """Set some of a task's limits, or return them to its task.json's (``reset``); the
        limit as it now is, or None when nothing of an operator's is left."""
        doc = checked_change(rate_limit, concurrency_limit, reset, rate_burst)
        task = await self.catalog.resolve(namespace, task_id, field="task_id")
        if task.batching[0] and doc:
            raise FailedPrecondition(
                f"{task_id} batches: its steps are leased as one call, which a limit cannot count",
                field="task_id",
            )
        key = f"{namespace}/{task_id}"
        doc |= {"set_by": by.key_id or by.name, "ms": self.clock.now_ms()}
        change: dict[str, object] = {"$set": doc}
        if reset:
            change["$unset"] = {name: "" for name in reset}
        await self._c.update_one({"_id": key}, change, upsert=True)
        found = await self._c.find_one({"_id": key})
        if found is not None and not any(name in found for name in FIELDS):
            await self._c.delete_one({"_id": key})
            found = None
        await self.refresh()
        return None if found is None else _of(found)
