"""``Fleet``: the executors connected to this replica — their sessions, what each holds,
what goes down their streams — and the fleet's record in Redis, so any replica can list it.

An executor id belongs to one live stream: a second stream that claims the id of one still
heartbeating is refused (an impostor, or a copy started by mistake); a silent one is
replaced (a reconnect).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from common.errors import AlreadyExists, FailedPrecondition
from services.scheduler import keys
from services.scheduler.assignments import Assignment
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.proven_packages import ProvenPackages
from services.scheduler.queue_names import held_by, own_queues, serves
from services.scheduler.queue_records import text_of
from services.scheduler.rest_ends import EndRest
from services.scheduler.run_queue import RunQueue

log = logging.getLogger(__name__)

LOST_LISTED_SECONDS = 3600  # a lost executor stays listed this long, then is forgotten
MAX_LISTED_STEPS = 100  # of an executor's leased steps, ListExecutors names at most this many
SEEN_GRAIN_SECONDS = 5.0  # an idle executor's record is rewritten this often (its last_seen)


@dataclass(frozen=True)
class ExecutorProfile:
    """What an executor says about itself when it connects (and what it connected with)."""

    executor_id: str
    queues: list[str]
    slots: int
    labels: dict[str, str]
    software_version: str = ""
    python_version: str = ""
    packages: tuple[str, ...] = ()
    key_id: str = ""  # the credential it connected with: its id is bound to it
    namespaces: tuple[str, ...] = ("*",)  # whose queues it serves ("*": every namespace)
    certificate: str = ""  # the common name of its client certificate (mTLS), if any
    batching: bool = False  # it runs a dynamic batch in one call, on one slot
    sandbox: str = ""  # how task code is confined there: "isolated", "limits" ("": older)
    ends_rests: bool = False  # an operator may end its rest (EndRest; rest_ends.py)


@dataclass(frozen=True)
class Cancel:
    """A step attempt an executor must stop."""

    run_id: str
    step_id: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class Renewed:
    """The leases an executor's heartbeat listed are renewed (its ``sequence`` echoed), so
    the executor may keep running those steps for another lease period."""

    sequence: int


@dataclass(frozen=True)
class Vitals:
    """What an executor's heartbeats say of its health: steps that failed in the executor
    itself (not in task code) and the last such error; CPU (percent of one core) and resident
    memory of it and its worker processes; what it keeps on disk in its cache."""

    slot_errors: int = 0
    last_slot_error: str = ""
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    disk_bytes: int = 0


@dataclass
class ExecutorSession:
    """One connected executor: its capacity, what it runs, and its outbox."""

    profile: ExecutorProfile
    connected_at: float
    last_seen: float
    in_flight: dict[str, int] = field(default_factory=dict)  # step-key -> attempt
    # Of the steps in flight, those leased as a dynamic batch: step-key -> call id, and per
    # call its steps still in flight. A call takes one slot however many steps it has.
    call_of: dict[str, str] = field(default_factory=dict)
    calls: dict[str, set[str]] = field(default_factory=dict)
    riders: int = 0  # steps in flight on a call's slot beyond its first
    # Steps in flight whose end may queue work (``leasing._wakes_work``).
    wakes_work: set[str] = field(default_factory=set)
    # Steps in flight it reported progress or a log line for: step-key -> attempt (marked
    # heard in Redis by the first; ``Intake.reported_on``).
    heard: dict[str, int] = field(default_factory=dict)
    # Attempts it was given that are no longer current (told to stop): its result for one
    # is still an execution to record.
    stopping: dict[str, int] = field(default_factory=dict)
    outbox: asyncio.Queue[Assignment | Cancel | Renewed | EndRest | None] = field(
        default_factory=asyncio.Queue
    )
    draining: bool = False
    # The sequence of the last heartbeat read from it, and of the one read before the round
    # that leases to it now began: its leases began after that one was sent (the executor
    # counts them from then: an assignment it reads late is not run past its lease).
    heard_heartbeat: int = 0
    leased_after: int = 0
    resting_until: float = 0.0  # while it rests (its heartbeats say), nothing new for it
    rest_began: float = 0.0  # when its current (or last) rest began
    vitals: Vitals = Vitals()  # as its last heartbeat reported them
    # What its record in Redis showed when last written (Fleet.save writes it on a change).
    saved_as: tuple[object, ...] = field(default=(), repr=False)
    # Fleet.served's answer, with how many queue variants there were (they only grow).
    queues_seen: tuple[int, list[str]] | None = field(default=None, repr=False)

    @property
    def executor_id(self) -> str:
        return self.profile.executor_id

    @property
    def slots_taken(self) -> int:
        """Slots with a step (or a batch of steps in one call) running or waiting on them."""
        return len(self.in_flight) - self.riders

    @property
    def free_slots(self) -> int:
        """Slots with nothing running or waiting on them."""
        return 0 if self.draining else max(0, self.profile.slots - self.slots_taken)

    def prefetch_room(self, prefetch: int) -> int:
        """Steps it may take beyond its free slots, to hold until a slot frees."""
        if self.draining:
            return 0
        return max(0, self.profile.slots + prefetch - self.slots_taken) - self.free_slots

    def leased(self, member: str, attempt: int, call: str = "") -> None:
        """A step attempt was sent to it (as one of dynamic batch ``call``, if given)."""
        self.in_flight[member] = attempt
        if call:
            steps = self.calls.setdefault(call, set())
            self.riders += bool(steps)
            steps.add(member)
            self.call_of[member] = call

    def take(self, member: str) -> int | None:
        """A step is no longer in flight here: its attempt (None if it was not)."""
        attempt = self.in_flight.pop(member, None)
        self.heard.pop(member, None)
        self.wakes_work.discard(member)
        call = self.call_of.pop(member, None)
        if call is not None:
            steps = self.calls[call]
            steps.discard(member)
            if steps:
                self.riders -= 1
            else:
                del self.calls[call]
        return attempt


class FleetRecord:
    """The fleet as every replica recorded it, in Redis (``wtm:executors``: id -> JSON of
    what ListExecutors shows)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client

    async def save(self, executors: dict[str, str]) -> None:
        """Record executors (id -> JSON description) for ListExecutors on any replica."""
        if executors:
            await self.redis.hset(keys.EXECUTORS, mapping=executors)  # type: ignore[arg-type]

    async def load(self) -> dict[str, str]:
        return text_of(await self.redis.hgetall(keys.EXECUTORS))

    async def forget(self, executor_ids: list[str]) -> None:
        if executor_ids:
            await self.redis.hdel(keys.EXECUTORS, *executor_ids)


