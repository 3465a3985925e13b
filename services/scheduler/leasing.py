"""``Leaser``: hands queued steps to free executor slots.

Leasing is event-driven, not polled: a round runs when work may be available (a submit or a
retry on any replica, announced on a Redis channel; a freed slot; a new executor) and hands
each session at most its free slots, rotating the order of sessions for fairness — one
pipelined round trip for all of them. Submits and result batches lease in their own round
trip (``LeaseRound``), so a slot a result freed takes the next step at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from common import refs
from services.common.mapping import MissingValue
from services.scheduler import keys, tracing, wake
from services.scheduler.assignments import assignment, step_input
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.due_timer import DueTimer
from services.scheduler.fleet import ExecutorSession, Fleet
from services.scheduler.idle_executors import AskedExecutors
from services.scheduler.large_documents import LargeDocumentError, LargeDocuments
from services.scheduler.listeners import Listeners
from services.scheduler.queue_records import Completion, Leased, Submission, Want, ready_queues
from services.scheduler.result_cache import CachedOutput, ResultCache
from services.scheduler.retry_policy import RetryPolicy
from services.scheduler.run_queue import RunQueue
from services.scheduler.step_notes import StepNotes

log = logging.getLogger(__name__)

# A batch's first runs go to Redis with the lease, at least this many (``Leaser.submit``).
HEAD_RUNS = 32


def slots_of(leased: list[Leased]) -> int:
    """How many slots these leases take: a dynamic batch's steps share one."""
    return len({x.call or x.member for x in leased})


def _wakes_work(step: dict[str, str]) -> bool:
    """Whether a step's end may queue work in its result's round trip: it has dependents (or
    it is not known), its task's concurrency limit queues a step waiting for its place, or
    its run's max_parallel_tasks one of the run's held steps."""
    return (
        step.get("dependents") not in ("[]", "{}") or "conc_key" in step or "max_parallel" in step
    )


@dataclass(frozen=True)
class Prepared:
    """A leased step with its input built, about to be sent (or completed from the cache)."""

    session: ExecutorSession
    leased: Leased
    input_json: str
    edges: list[tuple[str, str]]
    sources: dict[str, str]
    cache_key: str = ""  # "": not cached


@dataclass
class LeaseRound:
    """One round of leasing: who wants how many steps, and handing out what they got."""

    leaser: Leaser
    sessions: list[ExecutorSession] = field(default_factory=list)
    wants: list[Want] = field(default_factory=list)
    epoch: int = 0  # the queue's queued_epoch when the wants were drawn up
    skipped: int = 0  # executors left out (queues empty at this epoch), or their prefetch

    async def hand_out(self, leases: list[list[Leased]]) -> None:
        await self.leaser.hand_out(self.sessions, self.wants, leases)
        self.leaser.after(self, leases)


