"""``QueuePauses``: queues whose waiting steps are not leased for now (PauseQueue).

What Celery's operators do with ``cancel_consumer`` on every worker, and Sidekiq's with a
queue's pause: while a task's new version is broken, or what it calls is down, its queue is
held — runs are still accepted, their steps (and retries coming due) wait on it, and steps
already running go on. Each pause is a MongoDB document (``paused_queues``, by the queue's
full name: it outlives restarts and a Redis flush), read by every replica each second (the
reaper) as ``NamespaceSettings`` are, so every replica stops leasing from it within about a
second; the replica that took the call at once. A lease round leaves paused queues out of
what it asks each executor for (``Fleet.queues_of``): nothing changes in Redis or the Lua
scripts, and an unpaused installation pays nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase

from common.errors import InvalidArgument, NotFound
from services.common import auth
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.queue_names import in_namespace, split

MAX_REASON = 500
_BASE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")  # a task.json queue (the registry's rule)
_LABEL = re.compile(r"^[A-Za-z0-9_.\-/]{1,63}=[^,|\s]{0,256}$")


@dataclass(frozen=True)
class QueuePause:
    """Who paused a queue, when (ms) and why."""

    queue: str  # its full name
    reason: str
    paused_by: str
    paused_ms: int

    @property
    def namespace(self) -> str:
        return split(self.queue)[0]


def full_name(queue: str, scope: str) -> str:
    """The full name of ``queue`` as a caller acting in ``scope`` names it: by its name in
    that namespace, or by its full name. Another namespace's queue is NOT_FOUND."""
    if not queue:
        raise InvalidArgument("is required", field="queue")
    name, bar, labels = queue.partition("|")
    namespace, _, base = name.rpartition("/")
    if not _BASE.match(base) or (bar and not all(map(_LABEL.match, labels.split(",")))):
        raise InvalidArgument(
            f"{queue[:120]!r} is not a queue name (like vision, team-a/vision, vision|gpu=true)",
            field="queue",
        )
    if namespace:
        auth.check_namespace(namespace, field="queue")
        if not auth.visible(namespace, scope):
            raise NotFound(f"no queue {queue[:120]} in namespace {scope}", field="queue")
        return in_namespace(namespace, base + bar + labels)
    return in_namespace(auth.one_namespace(scope), base + bar + labels)


class QueuePauses:
    """The queues paused, kept in MongoDB and read by every replica; ``on_change`` is told
    the paused queues' names whenever they change here."""

    def __init__(
        self,
        db: AsyncDatabase,
        on_change: Callable[[frozenset[str]], None] = lambda names: None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._c = db["paused_queues"]
        self.on_change = on_change
        self.clock = clock
        self.paused: dict[str, QueuePause] = {}  # full name -> its pause (live)

    async def refresh(self) -> None:
        """Read the pauses every replica made (each second, the reaper)."""
        found = {
            d["_id"]: QueuePause(d["_id"], d.get("reason", ""), d.get("paused_by", ""), d["ms"])
            async for d in self._c.find({})
        }
        if found != self.paused:
            changed = set(found) != set(self.paused)
            self.paused.clear()  # in place: others hold it (FleetReport)
            self.paused.update(found)
            if changed:
                self.on_change(frozenset(found))

    async def pause(self, queue: str, reason: str, by: auth.Principal) -> QueuePause:
        """Pause ``queue`` (named as ``full_name`` takes it) for the namespace ``by`` acts in."""
        if len(reason) > MAX_REASON:
            raise InvalidArgument(f"is over {MAX_REASON} characters", field="reason")
        name = full_name(queue, by.scope)
        pause = QueuePause(name, reason, by.key_id or by.name, self.clock.now_ms())
        doc = {"reason": pause.reason, "paused_by": pause.paused_by, "ms": pause.paused_ms}
        await self._c.update_one({"_id": name}, {"$set": doc}, upsert=True)
        await self.refresh()
        return pause

    async def resume(self, queue: str, by: auth.Principal) -> bool:
        """Lease ``queue``'s steps again; False when it was not paused."""
        name = full_name(queue, by.scope)
        done = await self._c.delete_one({"_id": name})
        await self.refresh()
        return done.deleted_count > 0
