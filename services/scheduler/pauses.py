"""``Pauses``: what an operator holds back for now — queues (PauseQueue) and executors
(PauseExecutor) — kept in MongoDB and read by every replica.

What Celery's operators do with ``cancel_consumer`` (a queue, on every worker) and Hatchet's
with a worker's pause, Kubernetes' with ``cordon``: nothing new is leased from a paused queue
or to a paused executor; runs are still accepted and their steps wait; steps already running
go on. Each pause is a document (``paused_queues`` by the queue's full name,
``paused_executors`` by the executor's id: it outlives restarts and a Redis flush), read by
every replica each second (the reaper, as ``NamespaceSettings`` are) and once before it
serves, so every replica honours it within about a second; the replica that took the call at
once. Lease rounds leave paused queues out of what they ask each executor for
(``Fleet.queues_of``) and paused executors out of who they ask (``AskedExecutors.to_ask``):
nothing changes in Redis or the Lua scripts, and nothing paused costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pymongo.asynchronous.collection import AsyncCollection

from common.errors import InvalidArgument
from services.common import auth
from services.scheduler.clock import SYSTEM, Clock

MAX_REASON = 500


@dataclass(frozen=True)
class Pause:
    """Who paused a queue or an executor (``name``), when (ms) and why."""

    name: str  # a queue's full name, or an executor's id
    reason: str
    paused_by: str  # the key's id
    paused_ms: int


class Pauses:
    """The pauses of one kind, in one collection; ``on_change`` is told the paused names
    whenever they change here."""

    def __init__(
        self,
        collection: AsyncCollection,
        on_change: Callable[[frozenset[str]], None] = lambda names: None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._c = collection
        self.on_change = on_change
        self.clock = clock
        self.paused: dict[str, Pause] = {}  # name -> its pause (live: others hold it)

    async def refresh(self) -> None:
        """Read the pauses every replica made (each second, the reaper)."""
        found = {
            d["_id"]: Pause(d["_id"], d.get("reason", ""), d.get("paused_by", ""), d["ms"])
            async for d in self._c.find({})
        }
        if found != self.paused:
            changed = set(found) != set(self.paused)
            self.paused.clear()  # in place
            self.paused.update(found)
            if changed:
                self.on_change(frozenset(found))

    async def pause(self, name: str, reason: str, by: auth.Principal) -> Pause:
        """Pause ``name`` (pausing it again changes its reason)."""
        if len(reason) > MAX_REASON:
            raise InvalidArgument(f"is over {MAX_REASON} characters", field="reason")
        pause = Pause(name, reason, by.key_id or by.name, self.clock.now_ms())
        doc = {"reason": pause.reason, "paused_by": pause.paused_by, "ms": pause.paused_ms}
        await self._c.update_one({"_id": name}, {"$set": doc}, upsert=True)
        await self.refresh()
        return pause

    async def resume(self, name: str) -> bool:
        """Hold ``name`` back no longer; False when it was not paused."""
        done = await self._c.delete_one({"_id": name})
        await self.refresh()
        return done.deleted_count > 0