class Leaser:
    """Matches queued steps with executor slots."""

    def __init__(
        self,
        queue: RunQueue,
        fleet: Fleet,
        listeners: Listeners,
        lease_seconds: int = 30,
        retry: RetryPolicy = RetryPolicy(),
        documents: LargeDocuments | None = None,
        prefetch: int = 0,
        clock: Clock = SYSTEM,
        cache: ResultCache | None = None,
    ) -> None:
        self.queue = queue
        self.cache = cache
        self.fleet = fleet
        self.listeners = listeners
        self.lease_ms = lease_seconds * 1000
        self.notes = StepNotes(queue.notes, keep_seconds=2.0 * lease_seconds, clock=clock)
        self.retry = retry
        self.documents = documents
        self.prefetch = prefetch
        self.clock = clock
        self.work_queued = queue.work_queued  # set by the queue, a new executor, a free slot
        self._rotation = 0
        self.asked = AskedExecutors(fleet)  # who a round asks: not every idle executor
        # Whether the last round filled every slot it could: then work may still be waiting
        # and a freed slot calls for a round; otherwise only newly queued work does.
        self.saturated = True
        # The queue's epoch when a round last came away short on every want (its queues
        # drained); None after a round that filled one.
        self._drained_at: int | None = None
        self._lock = asyncio.Lock()  # one round at a time, so slots are counted once
        self.due = DueTimer(queue, self.wake)  # for what a round left waiting until a time

    def wake(self) -> None:
        self.work_queued.set()

    def retry_at_ms(self, attempt: int) -> int:
        return self.clock.now_ms() + int(self.retry.delay_seconds(attempt) * 1000)

    @contextlib.asynccontextmanager
    async def round(self) -> AsyncIterator[LeaseRound]:
        """A lease round: who wants what now, held alone until its hand-out is done."""
        async with self._lock:
            yield self._wants()

    @property
    def in_round(self) -> bool:
        return self._lock.locked()

    def _wants(self) -> LeaseRound:
        """What to lease to whom: first every free slot, sessions in rotating order; then
        each session's prefetch room, so that held work never waits while a slot is idle
        (not when the free slots take all the work there may be: ``_prefetch_finds``)."""
        epoch, now = self.queue.queued_epoch, self.clock.now_ms()
        new_work = self.queue.take_new_work()
        sessions = self.asked.to_ask(epoch, now, new_work)
        if not sessions:
            return LeaseRound(self, epoch=epoch, skipped=len(self.asked.idle))
        self._rotation = (self._rotation + 1) % len(sessions)
        order = sessions[self._rotation :] + sessions[: self._rotation]
        wanting = [s for s in order if s.free_slots > 0]
        wants = [
            Want(s.executor_id, self.fleet.queues_of(s), s.free_slots, s.profile.batching)
            for s in wanting
        ]
        skipped = len(self.asked.idle)
        free = sum(s.free_slots for s in wanting)
        if self.prefetch and not self._prefetch_finds(epoch, new_work, free):
            skipped += len(order)  # what the round trip leaves waiting calls another round
        elif self.prefetch:
            held = [s for s in order if s.prefetch_room(self.prefetch) > 0]
            wanting += held
            wants += [  # a batch held ahead is one place too, as on a slot
                Want(
                    s.executor_id,
                    self.fleet.queues_of(s),
                    s.prefetch_room(self.prefetch),
                    s.profile.batching,
                    held=True,
                )
                for s in held
            ]
        if not wanting:
            self.saturated = True
        return LeaseRound(self, wanting, wants, epoch, skipped)

    def _prefetch_finds(self, epoch: int, new_work: Counter[str], free: int) -> bool:
        """Whether a round's prefetch asks may find anything: not when the last round found
        the queues drained, nothing was queued since but what this replica knows of (the
        epoch has not moved), and the free slots asked (``free``) take all of it (what
        results queue beyond them is left waiting; ``after`` calls a round to prefetch it)."""
        return not (self._drained_at == epoch and sum(new_work.values()) <= free)

    async def submit(self, runs: list[Submission]) -> list[tuple[bool, str]]:
        """Queue new runs and, in the same round trip, lease work to the free slots, so a
        run submitted to an idle fleet starts without a round of its own. While a round is
        under way the runs are only queued; that round or the next takes them.

        A large batch goes in two round trips: as many runs as there are free slots (at
        least ``HEAD_RUNS``) with the lease, then the rest, which the next round leases.
        In one, the free slots waited for every run's script: 200 three-step runs took
        valkey 27-40 ms, and their first steps started that long after they were created."""
        if self.in_round:
            created = await self.queue.submit_many(runs)
            self.ended_at_submit()
            return created
        first, rest = runs, []
        if len(runs) > HEAD_RUNS:  # a single submit does not count the fleet's free slots
            head = max(HEAD_RUNS, sum(s.free_slots for s in self.fleet.sessions.values()))
            first, rest = runs[:head], runs[head:]
        hint = ready_queues(first)  # None for rebuilt runs: then every round must look
        self.queue.work_was_queued(hint, wake=hint is None)  # asked in this very round
        async with self.round() as r:
            created, leases = await self.queue.submit_and_dispatch(first, r.wants, self.lease_ms)
            await r.hand_out(leases)
        if rest:
            created += await self.queue.submit_many(rest)  # wakes a round for what is left
        self.ended_at_submit()
        return created

    def ended_at_submit(self) -> None:
        """Runs that ended in ``submit_run.lua`` (their skip_if skipped every step): the
        history records them, and a submit waiting for one wakes, as after a last result."""
        for run_id in self.queue.take_ended_at_submit():
            self.listeners.run_ended(run_id, None)

    async def run(self) -> None:
        """Lease whenever work may be waiting (at least once a second)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.work_queued.wait(), timeout=1.0)
            self.work_queued.clear()
            try:
                async with self.round() as r:
                    if r.wants:
                        await r.hand_out(await self.queue.dispatch_many(r.wants, self.lease_ms))
            except Exception:
                log.exception("lease round failed")
                await asyncio.sleep(0.5)

    async def listen_for_work(self) -> None:
        """Wake on "work was queued" from any replica; resubscribe if the connection drops."""
        while True:
            pubsub = self.queue.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.WAKE_CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self.queue.heard(message["data"])
            except (ConnectionError, OSError, RedisError):
                log.warning("wake channel lost; resubscribing")
                await asyncio.sleep(0.5)
            finally:
                await pubsub.aclose()

    async def hand_out(
        self, wanting: list[ExecutorSession], wants: list[Want], leases: list[list[Leased]]
    ) -> None:
        """Build the leased steps' inputs and send them to their executors; a step whose
        input cannot be built fails here, and one whose output is cached completes here. Runs
        a task's concurrency_strategy cancelled for a place end as a cancel ends them."""
        for run_id, running in self.queue.take_cancelled():
            self.fleet.send_cancels(running, reason="run cancelled: concurrency_strategy")
            self.listeners.run_ended(run_id, None)
        if not wants:
            return
        self.saturated = any(
            slots_of(got) >= w.n for w, got in zip(wants, leases, strict=True)
        ) or self.asked.any_full(self.prefetch)
        ready: list[Prepared] = []
        ended: list[Completion] = []  # failed inputs and cache hits: recorded here
        for session, leased_list in zip(wanting, leases, strict=True):
            for leased in leased_list:
                prepared = await self._prepare(session, leased)
                if isinstance(prepared, Completion):
                    ended.append(prepared)
                else:
                    ready.append(prepared)
        outgoing = self._annotate(ready, await self._cache_hits(ready), ended)
        self._send(outgoing)
        if ended:
            await self.notes.written(c.member for c in ended)
            for c, v in zip(ended, await self.queue.complete_many(ended), strict=True):
                self.fleet.send_cancels(v.cancel)
                self.listeners.step_ended(c.member, v.snapshot, c.output_json, v.ends_run, v.final)
            self.wake()  # the slots these were leased to are free again

    def _annotate(
        self, ready: list[Prepared], hits: list[CachedOutput | None], ended: list[Completion]
    ) -> list[tuple[ExecutorSession, Prepared, str]]:
        """Each ready step's notes (its trace, lineage, where its output is cached or will
        be), written behind; a cache hit completes here (into ``ended``); the rest, with
        their traceparents, go out."""
        annotations: dict[str, dict[str, str]] = {}
        outgoing: list[tuple[ExecutorSession, Prepared, str]] = []
        for p, hit in zip(ready, hits, strict=True):
            leased = p.leased
            notes, traceparent = tracing.step_fields(
                leased.trace_id, leased.run_span, leased.upstream_spans, leased.step, leased.attempt
            )
            edges = p.edges
            if hit is not None:
                notes["cached_from"] = hit.source
                edges = [*edges, (hit.source, leased.step["output_id"])]
            elif p.cache_key and self.cache is not None:
                notes.update(self.cache.store_fields(p.cache_key))
            if edges:
                notes["lineage"] = json.dumps(edges)
            if notes:
                annotations[leased.member] = notes
            if leased.run_started:
                self.listeners.run_started(leased.run_id, self.clock.now_ms())
            if hit is not None:
                # It ran nowhere: no executor is named on it.
                ended.append(
                    Completion(
                        leased.member,
                        leased.attempt,
                        "SUCCEEDED",
                        hit.output_json,
                        timings={"executor": ""},
                    )
                )
                continue
            outgoing.append((p.session, p, traceparent))
        if annotations:  # behind the assignments: a result waits for them (StepNotes)
            self.notes.write_behind(annotations)
        return outgoing

    def _send(self, outgoing: list[tuple[ExecutorSession, Prepared, str]]) -> None:
        """Each step to its executor's outbox, marked leased on its session."""
        # A batch's size as sent: its steps that failed their input or hit the cache are not.
        call_sizes = Counter(p.leased.call for _, p, _ in outgoing if p.leased.call)
        for session, p, traceparent in outgoing:
            size = call_sizes[p.leased.call] if p.leased.call else 0
            session.leased(p.leased.member, p.leased.attempt, p.leased.call if size > 1 else "")
            if _wakes_work(p.leased.step):
                session.wakes_work.add(p.leased.member)
            proven = p.leased.step["digest"] in self.fleet.proven
            after = session.leased_after  # the heartbeat heard before this round's lease
            session.outbox.put_nowait(
                assignment(p.leased, p.input_json, p.sources, traceparent, size, proven, after)
            )

    def new_executor(self, session: ExecutorSession) -> None:
        """An executor (re)connected: its slots are asked at once, whatever it found before."""
        self.asked.activate(session)
        self.wake()

    def slot_freed(self, session: ExecutorSession, wakes_work: bool = True) -> None:
        """A result freed one of ``session``'s places: it is asked again from the next round
        if it was found idle while full (work queued meanwhile passed it by, having no free
        slot to take, and would otherwise wait for the one-second backstop), or if the step's
        end may queue work (``wakes_work``, from ``_wakes_work`` as it was leased), which the
        result's own round trip then leases."""
        idle = self.asked.idle.get(session.executor_id)
        if idle is not None and (wakes_work or not idle.with_room):
            self.asked.activate(session)

    def results_queued(
        self, lease_round: LeaseRound, queued: Counter[str], leases: list[list[Leased]]
    ) -> None:
        """``lease_round``'s results queued ``queued`` (per queue): later rounds ask idle
        executors of those queues for what its round trip did not lease (``new_work_of``)."""
        asked = {s.executor_id for s in lease_round.sessions}
        left = wake.left_waiting(queued, leases) or Counter()
        self.queue.work_was_queued(self.asked.new_work_of(queued, left, asked), wake=False)

    def forget(self, session: ExecutorSession) -> None:
        """An executor's stream ended."""
        self.asked.forget(session)

    def after(self, lease_round: LeaseRound, leases: list[list[Leased]]) -> None:
        """Note who found nothing; and when work was queued while executors sat out this
        round (results that made steps ready), lease again so that they are asked."""
        got_some: dict[str, bool] = {}  # a session wants twice with prefetch: both count
        drained: dict[str, bool] = {}  # a free-slot want got less than it asked: none left
        asked: dict[str, ExecutorSession] = {}
        for session, want, got in zip(lease_round.sessions, lease_round.wants, leases, strict=True):
            got_some[session.executor_id] = got_some.get(session.executor_id, False) or bool(got)
            if not want.held:
                drained[session.executor_id] = slots_of(got) < want.n
            asked[session.executor_id] = session
        if lease_round.wants:
            self._drained_at = None if self.saturated else lease_round.epoch
        now = self.clock.now_ms()
        for executor_id, session in asked.items():
            if drained.get(executor_id):
                self.asked.found_idle(session, now, with_room=True)
            elif not got_some[executor_id]:
                self.asked.found_idle(session, now)
        if lease_round.skipped and (
            self.queue.queued_epoch != lease_round.epoch or self.queue.new_work
        ):
            self.wake()
        self.due.take(now)  # a short batch, or a rate-limited step put aside

    async def _prepare(self, session: ExecutorSession, leased: Leased) -> Prepared | Completion:
        """A leased step's input, or the failure that ends the attempt when it cannot be
        built (any error: one step's bad input never fails the whole round)."""
        try:
            return await self._input_of(session, leased)
        except LargeDocumentError as exc:
            outcome = "FAILED" if exc.retryable else "FATAL"
            return Completion(
                leased.member,
                leased.attempt,
                outcome,
                "",
                f"input: {exc}",
                self.retry_at_ms(leased.attempt),
            )
        except (MissingValue, ValueError, KeyError, RecursionError) as exc:
            # The mapping found nothing (an upstream output lacks the field): no retry can
            # change that, so the step fails at once.
            return Completion(leased.member, leased.attempt, "FATAL", "", f"input_mapping: {exc}")
        except Exception as exc:  # a bug here must not fail the other steps of the round
            log.exception("building the input of %s failed", leased.member)
            return Completion(
                leased.member,
                leased.attempt,
                "FAILED",
                "",
                f"input: {type(exc).__name__}: {exc}",
                self.retry_at_ms(leased.attempt),
            )

    async def _cache_hits(self, ready: list[Prepared]) -> list[CachedOutput | None]:
        """For each prepared step, its cached output, if caching is on for it and has one."""
        asking = [p.cache_key for p in ready if p.cache_key]
        if not asking or self.cache is None:
            return [None] * len(ready)
        found = iter(await self.cache.lookup(asking))
        return [next(found) if p.cache_key else None for p in ready]

    async def _input_of(self, session: ExecutorSession, leased: Leased) -> Prepared:
        leased = await self._expand_outputs(leased)
        input_json, edges, sources = step_input(leased)
        cache_key = ""
        if self.cache is not None and leased.step.get("cache") == "1":
            cache_key = self.cache.key(
                leased.step.get("namespace", "default"), leased.step["digest"], input_json
            )
        if self.documents is not None:
            input_json = await self.documents.shrink(
                input_json, f"{leased.step['input_id'] or 'input'}.json"
            )
        return Prepared(session, leased, input_json, edges, sources, cache_key)

    async def _expand_outputs(self, leased: Leased) -> Leased:
        """``leased`` with the upstream outputs that went by reference fetched."""
        if self.documents is None or not any(
            refs.text_ref_uri(v) for v in leased.dep_outputs.values() if v
        ):
            return leased
        outputs = {
            k: (await self.documents.expand(v)) if v else v for k, v in leased.dep_outputs.items()
        }
        return dataclasses.replace(leased, dep_outputs=outputs)
