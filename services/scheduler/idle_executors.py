"""``AskedExecutors``: which executor sessions a lease round asks, so that a round costs
O(active sessions), not O(fleet).

A session is *active* (asked every round while it has room) until its queues are found empty;
then it is *idle* and sits rounds out until work is queued on a queue it serves (``by_queue``
finds it from the queue's name: submits and results that make steps ready say where),
work is queued on queues this replica cannot name (the run queue's epoch moves: retries,
expired leases, other replicas), or a second has passed (the backstop for a wake message
lost between replicas). Measured with a thousand mostly idle executors (``bench.fleet``):
scanning every session each round took about a quarter of the scheduler's samples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from services.scheduler.fleet import ExecutorSession, Fleet

BACKSTOP_MS = 1000


@dataclass(frozen=True)
class Idle:
    """An executor whose queues were empty when it last asked."""

    at_ms: int  # when
    queues: list[str]  # the queues it serves (where new work finds it)
    session: ExecutorSession
    with_room: bool = False  # it had a free slot then: work queued since would have asked it


class AskedExecutors:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.active: dict[str, ExecutorSession] = {}
        self.idle: dict[str, Idle] = {}  # in the order they were found idle
        self.by_queue: dict[str, dict[str, ExecutorSession]] = {}
        self._epoch = 0  # the run queue's epoch when the idle ones were last checked

    def to_ask(self, epoch: int, now_ms: int, new_work: Counter[str]) -> list[ExecutorSession]:
        """The sessions to ask this round: the active ones (not draining, paused or silent),
        and as many idle ones serving ``new_work``'s queues as there are new steps there.
        Each is marked with the last heartbeat heard from it (``leased_after``), before the
        round's leases: the executor counts them from that heartbeat's sending."""
        self._wake(epoch, now_ms)
        now = now_ms / 1000
        sessions = []
        for executor_id, s in list(self.active.items()):
            if self.fleet.sessions.get(executor_id) is not s:  # gone, or replaced
                del self.active[executor_id]
            elif not s.draining and not self.fleet.passed_over(s, now):  # asked once heard
                sessions.append(s)
        for queue, steps in new_work.items():
            for executor_id, s in list(self.by_queue.get(queue, {}).items()):
                if steps <= 0:
                    break
                if (
                    s.free_slots > 0
                    and self.fleet.sessions.get(executor_id) is s
                    and not self.fleet.passed_over(s, now)
                ):
                    steps -= s.free_slots
                    self.activate(s)
                    sessions.append(s)
        for s in sessions:
            s.leased_after = s.heard_heartbeat
        return sessions

    def _wake(self, epoch: int, now_ms: int) -> None:
        """All idle sessions become active when the epoch moved; otherwise those idle for
        the backstop's second (oldest first: the walk stops at the first recent one)."""
        if epoch != self._epoch:
            self._epoch = epoch
            for idle in list(self.idle.values()):
                self.activate(idle.session)
            return
        for idle in list(self.idle.values()):
            if now_ms - idle.at_ms < BACKSTOP_MS:
                break
            self.activate(idle.session)

    def activate(self, session: ExecutorSession) -> None:
        """Ask ``session`` in the coming rounds (a new or reconnected executor, say)."""
        self._leave_idle(session.executor_id)
        self.active[session.executor_id] = session

    def found_idle(self, session: ExecutorSession, now_ms: int, with_room: bool = False) -> None:
        """``session`` asked and found its queues empty (``with_room``: for a free slot)."""
        if self.fleet.sessions.get(session.executor_id) is not session:
            return
        self.active.pop(session.executor_id, None)
        self._leave_idle(session.executor_id)  # re-added last: the order is by time
        queues = self.fleet.queues_of(session)
        self.idle[session.executor_id] = Idle(now_ms, queues, session, with_room)
        for queue in queues:
            self.by_queue.setdefault(queue, {})[session.executor_id] = session

    def forget(self, session: ExecutorSession) -> None:
        """``session``'s stream ended."""
        if self.active.get(session.executor_id) is session:
            del self.active[session.executor_id]
        idle = self.idle.get(session.executor_id)
        if idle is not None and idle.session is session:
            self._leave_idle(session.executor_id)

    def new_work_of(
        self, queued: Counter[str], left: Counter[str], asked: set[str]
    ) -> Counter[str]:
        """Of the steps a round trip's results queued (``queued``, per queue), those later
        rounds are to ask idle executors for: on a queue none of whose idle executors sat
        that round trip out (``asked``: its executors), only what it left waiting (``left``);
        they asked once the results were in, and took all they could. On any other, all."""
        return Counter(
            {
                q: n if any(e not in asked for e in self.by_queue.get(q, ())) else left[q]
                for q, n in queued.items()
            }
        )

    def any_full(self, prefetch: int) -> bool:
        """Whether some session has no room. Idle ones had room when they asked, and only a
        round (which makes them active) gives them more: the full ones are active."""
        return any(s.free_slots + s.prefetch_room(prefetch) == 0 for s in self.active.values())

    def _leave_idle(self, executor_id: str) -> None:
        idle = self.idle.pop(executor_id, None)
        if idle is None:
            return
        for queue in idle.queues:
            serving = self.by_queue.get(queue)
            if serving is not None:
                serving.pop(executor_id, None)
                if not serving:
                    del self.by_queue[queue]
