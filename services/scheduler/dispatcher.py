"""``Dispatcher``: executor sessions, lease dispatch, results, heartbeats, and the reaper.

Dispatch is event-driven, not polled: a round runs when work may be available (a submit or a
retry on any scheduler replica, announced on a Redis channel; a freed slot; a new executor)
and hands each session at most its free slots, rotating the order of sessions for fairness.
A one-second tick runs the reaper (expired leases, due retries) as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from services.common.mapping import MissingValue
from services.scheduler import keys, step_inputs
from services.scheduler.models import Run, StepRun, ms_to_dt
from services.scheduler.retry_policy import RetryPolicy
from services.scheduler.run_queue import Leased, RunQueue, now_ms
from services.scheduler.run_store import RunStore

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


@dataclass(frozen=True)
class Cancel:
    """A step attempt an executor must stop."""

    run_id: str
    step_id: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class StepReport:
    """The end of a step attempt, as an executor reports it."""

    run_id: str
    step_id: str
    attempt: int
    outcome: str  # SUCCEEDED | FAILED | FATAL | TIMED_OUT | CANCELLED
    output_json: str = ""
    error: str = ""


@dataclass
class ExecutorSession:
    """One connected executor: its capacity, what it runs, and its outbox."""

    info: ExecutorInfo
    in_flight: dict[str, int] = field(default_factory=dict)  # step-key -> attempt
    outbox: asyncio.Queue[Assignment | Cancel | None] = field(default_factory=asyncio.Queue)
    last_seen: float = field(default_factory=time.time)
    draining: bool = False

    @property
    def free_slots(self) -> int:
        return 0 if self.draining else self.info.slots - len(self.in_flight)


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
        store: RunStore,
        lease_seconds: int = 30,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.queue = queue
        self.store = store
        self.lease_ms = lease_seconds * 1000
        self.retry = retry
        self.sessions: dict[str, ExecutorSession] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rotation = 0

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._dispatch_loop()),
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
        old = self.sessions.get(info.executor_id)
        if old is not None:  # a reconnect replaces the old stream
            old.outbox.put_nowait(None)
        session = ExecutorSession(info)
        self.sessions[info.executor_id] = session
        log.info(
            "executor %s connected: queues=%s slots=%d", info.executor_id, info.queues, info.slots
        )
        self.wake()
        return session

    def close_session(self, session: ExecutorSession) -> None:
        if self.sessions.get(session.info.executor_id) is session:
            del self.sessions[session.info.executor_id]
        # Its leases stay: the executor may reconnect and report; otherwise they expire.
        log.info("executor %s disconnected", session.info.executor_id)

    async def heartbeat(
        self, session: ExecutorSession, running: list[tuple[str, str, int]], draining: bool = False
    ) -> None:
        session.last_seen = time.time()
        if draining and not session.draining:
            log.info("executor %s is draining: no new work for it", session.info.executor_id)
        session.draining = session.draining or draining
        stale = await self.queue.heartbeat(
            [(keys.step_key(r, s), a) for r, s, a in running], self.lease_ms
        )
        for member in stale:
            run_id, _, step_id = member.partition(":")
            attempt = next(a for r, s, a in running if r == run_id and s == step_id)
            session.in_flight.pop(member, None)
            session.outbox.put_nowait(
                Cancel(run_id, step_id, attempt, "attempt is no longer current")
            )

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

    async def report(self, session: ExecutorSession, report: StepReport) -> str:
        """Record a step result; returns the verdict ('stale' when fenced off)."""
        member = keys.step_key(report.run_id, report.step_id)
        session.in_flight.pop(member, None)
        session.last_seen = time.time()
        retry_at = now_ms() + int(self.retry.delay_seconds(report.attempt) * 1000)
        verdict = await self.queue.complete(
            member, report.attempt, report.outcome, report.output_json, report.error, retry_at
        )
        self.wake()
        if verdict.verdict == "stale":
            log.warning("refused stale result for %s attempt %d", member, report.attempt)
            return "stale"
        self._send_cancels(verdict.cancel)
        await self._persist(report.run_id)
        return verdict.verdict

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
        sessions = list(self.sessions.values())
        if not sessions:
            return
        self._rotation = (self._rotation + 1) % len(sessions)
        for session in sessions[self._rotation :] + sessions[: self._rotation]:
            free = session.free_slots
            if free <= 0 or self.sessions.get(session.info.executor_id) is not session:
                continue
            leases = await self.queue.dispatch(
                session.info.executor_id, session.info.queues, free, self.lease_ms
            )
            lineage: dict[str, list[tuple[str, str]]] = {}
            ready: list[Assignment] = []
            for leased in leases:
                try:
                    input_json, edges, sources = step_input(leased)
                except (MissingValue, ValueError, KeyError) as exc:
                    # The mapping found nothing (an upstream output lacks the field): no
                    # retry can change that, so the step fails at once.
                    await self.queue.complete(
                        leased.member, leased.attempt, "FATAL", "", f"input_mapping: {exc}", 0
                    )
                    await self._persist(leased.run_id)
                    continue
                if edges:
                    lineage[leased.member] = edges
                session.in_flight[leased.member] = leased.attempt
                s = leased.step
                ready.append(
                    Assignment(
                        run_id=leased.run_id,
                        step_id=leased.step_id,
                        attempt=leased.attempt,
                        task_id=s["task_id"],
                        task_version=s["task_version"],
                        digest=s["digest"],
                        entry_point=s["entry_point"],
                        input_json=input_json,
                        timeout_seconds=int(s["timeout"]),
                        input_id=s["input_id"],
                        output_id=s["output_id"],
                        upstream_output_ids=json.loads(s.get("read_output_ids") or "{}"),
                        input_sources=sources,
                    )
                )
            if lineage:  # before the executor can report, so a result always finds it
                await self.queue.record_lineage(lineage)
            for assignment in ready:
                session.outbox.put_nowait(assignment)

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                for expired in await self.queue.expire_leases():
                    log.warning("lease expired: %s (%s)", expired["member"], expired["verdict"])
                    self._send_cancels(
                        list(zip(expired["cancel"][0::2], expired["cancel"][1::2], strict=True))
                    )
                    await self._persist(expired["member"].partition(":")[0])
                    self.wake()
                if await self.queue.promote_due():
                    self.wake()
            except Exception:
                log.exception("reaper round failed")

    async def _wake_listener(self) -> None:
        """Wake on "work was queued" from any replica; resubscribe if the connection drops."""
        while True:
            pubsub = self.queue.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.WAKE_CHANNEL)
                while True:
                    if await pubsub.get_message(timeout=1.0) is not None:
                        self.wake()
            except (ConnectionError, OSError, RedisError):
                log.warning("wake channel lost; resubscribing")
                await asyncio.sleep(0.5)
            finally:
                await pubsub.aclose()

    # Helpers -----------------------------------------------------------------------------

    def _send_cancels(self, cancel: list[tuple[str, str]]) -> None:
        for member, executor_id in cancel:
            session = self.sessions.get(executor_id)
            attempt = session.in_flight.pop(member, None) if session else None
            if session is not None and attempt is not None:
                run_id, _, step_id = member.partition(":")
                session.outbox.put_nowait(Cancel(run_id, step_id, attempt, "run failed"))

    async def _persist(self, run_id: str) -> None:
        """Write behind the run's current step attempts, and the run when it has finished."""
        run_hash, steps, outputs = await self.queue.read_run(run_id)
        if not run_hash:
            return
        for h in steps:
            if int(h.get("attempt", 0)) > 0 and h.get("state") not in {"RUNNING", "QUEUED"}:
                self.store.record_step_later(
                    run_id, StepRun.from_redis(h, outputs.get(h["step_id"], ""))
                )
        run = Run.from_redis(run_hash, steps, outputs)
        if run.finished:
            self.store.update_run_later(
                run_id,
                {
                    "state": run.state,
                    "lineage": [list(edge) for edge in run.lineage],
                    "processing_summary": run.summary(),
                    "output_json": run.output_json,
                    "error": run.error,
                    "started_at": run.started_at,
                    "ended_at": run.ended_at or ms_to_dt(now_ms()),
                },
            )
