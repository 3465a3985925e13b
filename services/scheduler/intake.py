"""``Intake``: what executors report — heartbeats, progress, log lines and results.

Results are recorded in batches: whatever arrived while the previous batch was in Redis goes
in the next one, one round trip per batch (which also leases the slots the batch freed), so
the cost per result falls as load rises. Fencing is decided there, in Lua: a result counts
only for the attempt and lease that are current; any other is refused and told to the
listeners (the history records it as a superseded execution).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field

from services.common import logs
from services.scheduler import keys
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.fleet import Cancel, ExecutorSession, Fleet, Renewed, Vitals
from services.scheduler.leasing import Leaser
from services.scheduler.listeners import Listeners, Refused
from services.scheduler.queue_records import Completion, Verdict
from services.scheduler.run_queue import RunQueue

log = logging.getLogger(__name__)

_UNENDED = ("PENDING", "QUEUED", "RUNNING")  # a step's states before its attempt ends


def _refused_kind(r: StepReport, step: dict[str, str]) -> str:
    """What a refused result is, for the log: "stale" (a warning: its lease lapsed, or Redis
    lost the step) or one that is expected — a cancelled step's result that crossed its
    cancel, or one sent again (after a reconnect) for an attempt that already ended."""
    if step.get("state") == "CANCELLED":
        return "a cancelled step's"
    if (
        step.get("lease") == r.lease_id != ""
        and step.get("attempt") == str(r.attempt)
        and step.get("state") not in _UNENDED
    ):
        return "a recorded attempt's repeated"
    return "stale"


MAX_BATCH = 500


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
    condition_view: str = ""  # of an output by reference: what later steps' conditions read
    leased_here: bool = False  # this replica leased that attempt to that executor's stream


def _step_fields(r: StepReport, received_us: int) -> dict[str, int | str]:
    """What the result sets on its step's hash: the executor's timings and when the result
    came; the view of an output by reference that later steps' conditions read (lib.lua)."""
    fields: dict[str, int | str] = {**r.timings, "t_rep": received_us} if r.timings else {}
    if r.condition_view:
        fields["condition_view"] = r.condition_view
    return fields


@dataclass(frozen=True)
class RunningStep:
    """A step an executor's heartbeat says it runs (or holds for a free slot)."""

    run_id: str
    step_id: str
    attempt: int
    lease_id: str = ""

    @property
    def member(self) -> str:
        return keys.step_key(self.run_id, self.step_id)