class Fleet:
    """The sessions of this replica's executors, and the fleet's record in Redis."""

    def __init__(
        self,
        queue: RunQueue,
        scheduler_id: str = "",
        silent_after: float = 15.0,
        clock: Clock = SYSTEM,
        require_isolation: bool = False,
        isolation_optional: frozenset[str] = frozenset(),
    ) -> None:
        self.queue = queue
        self.record = FleetRecord(queue.redis)
        self.require_isolation = require_isolation  # only executors that say "isolated"
        self.isolation_optional = isolation_optional  # ... or that serve only these namespaces
        self.scheduler_id = scheduler_id
        # A stream whose executor has said nothing for this long may be taken over by a new
        # stream with its id (a reconnect whose old stream was never seen to close).
        self.silent_after = silent_after
        self.clock = clock
        self.sessions: dict[str, ExecutorSession] = {}
        self._gone: dict[str, float] = {}  # executors that left: id -> when
        self.paused: frozenset[str] = frozenset()  # queues not leased from (pauses.py)
        self.paused_executors: frozenset[str] = frozenset()  # executors given nothing new
        self.proven = ProvenPackages()  # task versions whose code started on an executor

    def _exempt(self, profile: ExecutorProfile) -> bool:
        """Whether every namespace the executor serves may run unisolated (never "*")."""
        served = set(profile.namespaces)
        return bool(served) and served <= self.isolation_optional

    def open(self, profile: ExecutorProfile) -> ExecutorSession:
        """A new executor stream (refused with ALREADY_EXISTS while the id is live, and with
        FAILED_PRECONDITION when isolation is required and it does not isolate)."""
        if self.require_isolation and profile.sandbox != "isolated" and not self._exempt(profile):
            log.warning(
                "refused executor %s: it does not isolate task code (sandbox=%r) and serves "
                "namespaces %s",
                profile.executor_id,
                profile.sandbox,
                ",".join(profile.namespaces),
            )
            raise FailedPrecondition(
                f"{profile.executor_id!r} says its task code runs with "
                f"{'limits only' if profile.sandbox else 'no word on its sandbox (too old)'}; "
                "this scheduler takes only executors that isolate it (WTM_REQUIRE_ISOLATION): "
                "run the executor as root with the sandbox's capabilities"
                + (
                    ", or serve only namespaces of WTM_ISOLATION_OPTIONAL_NAMESPACES "
                    f"({', '.join(sorted(self.isolation_optional))}; it serves "
                    f"{', '.join(profile.namespaces)})"
                    if self.isolation_optional
                    else ""
                ),
                field="hello.sandbox",
            )
        old = self.sessions.get(profile.executor_id)
        if old is not None and old.profile.key_id != profile.key_id:
            log.warning(
                "refused executor %s: its id is held by another credential", profile.executor_id
            )
            raise AlreadyExists(
                f"{profile.executor_id!r} is connected with another credential",
                field="hello.executor_id",
            )
        now = self.clock.time()
        if old is not None and now - old.last_seen < self.silent_after:
            log.warning("refused a second stream for live executor %s", profile.executor_id)
            raise AlreadyExists(
                f"{profile.executor_id!r} is connected on another live stream; an executor id "
                "belongs to one stream (a reconnect is let in once the old one is silent for "
                f"{self.silent_after:g}s)",
                field="hello.executor_id",
            )
        if old is not None:  # a reconnect replaces the silent old stream
            old.outbox.put_nowait(None)
        session = ExecutorSession(profile, connected_at=now, last_seen=now)
        self.sessions[profile.executor_id] = session
        self._gone.pop(profile.executor_id, None)
        log.info(
            "executor %s connected: queues=%s namespaces=%s slots=%d certificate=%s",
            profile.executor_id,
            profile.queues,
            ",".join(profile.namespaces),
            profile.slots,
            profile.certificate or "none",
        )
        return session

    def close(self, session: ExecutorSession) -> None:
        """The stream ended. Its leases stay: the executor may reconnect and report;
        otherwise they expire."""
        if self.sessions.get(session.executor_id) is session:
            del self.sessions[session.executor_id]
            self._gone[session.executor_id] = self.clock.time()
        log.info("executor %s disconnected", session.executor_id)

    def close_all(self) -> None:
        for session in self.sessions.values():
            session.outbox.put_nowait(None)

    def send_cancels(self, cancel: list[tuple[str, str]], reason: str = "run failed") -> None:
        """Tell executors to stop attempts: (step-key, executor id) pairs."""
        for member, executor_id in cancel:
            session = self.sessions.get(executor_id)
            attempt = session.take(member) if session else None
            if session is not None and attempt is not None:
                run_id, _, step_id = member.partition(":")
                session.outbox.put_nowait(Cancel(run_id, step_id, attempt, reason))

    def silent(self, session: ExecutorSession, now: float) -> bool:
        """Whether ``session`` has said nothing for ``silent_after`` (three heartbeats): it
        is given no new step until it speaks again. A frozen executor (SIGSTOP, a stalled VM)
        keeps its stream open, and each step leased to it would wait out a whole lease."""
        return now - session.last_seen >= self.silent_after

    def passed_over(self, session: ExecutorSession, now: float) -> bool:
        """Whether a lease round leaves ``session`` out: paused (PauseExecutor), resting
        (``services/executor/slot_faults.py``) or silent."""
        return (
            session.executor_id in self.paused_executors
            or session.resting_until > now
            or self.silent(session, now)
        )

    def queues_of(self, session: ExecutorSession) -> list[str]:
        """The queues an executor is given steps from now: those it serves, but paused ones
        (a labelled variant of a paused queue, too)."""
        served = self.served(session)
        if not self.paused:
            return served
        return [q for q in served if held_by(q, self.paused) is None]

    def served(self, session: ExecutorSession) -> list[str]:
        """The queues an executor serves: its own in the namespaces it serves, and the
        announced variants of them (other namespaces', labelled ones) it may serve."""
        variants, seen = self.queue.queue_variants, session.queues_seen
        if seen is not None and seen[0] == len(variants):
            return seen[1]  # asked every lease round: worked out once
        p = session.profile
        own = own_queues(p.queues, p.namespaces)
        queues = own + sorted(
            v for v in variants if v not in own and serves(v, p.queues, p.labels, p.namespaces)
        )
        session.queues_seen = (len(variants), queues)
        return queues

    def watched_queues(self) -> set[str]:
        """Every queue some executor here takes from, and every queue work was queued on
        (for the metrics)."""
        own = {
            q
            for s in self.sessions.values()
            for q in own_queues(s.profile.queues, s.profile.namespaces)
        }
        return own | self.queue.queue_variants | self.queue.plain_queues

    def executors_per_queue(self, queues: set[str]) -> dict[str, int]:
        """How many executors here (not draining or resting) take from each of ``queues``."""
        found, now = dict.fromkeys(queues, 0), self.clock.time()
        for session in self.sessions.values():
            if session.draining or session.resting_until > now:
                continue
            for q in self.served(session):
                if q in found:
                    found[q] += 1
        return found

    # The record ---------------------------------------------------------------------------

    def describe(self, session: ExecutorSession, state: str) -> str:
        p = session.profile
        return json.dumps(
            {
                "executor_id": p.executor_id,
                "state": state,
                "queues": p.queues,
                "namespaces": list(p.namespaces),
                "slots": p.slots,
                "in_flight": len(session.in_flight),
                "busy_slots": session.slots_taken,
                "running": list(itertools.islice(session.in_flight, MAX_LISTED_STEPS)),
                "labels": p.labels,
                "software_version": p.software_version,
                "python_version": p.python_version,
                "sandbox": p.sandbox,
                "connected_at": session.connected_at,
                "last_seen": session.last_seen,
                "scheduler_id": self.scheduler_id,
                "packages": list(p.packages),
                "slot_errors": session.vitals.slot_errors,
                "last_slot_error": session.vitals.last_slot_error,
                "cpu_percent": round(session.vitals.cpu_percent, 1),
                "memory_bytes": session.vitals.memory_bytes,
                "disk_bytes": session.vitals.disk_bytes,
                "resting_until": session.resting_until,
                "ends_rests": p.ends_rests,
            }
        )

    async def save(self) -> None:
        """Record this replica's executors in Redis: connected and draining ones as they
        are, silent ones (``silent``) and those that left as LOST (for an hour, then
        forgotten). An executor's record is
        written again only when what it shows changed, or its last-seen time moved by
        ``SEEN_GRAIN_SECONDS``: with a thousand executors, encoding every record every
        second held the event loop for tens of milliseconds."""
        known, now = {}, self.clock.time()
        for s in self.sessions.values():  # a silent one is LOST until it is heard again
            state = "LOST" if self.silent(s, now) else "DRAINING" if s.draining else "CONNECTED"
            shown = (
                state,
                int(s.last_seen // SEEN_GRAIN_SECONDS),
                s.vitals,
                s.resting_until,
                tuple(itertools.islice(s.in_flight, MAX_LISTED_STEPS)),
            )
            if shown != s.saved_as:
                known[s.executor_id] = self.describe(s, state)
                s.saved_as = shown
        await self.record.save(known)
        left = [e for e in self._gone if e not in self.sessions]
        if not left:
            return
        saved = await self.record.load()
        lost = {}
        for executor_id in left:
            if executor_id in saved:
                d = json.loads(saved[executor_id])
                if d.get("scheduler_id") == self.scheduler_id and d["state"] != "LOST":
                    d.update(state="LOST", in_flight=0, busy_slots=0, running=[], cpu_percent=0.0)
                    d.update(memory_bytes=0, disk_bytes=0)
                    lost[executor_id] = json.dumps(d)
        await self.record.save(lost)
        now = self.clock.time()
        old = [e for e, at in self._gone.items() if now - at > LOST_LISTED_SECONDS]
        await self.record.forget(old)
        for e in old:
            self._gone.pop(e, None)
