"""``Dispatcher``: executor sessions, lease dispatch, results, heartbeats, and the reaper.

Dispatch is event-driven, not polled: a round runs when work may be available (a submit or a
retry on any scheduler replica, announced on a Redis channel; a freed slot; a new executor)
and hands each session at most its free slots, rotating the order of sessions for fairness —
one pipelined round trip for all of them. Results are recorded in batches: whatever arrived
while the previous batch was in Redis goes in the next one, one round trip per batch, so
the cost per result falls as load rises. A one-second tick runs the reaper (expired leases,
due retries, the fleet's record) as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from services.common import logs, refs
from services.common.errors import AlreadyExists
from services.common.mapping import MissingValue
from services.scheduler import keys, step_inputs, tracing
from services.scheduler.history import History, Refused
from services.scheduler.large_documents import LargeDocumentError, LargeDocuments
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.queue_names import own_queues, serves
from services.scheduler.retry_policy import RetryPolicy
from services.scheduler.run_queue import (
    Completion,
    Leased,
    RunQueue,
    RunState,
    Submission,
    flat_dict,
    now_ms,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorInfo:
    """What an executor says about itself when it connects."""

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


@dataclass(frozen=True)
class Assignment:
    """A step attempt to send to an executor."""

    run_id: str
    step_id: str
    attempt: int
    task_id: str
    task_version: str
    digest: str
    entry_point: str
    input_json: str
    timeout_seconds: int
    input_id: str
    output_id: str
    upstream_output_ids: dict[str, str] = field(default_factory=dict)
    input_sources: dict[str, str] = field(default_factory=dict)
    traceparent: str = ""
    lease_id: str = ""
    namespace: str = "default"


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
class StepReport:
    """The end of a step attempt, as an executor reports it."""

    run_id: str
    step_id: str
    attempt: int
    outcome: str  # SUCCEEDED | FAILED | FATAL | TIMED_OUT | CANCELLED | RELEASED
    output_json: str = ""
    error: str = ""
    timings: dict[str, int] = field(default_factory=dict)  # t_recv, t_p0, t_p1, t_sent (µs)
    lease_id: str = ""  # the dispatch it is for ("" from executors that do not echo it)
    executor_id: str = ""  # who reported it
    leased_here: bool = False  # this replica leased that attempt to that executor's stream


@dataclass
class ExecutorSession:
    """One connected executor: its capacity, what it runs, and its outbox."""

    info: ExecutorInfo
    in_flight: dict[str, int] = field(default_factory=dict)  # step-key -> attempt
    # Attempts it was given that are no longer current (told to stop): its result for one
    # is still an execution to record.
    stopping: dict[str, int] = field(default_factory=dict)
    outbox: asyncio.Queue[Assignment | Cancel | Renewed | None] = field(
        default_factory=asyncio.Queue
    )
    last_seen: float = field(default_factory=time.time)
    connected_at: float = field(default_factory=time.time)
    draining: bool = False
    slot_errors: int = 0  # as its heartbeats report them
    last_slot_error: str = ""

    @property
    def free_slots(self) -> int:
        """Slots with nothing running or waiting on them."""
        return 0 if self.draining else max(0, self.info.slots - len(self.in_flight))

    def room(self, prefetch: int) -> int:
        """Steps it may take beyond its free slots, to hold until a slot frees."""
        if self.draining:
            return 0
        return max(0, self.info.slots + prefetch - len(self.in_flight)) - self.free_slots


def step_input(leased: Leased) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """The input document of a dispatched step (JSON text), its lineage edges, and the
    output id each mapped field came from.

    Raises ``MissingValue`` when the step's ``input_mapping`` finds nothing to read.
    """
    spec = json.loads(leased.step.get("mapping") or "{}")
    if not spec:
        return step_inputs.default_input(leased.run_input_json, leased.dep_outputs), [], {}
    output_ids = json.loads(leased.step.get("read_output_ids") or "{}")
    outputs = {k: json.loads(v) for k, v in leased.dep_outputs.items() if v is not None}
    document, edges, sources = step_inputs.resolve(
        spec,
        set(output_ids),
        json.loads(leased.run_input_json),
        outputs,
        output_ids,
        leased.step["input_id"],
    )
    return json.dumps(document), edges, sources


class Dispatcher:
    """Matches queued steps with executor slots and records what executors report."""

    def __init__(
        self,
        queue: RunQueue,
        history: History,
        lease_seconds: int = 30,
        retry: RetryPolicy = RetryPolicy(),
        scheduler_id: str = "",
        documents: LargeDocuments | None = None,
        prefetch: int = 0,
        silent_after: float = 15.0,
    ) -> None:
        self.queue = queue
        self.prefetch = prefetch
        # A stream whose executor has said nothing for this long may be taken over by a new
        # stream with its id (a reconnect whose old stream was never seen to close).
        self.silent_after = silent_after
        self.documents = documents
        self.history = history
        self.lease_ms = lease_seconds * 1000
        self.retry = retry
        self.scheduler_id = scheduler_id
        self.sessions: dict[str, ExecutorSession] = {}
        self._wake = asyncio.Event()
        self._results: list[tuple[StepReport, int]] = []  # waiting for the next batch
        self._results_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rotation = 0
        self._gone: dict[str, float] = {}  # executors that left: id -> when
        # Whether the last round filled every slot it could: then work may still be waiting
        # and a freed slot calls for a round; otherwise only newly queued work does.
        self._saturated = True
        self._round = asyncio.Lock()  # one lease round at a time, so slots are counted once
        queue.on_queued = self.wake
        self.metrics = SchedulerMetrics(self)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._dispatch_loop()),
            asyncio.create_task(self._results_loop()),
            asyncio.create_task(self._reaper_loop()),
            asyncio.create_task(self._wake_listener()),
        ]

    async def stop(self) -> None:
        for session in self.sessions.values():
            session.outbox.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        self._wake.set()

    # Sessions -----------------------------------------------------------------------------

    def open_session(self, info: ExecutorInfo) -> ExecutorSession:
        """A new executor stream. An id belongs to one live stream: a second stream that
        claims the id of one still heartbeating is refused (an impostor, or a copy started
        by mistake), not allowed to take it over; a silent one is replaced (a reconnect)."""
        old = self.sessions.get(info.executor_id)
        if old is not None and old.info.key_id != info.key_id:
            log.warning(
                "refused executor %s: its id is held by another credential", info.executor_id
            )
            raise AlreadyExists(
                f"{info.executor_id!r} is connected with another credential",
                field="hello.executor_id",
            )
        if old is not None and time.time() - old.last_seen < self.silent_after:
            log.warning("refused a second stream for live executor %s", info.executor_id)
            raise AlreadyExists(
                f"{info.executor_id!r} is connected on another live stream; an executor id "
                "belongs to one stream (a reconnect is let in once the old one is silent for "
                f"{self.silent_after:g}s)",
                field="hello.executor_id",
            )
        if old is not None:  # a reconnect replaces the silent old stream
            old.outbox.put_nowait(None)
        session = ExecutorSession(info)
        self.sessions[info.executor_id] = session
        self._gone.pop(info.executor_id, None)
        log.info(
            "executor %s connected: queues=%s namespaces=%s slots=%d certificate=%s",
            info.executor_id,
            info.queues,
            ",".join(info.namespaces),
            info.slots,
            info.certificate or "none",
        )
        self.wake()
        return session

    def close_session(self, session: ExecutorSession) -> None:
        if self.sessions.get(session.info.executor_id) is session:
            del self.sessions[session.info.executor_id]
            self._gone[session.info.executor_id] = time.time()
        # Its leases stay: the executor may reconnect and report; otherwise they expire.
        log.info("executor %s disconnected", session.info.executor_id)

    async def heartbeat(
        self,
        session: ExecutorSession,
        running: list[tuple[str, str, int, str]],
        draining: bool = False,
        sequence: int = 0,
        slot_errors: tuple[int, str] = (0, ""),
    ) -> None:
        """Renew the leases of what an executor runs; cancel the attempts that are no longer
        current; then (when it numbered the heartbeat) tell it the renewal is done."""
        session.last_seen = time.time()
        if draining and not session.draining:
            log.info("executor %s is draining: no new work for it", session.info.executor_id)
        session.draining = session.draining or draining
        session.slot_errors, session.last_slot_error = slot_errors
        stale = await self.queue.heartbeat(
            [(keys.step_key(r, s), a, lease) for r, s, a, lease in running],
            self.lease_ms,
            session.info.executor_id,
        )
        for r, s, a, _ in running:  # after a reconnect: what it runs takes its slots
            member = keys.step_key(r, s)
            if member not in stale:
                session.in_flight[member] = a
        for member in stale:
            run_id, _, step_id = member.partition(":")
            attempt = next(a for r, s, a, _ in running if r == run_id and s == step_id)
            if session.in_flight.pop(member, None) == attempt:
                session.stopping[member] = attempt
            session.outbox.put_nowait(
                Cancel(run_id, step_id, attempt, "attempt is no longer current")
            )
        if sequence:
            session.outbox.put_nowait(Renewed(sequence))

    async def progress(
        self,
        session: ExecutorSession,
        run_id: str,
        step_id: str,
        attempt: int,
        fraction: float,
        message: str,
    ) -> None:
        """Pass a running step's progress on to the run's watchers."""
        if session.in_flight.get(keys.step_key(run_id, step_id)) == attempt:
            await self.queue.add_progress(run_id, step_id, attempt, fraction, message)

    async def log(
        self,
        session: ExecutorSession,
        run_id: str,
        step_id: str,
        attempt: int,
        level: str,
        message: str,
    ) -> None:
        """Pass a line a running step logged on to watchers, and keep it with the attempt."""
        if session.in_flight.get(keys.step_key(run_id, step_id)) == attempt:
            await self.queue.add_log(run_id, step_id, attempt, level, message)

    def report(self, session: ExecutorSession, report: StepReport) -> None:
        """Take a step result; it is recorded with the next batch (fencing decides there)."""
        member = keys.step_key(report.run_id, report.step_id)
        leased_here = report.attempt in (
            session.in_flight.pop(member, None),
            session.stopping.pop(member, None),
        )
        session.last_seen = time.time()
        report = dataclasses.replace(report, leased_here=leased_here)
        self._results.append((report, time.time_ns() // 1000))
        self._results_ready.set()

    async def _record_results(self, batch: list[tuple[StepReport, int]]) -> None:
        """Record a batch of results and, in the same round trip, lease work to the slots
        they freed (the dependents they made ready included)."""
        completions = [
            Completion(
                keys.step_key(r.run_id, r.step_id),
                r.attempt,
                r.outcome,
                r.output_json,
                r.error,
                now_ms() + int(self.retry.delay_seconds(r.attempt) * 1000),
                {**r.timings, "t_rep": received_us} if r.timings else {},
                r.lease_id,
                r.executor_id,
            )
            for r, received_us in batch
        ]
        async with self._round:
            wanting, wants = self._wants()
            verdicts, leases = await self.queue.complete_and_dispatch(
                completions, wants, self.lease_ms
            )
            ended = []
            for (r, _), c, v in zip(batch, completions, verdicts, strict=True):
                if v.verdict == "stale":
                    log.warning(
                        "refused stale result for %s attempt %d",
                        c.member,
                        c.attempt,
                        extra=logs.run_fields(r.run_id, r.step_id, c.attempt),
                    )
                    self.history.execution_refused(
                        c.member,
                        v.snapshot,
                        Refused(
                            r.attempt,
                            r.lease_id,
                            r.outcome,
                            r.output_json,
                            r.error,
                            r.executor_id,
                            r.leased_here,
                        ),
                    )
                    continue
                if v.verdict == "released":  # handed back unrun: not an attempt
                    continue
                self._send_cancels(v.cancel)
                ended.append((c, v))
            try:  # the next steps go out first; the record of what ended can wait for them
                await self._hand_out(wanting, wants, leases)
            finally:
                for c, v in ended:
                    self._attempt_ended(c.member, v.snapshot, c.output_json, v.ends_run, v.final)

    async def _results_loop(self) -> None:
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            batch, self._results = self._results[:500], self._results[500:]
            if self._results:
                self._results_ready.set()
            if not batch:
                continue
            try:
                await self._record_results(batch)
            except Exception:  # Redis unreachable: keep them for the next try
                log.exception("recording %d results failed; will retry", len(batch))
                self._results[:0] = batch
                self._results_ready.set()
                await asyncio.sleep(0.5)
            if self._saturated:  # work may still be waiting for slots freed since
                self.wake()

    def _attempt_ended(
        self,
        member: str,
        snapshot: dict[str, str],
        output_json: str,
        ends_run: bool,
        final: RunState | None = None,
    ) -> None:
        """Record an attempt a Lua call just ended: history, span, metrics."""
        if snapshot:
            self.history.step_changed(member, snapshot, output_json)
            tracing.record_step(member, snapshot, time.time_ns())
            self.metrics.attempt_ended(snapshot)
        if ends_run:
            self.history.run_ended(member.partition(":")[0], final)

    async def submit(self, runs: list[Submission]) -> list[tuple[bool, str]]:
        """Queue new runs and, in the same round trip, lease work to the free slots, so a
        run submitted to an idle fleet starts without a dispatch round of its own. While a
        round is under way the runs are only queued; that round or the next takes them."""
        if self._round.locked():
            return await self.queue.submit_many(runs)
        async with self._round:
            wanting, wants = self._wants()
            created, leases = await self.queue.submit_and_dispatch(runs, wants, self.lease_ms)
            await self._hand_out(wanting, wants, leases)
        return created

    async def cancel_run(self, run_id: str, reason: str) -> str:
        """Cancel a run; tells executors to stop its running steps. Returns the run's state."""
        state, running = await self.queue.cancel_run(run_id, reason)
        if state == "cancelled":
            self._send_cancels(running, reason=f"run cancelled: {reason}")
            self.history.run_ended(run_id)
            return "CANCELLED"
        return state

    # Loops -------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            try:
                await self._dispatch_round()
            except Exception:
                log.exception("dispatch round failed")
                await asyncio.sleep(0.5)

    async def _dispatch_round(self) -> None:
        async with self._round:
            wanting, wants = self._wants()
            if wants:
                await self._hand_out(
                    wanting, wants, await self.queue.dispatch_many(wants, self.lease_ms)
                )

    def _wants(self) -> tuple[list[ExecutorSession], list[tuple[str, list[str], int]]]:
        """What to lease to whom: first every free slot, sessions in rotating order; then
        each session's prefetch room, so that held work never waits while a slot is idle."""
        sessions = [s for s in self.sessions.values() if not s.draining]
        if not sessions:
            return [], []
        self._rotation = (self._rotation + 1) % len(sessions)
        order = sessions[self._rotation :] + sessions[: self._rotation]
        wanting = [s for s in order if s.free_slots > 0]
        wants = [(s.info.executor_id, self._queues_of(s), s.free_slots) for s in wanting]
        if self.prefetch:
            held = [s for s in order if s.room(self.prefetch) > 0]
            wanting += held
            wants += [(s.info.executor_id, self._queues_of(s), s.room(self.prefetch)) for s in held]
        if not wanting:
            self._saturated = True
        return wanting, wants

    async def _hand_out(
        self,
        wanting: list[ExecutorSession],
        wants: list[tuple[str, list[str], int]],
        leases: list[list[Leased]],
    ) -> None:
        """Build the leased steps' inputs and send them to their executors."""
        if not wants:
            return
        self._saturated = any(
            len(got) >= n for (_, _, n), got in zip(wants, leases, strict=True)
        ) or any(s.free_slots + s.room(self.prefetch) == 0 for s in self.sessions.values())
        annotations: dict[str, dict[str, str]] = {}
        outgoing: list[tuple[ExecutorSession, Assignment]] = []
        failed: list[Completion] = []
        for session, leased_list in zip(wanting, leases, strict=True):
            for leased in leased_list:
                try:
                    leased = await self._expand_outputs(leased)
                    input_json, edges, sources = step_input(leased)
                    if self.documents is not None:
                        input_json = await self.documents.shrink(
                            input_json, f"{leased.step['input_id'] or 'input'}.json"
                        )
                except (MissingValue, ValueError, KeyError, RecursionError) as exc:
                    # The mapping found nothing (an upstream output lacks the field): no
                    # retry can change that, so the step fails at once.
                    failed.append(
                        Completion(
                            leased.member, leased.attempt, "FATAL", "", f"input_mapping: {exc}"
                        )
                    )
                    continue
                except LargeDocumentError as exc:
                    outcome = "FAILED" if exc.retryable else "FATAL"
                    retry_at = now_ms() + int(self.retry.delay_seconds(leased.attempt) * 1000)
                    failed.append(
                        Completion(
                            leased.member, leased.attempt, outcome, "", f"input: {exc}", retry_at
                        )
                    )
                    continue
                notes, traceparent = tracing.step_fields(
                    leased.trace_id,
                    leased.run_span,
                    leased.upstream_spans,
                    leased.step.get("error", ""),
                    leased.attempt,
                )
                if edges:
                    notes["lineage"] = json.dumps(edges)
                if notes:
                    annotations[leased.member] = notes
                session.in_flight[leased.member] = leased.attempt
                if leased.run_started:
                    self.history.run_started(leased.run_id, now_ms())
                outgoing.append((session, _assignment(leased, input_json, sources, traceparent)))
        if annotations:  # before the executor can report, so a result always finds them
            await self.queue.annotate(annotations)
        for session, assignment in outgoing:
            session.outbox.put_nowait(assignment)
        if failed:
            for c, v in zip(failed, await self.queue.complete_many(failed), strict=True):
                self._send_cancels(v.cancel)
                self._attempt_ended(c.member, v.snapshot, "", v.ends_run, v.final)

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

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                for expired in await self.queue.expire_leases():
                    member = expired["member"]
                    run_id, _, step_id = member.partition(":")
                    log.warning(
                        "lease expired: %s (%s)",
                        member,
                        expired["verdict"],
                        extra=logs.run_fields(run_id, step_id),
                    )
                    self.metrics.lease_expiries.add(1)
                    self._send_cancels(list(flat_dict(expired["cancel"]).items()))
                    self._attempt_ended(
                        member, flat_dict(expired["snapshot"]), "", expired["verdict"] == "failed"
                    )
                    self.wake()
                if await self.queue.promote_due():
                    self.wake()
                await self._save_fleet()
                before = len(self.queue.queue_variants)
                if len(await self.queue.refresh_queue_variants()) != before:
                    self.wake()
                queues = {
                    q
                    for s in self.sessions.values()
                    for q in own_queues(s.info.queues, s.info.namespaces)
                }
                self.metrics.set_depths(await self.queue.depths(queues | self.queue.queue_variants))
            except Exception:
                log.exception("reaper round failed")

    async def _wake_listener(self) -> None:
        """Wake on "work was queued" from any replica; resubscribe if the connection drops."""
        while True:
            pubsub = self.queue.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.WAKE_CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["data"] != self.queue.origin.encode():
                        self.wake()
            except (ConnectionError, OSError, RedisError):
                log.warning("wake channel lost; resubscribing")
                await asyncio.sleep(0.5)
            finally:
                await pubsub.aclose()

    def _queues_of(self, session: ExecutorSession) -> list[str]:
        """The queues an executor takes from: its own in the namespaces it serves, and the
        announced variants of them (other namespaces', labelled ones) it may serve."""
        i = session.info
        own = own_queues(i.queues, i.namespaces)
        return own + sorted(
            v
            for v in self.queue.queue_variants
            if v not in own and serves(v, i.queues, i.labels, i.namespaces)
        )

    # The fleet ---------------------------------------------------------------------------

    def describe(self, session: ExecutorSession, state: str) -> str:
        i = session.info
        return json.dumps(
            {
                "executor_id": i.executor_id,
                "state": state,
                "queues": i.queues,
                "namespaces": list(i.namespaces),
                "slots": i.slots,
                "in_flight": len(session.in_flight),
                "labels": i.labels,
                "software_version": i.software_version,
                "python_version": i.python_version,
                "connected_at": session.connected_at,
                "last_seen": session.last_seen,
                "scheduler_id": self.scheduler_id,
                "packages": list(i.packages),
                "slot_errors": session.slot_errors,
                "last_slot_error": session.last_slot_error,
            }
        )

    async def _save_fleet(self) -> None:
        """Record this replica's executors in Redis, so any replica can list the fleet."""
        now = time.time()
        known = {
            s.info.executor_id: self.describe(s, "DRAINING" if s.draining else "CONNECTED")
            for s in self.sessions.values()
        }
        await self.queue.save_executors(known)
        left = [e for e, at in self._gone.items() if e not in self.sessions]
        if left:
            saved = await self.queue.load_executors()
            lost = {}
            for executor_id in left:
                if executor_id in saved:
                    d = json.loads(saved[executor_id])
                    if d.get("scheduler_id") == self.scheduler_id and d["state"] != "LOST":
                        d.update(state="LOST", in_flight=0)
                        lost[executor_id] = json.dumps(d)
            await self.queue.save_executors(lost)
            # Lost executors stay listed for an hour, then are forgotten.
            old = [e for e, at in self._gone.items() if now - at > 3600]
            await self.queue.forget_executors(old)
            for e in old:
                self._gone.pop(e, None)

    # Helpers -----------------------------------------------------------------------------

    def _send_cancels(self, cancel: list[tuple[str, str]], reason: str = "run failed") -> None:
        for member, executor_id in cancel:
            session = self.sessions.get(executor_id)
            attempt = session.in_flight.pop(member, None) if session else None
            if session is not None and attempt is not None:
                run_id, _, step_id = member.partition(":")
                session.outbox.put_nowait(Cancel(run_id, step_id, attempt, reason))


def _assignment(
    leased: Leased, input_json: str, sources: dict[str, str], traceparent: str
) -> Assignment:
    s = leased.step
    return Assignment(
        run_id=leased.run_id,
        step_id=leased.step_id,
        attempt=leased.attempt,
        task_id=s["task_id"],
        task_version=s["task_version"],
        digest=s["digest"],
        entry_point=s["entry_point"],
        input_json=input_json,
        timeout_seconds=int(s["timeout"]),
        lease_id=s.get("lease", ""),
        input_id=s["input_id"],
        output_id=s["output_id"],
        upstream_output_ids=json.loads(s.get("read_output_ids") or "{}"),
        input_sources=sources,
        traceparent=traceparent,
        namespace=s.get("namespace", "default"),
    )