class Intake:
    """Takes executors' reports; records results in batches."""

    def __init__(
        self,
        queue: RunQueue,
        fleet: Fleet,
        leaser: Leaser,
        listeners: Listeners,
        clock: Clock = SYSTEM,
    ) -> None:
        self.queue = queue
        self.fleet = fleet
        self.leaser = leaser
        self.listeners = listeners
        self.clock = clock
        self._pending: list[tuple[StepReport, int]] = []  # waiting for the next batch
        self._ready = asyncio.Event()
        self.batches = 0  # results recorded, in how many round trips (for tests and stats)

    async def heartbeat(
        self,
        session: ExecutorSession,
        running: list[RunningStep],
        draining: bool = False,
        sequence: int = 0,
        vitals: Vitals | None = None,
        resting_seconds: float = 0.0,
    ) -> None:
        """Renew the leases of what an executor runs; cancel the attempts that are no longer
        current; then (when it numbered the heartbeat) tell it the renewal is done. An
        executor that rests (``resting_seconds``) is given nothing new until then; one whose
        rest is over is asked in the next round."""
        session.last_seen = now = self.clock.time()
        session.heard_heartbeat = sequence or session.heard_heartbeat
        if draining and not session.draining:
            log.info("executor %s is draining: no new work for it", session.executor_id)
        session.draining = session.draining or draining
        was_resting = session.resting_until > 0
        session.resting_until = now + resting_seconds if resting_seconds > 0 else 0.0
        if resting_seconds > 0 and not was_resting:
            session.rest_began = now
            log.warning(
                "executor %s rests for %.0fs: steps kept failing in it",
                session.executor_id,
                resting_seconds,
            )
        elif was_resting and not resting_seconds:
            self.queue.work_was_queued()
            self.leaser.wake()
        session.vitals = vitals or Vitals()
        stale = set(
            await self.queue.heartbeat(
                [(r.member, r.attempt, r.lease_id) for r in running],
                self.leaser.lease_ms,
                session.executor_id,
            )
        )
        for r in running:
            if r.member not in stale:  # after a reconnect: what it runs takes its slots
                session.in_flight[r.member] = r.attempt
                continue
            if session.take(r.member) == r.attempt:
                session.stopping[r.member] = r.attempt
            session.outbox.put_nowait(
                Cancel(r.run_id, r.step_id, r.attempt, "attempt is no longer current")
            )
        if sequence:
            session.outbox.put_nowait(Renewed(sequence))

    async def progress(
        self, session: ExecutorSession, step: RunningStep, fraction: float, message: str
    ) -> None:
        """Pass a running step's progress on to the run's watchers."""
        if session.in_flight.get(step.member) == step.attempt:
            await asyncio.gather(
                self.reported_on(session, step),
                self.queue.notes.add_progress(
                    step.run_id, step.step_id, step.attempt, fraction, message
                ),
            )

    async def log(
        self, session: ExecutorSession, step: RunningStep, level: str, message: str
    ) -> None:
        """Pass a line a running step logged on to watchers, and keep it with the attempt."""
        if session.in_flight.get(step.member) == step.attempt:
            await asyncio.gather(
                self.reported_on(session, step),
                self.queue.notes.add_log(step.run_id, step.step_id, step.attempt, level, message),
            )

    async def reported_on(self, session: ExecutorSession, step: RunningStep) -> None:
        """An executor that reports progress or a log line for a step has it: the first such
        report of an attempt renews its lease and marks it heard, as a heartbeat naming it
        would. Without it, an attempt whose executor died after reporting progress but
        before its first heartbeat was taken for one lost in flight — retried without
        counting, "before the executor said it had the step". It goes beside the report's
        own write: no round trip more to wait for."""
        if session.heard.get(step.member) == step.attempt:
            return
        session.heard[step.member] = step.attempt
        await self.queue.heartbeat(
            [(step.member, step.attempt, step.lease_id)],
            self.leaser.lease_ms,
            session.executor_id,
        )  # a stale attempt is told to stop by the next heartbeat

    def report(self, session: ExecutorSession, report: StepReport) -> None:
        """Take a step result; it is recorded with the next batch (fencing decides there)."""
        member = keys.step_key(report.run_id, report.step_id)
        # Whether its end may queue work (not known of a step leased elsewhere: it may).
        wakes_work = member in session.wakes_work or member not in session.in_flight
        leased_here = report.attempt in (
            session.take(member),
            session.stopping.pop(member, None),
        )
        session.last_seen = self.clock.time()
        self.leaser.slot_freed(session, wakes_work)
        report = dataclasses.replace(report, leased_here=leased_here)
        self._pending.append((report, int(self.clock.time() * 1_000_000)))
        self._ready.set()

    async def run(self) -> None:
        """Record results as they come, a batch per round trip."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if self._pending:
                self._ready.set()
            if not batch:
                continue
            try:
                await self.record(batch)
            except Exception:  # Redis unreachable: keep them for the next try
                log.exception("recording %d results failed; will retry", len(batch))
                self._pending[:0] = batch
                self._ready.set()
                await asyncio.sleep(0.5)
            if self.leaser.saturated:  # work may still be waiting for slots freed since
                self.leaser.wake()

    async def record_pending(self) -> None:
        """Record every result taken so far, now (what ``run`` does as they come)."""
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            await self.record(batch)

    async def record(self, batch: list[tuple[StepReport, int]]) -> None:
        """Record a batch of results and, in the same round trip, lease work to the slots
        they freed (the dependents they made ready included)."""
        completions = [
            Completion(
                keys.step_key(r.run_id, r.step_id),
                r.attempt,
                r.outcome,
                r.output_json,
                r.error,
                self.leaser.retry_at_ms(r.attempt),
                _step_fields(r, received_us),
                r.lease_id,
                r.executor_id,
            )
            for r, received_us in batch
        ]
        self.batches += 1
        await self.leaser.notes.written(c.member for c in completions)
        ended: list[tuple[Completion, Verdict]] = []
        try:  # the next steps go out first; the record of what ended can wait for them
            async with self.leaser.round() as lease_round:
                verdicts, leases = await self.queue.complete_and_dispatch(
                    completions, lease_round.wants, self.leaser.lease_ms
                )
                queued = Counter(q for v in verdicts for q in v.queued_on)
                self.leaser.results_queued(lease_round, queued, leases)
                for (r, _), c, v in zip(batch, completions, verdicts, strict=True):
                    if self._counts(r, c, v):
                        self.fleet.send_cancels(v.cancel)
                        ended.append((c, v))
                await lease_round.hand_out(leases)
            if ended and any(leases):
                # hand_out only queued them: the streams' writers, woken by it, send them now,
                # before the listeners below take the loop (~0.1-0.15 ms per edge of a
                # pipeline, measured); outside the round, which other rounds wait for
                await asyncio.sleep(0)
        finally:
            for c, v in ended:
                self.listeners.step_ended(c.member, v.snapshot, c.output_json, v.ends_run, v.final)

    def _counts(self, r: StepReport, c: Completion, v: Verdict) -> bool:
        """Whether a result ended its attempt (else it was refused, or handed back unrun)."""
        if v.verdict == "stale":
            kind = _refused_kind(r, v.snapshot)
            log.log(
                logging.WARNING if kind == "stale" else logging.INFO,
                "refused %s result for %s attempt %d",
                kind,
                c.member,
                c.attempt,
                extra=logs.run_fields(r.run_id, r.step_id, c.attempt),
            )
            refused = Refused(
                r.attempt, r.lease_id, r.outcome, r.output_json, r.error, r.executor_id,
                r.leased_here,
            )  # fmt: skip
            self.listeners.execution_refused(c.member, v.snapshot, refused)
            return False
        return v.verdict != "released"  # handed back unrun: not an attempt
