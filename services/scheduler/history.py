"""``History``: keeps MongoDB's run history in step with Redis, and Redis whole from MongoDB.

Write-behind: the dispatcher tells it when a step attempt ends (with the step's hash from the
same Lua call, so no extra read) and when a run ends; finished runs are read from Redis in
one batch per interval and handed to ``RunStore``, which bulk-writes them. Nothing on the
scheduling path waits for MongoDB, and neither does this hand-over: once ``RunStore`` says
a run's end is written, the run's Redis keys get the retention period.

Recovery: every run is in MongoDB from the moment it is accepted, with its plan. A run that
MongoDB has as unfinished but Redis does not have at all (Redis restarted empty, was flushed,
or failed over to a replica that missed it) is rebuilt: its steps recreated, those MongoDB
saw complete marked COMPLETED with their outputs, the rest queued again. A run that Redis has
as finished but MongoDB does not (the scheduler died before writing it) is written again; one
that Redis has and MongoDB never got (its submit's replica died before the insert landed) is
recorded whole from Redis (``UnrecordedRuns``, checked every few seconds).
``recover()`` runs at start, when the epoch marker shows Redis lost its data, and every
``scan_seconds`` as a backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from services.common import fan_out
from services.common.stopping import cancel_and_wait
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.listeners import Listeners, Refused, RunListener
from services.scheduler.models import TERMINAL, Run, StepRun, ms_to_dt
from services.scheduler.queue_records import QueuedStep, RunSnapshot, Submission
from services.scheduler.run_queue import RunQueue
from services.scheduler.run_store import RunStore
from services.scheduler.signal_records import signal_fields, wait_starts
from services.scheduler.unrecorded_runs import UnrecordedRuns

log = logging.getLogger(__name__)


# How a refused (superseded) execution's outcome shows in the history.
_ENDED_AS = {
    "SUCCEEDED": "COMPLETED",
    "FAILED": "FAILED",
    "FATAL": "FAILED",
    "TIMED_OUT": "TIMED_OUT",
    "CANCELLED": "CANCELLED",
}


def fold_instances(
    done: dict[str, str], shown: dict[str, dict[str, str]], attempts: dict[str, int]
) -> None:
    """A rebuilt run's completed for_each instances (``done`` and ``shown`` hold them by their
    ids, as their records do) moved onto their step, as its ``done_items`` field: the step
    fans out again and takes them as they were (lib.lua's ``fan_out``), running only the
    others. A step that had gathered them keeps its own output and needs none."""
    items: dict[str, dict[str, Any]] = {}
    for step_id in list(done):
        if (at := fan_out.instance_of(step_id)) is None:
            continue
        fields = {**shown.pop(step_id, {}), "attempt": str(attempts.get(step_id, 0))}
        items.setdefault(at[0], {})[str(at[1])] = {"output": done.pop(step_id), "fields": fields}
    for parent, found in items.items():
        if parent not in done:
            shown[parent] = {**shown.get(parent, {}), "done_items": json.dumps(found)}


def completed_unleased(step: StepRun) -> bool:
    """A step that completed without an attempt: a for_each step, with its instances'
    outputs, or an instance a resumed run took over (a pipeline step a resumed run took
    over, also at attempt 0, is recorded at the submit)."""
    if step.state != "COMPLETED" or step.attempt != 0:
        return False
    return not step.cached_from or fan_out.instance_of(step.step_id) is not None


class History(RunListener):
    """Write-behind of step attempts and finished runs, and rebuilding what Redis lost. A
    listener of runs and attempts; it tells ``listeners`` when it has read a finished run
    back (``run_recorded``) and when a run it found already ended (``run_ended``)."""

    def __init__(
        self,
        queue: RunQueue,
        store: RunStore,
        listeners: Listeners,
        interval: float = 0.05,
        scan_seconds: float = 30.0,
        retention_seconds: int = 120,
        lease_seconds: float = 30.0,
        clock: Clock = SYSTEM,
        unrecorded: UnrecordedRuns | None = None,
    ) -> None:
        self.queue = queue
        self.unrecorded = unrecorded  # new runs whose documents never landed
        self.listeners = listeners
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.retention_seconds = retention_seconds
        self.store = store
        self.interval = interval
        self.scan_seconds = scan_seconds
        self.epoch = uuid.uuid4().hex
        self._ended: set[str] = set()
        self._finals: dict[str, RunSnapshot] = {}  # ended runs as their last Lua call returned
        self._written: set[str] = set()  # ends MongoDB holds now: Redis keeps them briefly
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.rebuilt = 0

    async def start(self) -> None:
        self.epoch = await self.queue.claim_epoch(self.epoch) or self.epoch
        await self.recover()
        self._tasks = [
            asyncio.create_task(self._write_loop()),
            asyncio.create_task(self._watch_loop()),
        ]

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        with contextlib.suppress(Exception):
            await self._write_ended()
            await self.store.flush()
            self._written |= self.store.take_written()
            await self._write_ended()  # the retention of what that flush wrote

    # Write-behind -------------------------------------------------------------------------

    def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
        """Record the attempt a Lua call just ended (``snapshot`` is the step's hash after)."""
        run_id, _, step_id = member.partition(":")
        if not snapshot or int(snapshot.get("attempt", 0)) < 1:
            return
        step = StepRun.from_redis({"step_id": step_id, **snapshot}, output_json)
        if step.state == "QUEUED":  # the attempt failed and the step will be retried
            step.state = "TIMED_OUT" if "timed out" in step.error else "FAILED"
            step.ended_at = step.ended_at or ms_to_dt(self.clock.now_ms())
        elif step.state in {"RUNNING", "PENDING"}:
            return
        self.store.record_step_later(run_id, step)

    def execution_refused(self, member: str, snapshot: dict[str, str], refused: Refused) -> None:
        """Record an execution whose result was refused: every execution that happened has
        its attempt record. A result sent again for an attempt that did count (an executor
        re-sends after reconnecting) is recorded again from Redis, which restores a record
        that a killed scheduler held unwritten and is a no-op otherwise (same record id).
        Any other is recorded as superseded, from what the executor reported, if the
        reporter was given that attempt (so an impostor's made-up result writes nothing)."""
        r = refused
        if r.outcome not in _ENDED_AS or not r.lease_id:  # released unrun; or no lease id
            return
        if snapshot.get("lease") == r.lease_id and snapshot.get("attempt") == str(r.attempt):
            self.attempt_ended(member, snapshot, r.output_json)
            return
        if not r.leased_here:
            return
        run_id, _, step_id = member.partition(":")
        note = "result refused: the attempt was no longer current"
        self.store.record_step_later(
            run_id,
            StepRun(
                step_id=step_id,
                task_id=snapshot.get("task_id", ""),
                task_version=snapshot.get("task_version", ""),
                state=_ENDED_AS[r.outcome],
                attempt=r.attempt,
                input_id=snapshot.get("input_id", ""),
                output_id=snapshot.get("output_id", ""),
                output_json=r.output_json if r.outcome == "SUCCEEDED" else "",
                error=f"{r.error}; {note}" if r.error else note,
                executor_id=r.executor_id,
                ended_at=ms_to_dt(self.clock.now_ms()),
                lease_id=r.lease_id,
                superseded=True,
            ),
        )

    def run_started(self, run_id: str, at_ms: int) -> None:
        """A run's first step was leased: MongoDB shows it RUNNING (unless it has ended by
        the time that is written), so ListRuns can find running runs."""
        self.store.mark_running_later(run_id, ms_to_dt(at_ms))

    def run_ended(self, run_id: str, final: RunSnapshot | None = None) -> None:
        """A run ended; ``final`` is the run as the Lua call that ended it returned it (then
        it is not read back)."""
        self._ended.add(run_id)
        if final is not None:
            self._finals[run_id] = final
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.interval)
            async for attempt in AsyncRetrying(  # runs that end meanwhile join the next try
                wait=wait_exponential(multiplier=0.2, max=5.0),
                before_sleep=self._write_failed,
            ):
                with attempt:
                    await self._write_ended()

    def _write_failed(self, state: RetryCallState) -> None:
        self.listeners.history_write_failed()
        log.error(
            "writing finished runs failed (%d in a row); will retry",
            state.attempt_number,
            exc_info=state.outcome.exception() if state.outcome else None,
        )

    async def _write_ended(self) -> None:
        """Hand the runs that ended to ``RunStore``; give those whose end it has written
        the retention period in Redis."""
        ended, self._ended = self._ended, set()
        finals, self._finals = self._finals, {}
        if ended:
            try:
                found = await self.queue.reader.read_runs(sorted(ended - finals.keys()))
            except Exception:
                self._ended |= ended
                self._finals.update(finals)
                raise
            found.update((run_id, finals[run_id]) for run_id in ended & finals.keys())
            for run_id, (run_hash, steps, outputs) in found.items():
                if not run_hash:
                    continue
                try:
                    self._record_end(run_id, Run.from_redis(run_hash, steps, outputs), run_hash)
                except Exception:  # one run's fault must not drop the other ends taken with it
                    self.listeners.history_write_failed()
                    log.exception("run %s ended, and its end could not be recorded", run_id)
        # Once MongoDB holds the ends, Redis keeps the runs only for the retention period
        # (not the hour their keys got when they ended, which covers a MongoDB outage).
        written, self._written = self._written, set()
        if written:
            try:
                await self.queue.retain(sorted(written), self.retention_seconds)
            except Exception:
                self._written |= written
                raise

    def _record_end(self, run_id: str, run: Run, run_hash: dict[str, str]) -> None:
        self.listeners.run_recorded(run, run_hash)
        for step in run.steps:  # attempts that ended are recorded already, but not
            if step.state in ("CANCELLED", "SKIPPED") or completed_unleased(step):
                self.store.record_step_later(run_id, step)  # steps that never ran
        try:
            summary = run.summary()
        except Exception:  # a fault in what is derived from the run must not keep its end out
            self.listeners.history_write_failed()
            log.exception("run %s: its summary could not be made; its end goes without", run_id)
            summary = None
        self.store.update_run_later(run_id, run.final_fields(summary))

    # Recovery -----------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        last_scan = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            self._take_written()
            try:
                await self._check_unrecorded()
            except Exception:
                log.exception("checking new runs' documents failed")
            try:
                current = await self.queue.claim_epoch(self.epoch)
                if current != self.epoch:
                    log.warning("Redis lost its data (epoch marker gone); rebuilding runs")
                    self.epoch = current or self.epoch
                    await self.recover()
                    last_scan = time.monotonic()
                elif time.monotonic() - last_scan > self.scan_seconds:
                    await self.recover()
                    last_scan = time.monotonic()
            except Exception:
                log.exception("recovery check failed")

    def _take_written(self) -> None:
        """The runs whose ends ``RunStore`` has written: their Redis keys get the retention
        period (within a second of the write, by the write loop)."""
        written = self.store.take_written()
        if written:
            self._written |= written
            self._wake.set()

    async def _check_unrecorded(self) -> None:
        """New runs: forget those whose documents were written; record those never written
        (``UnrecordedRuns``) — the ended ones then get the retention period in Redis."""
        if self.unrecorded is None:
            return
        await self.unrecorded.forget_recorded()
        ended = await self.unrecorded.record(self.clock.now_ms())
        if ended:
            self._written.update(ended)
            self._wake.set()

    async def recover(self) -> int:
        """Rebuild unfinished runs Redis lacks; rewrite finished ones MongoDB lacks."""
        rebuilt = 0
        async for batch in self.store.unfinished_runs(batch_size=500):
            states = await self.queue.reader.run_states(batch)
            for run_id, state in zip(batch, states, strict=True):
                if state in TERMINAL:
                    self.listeners.run_ended(run_id, None)
            lost = [run_id for run_id, state in zip(batch, states, strict=True) if not state]
            docs = await self.store.with_plans(lost) if lost else []
            submissions = [await self._rebuild(d) for d in docs if d.get("plan")]
            if submissions:
                results = await self.queue.submit_many(submissions)
                rebuilt += sum(created for created, _ in results)
                for run_id in self.queue.take_ended_at_submit():  # every step left was skipped
                    self.listeners.run_ended(run_id, None)
        if rebuilt:
            log.warning("rebuilt %d runs from MongoDB", rebuilt)
        self.rebuilt += rebuilt
        return rebuilt

    async def _rebuild(self, doc: dict[str, object]) -> Submission:
        run_id = str(doc["run_id"])
        plan: dict = doc["plan"]  # type: ignore[assignment]
        # Steps a resume took over: in the plan from the submit (their records may not be
        # written yet), then as their records say.
        taken = plan.get("taken_over") or {}
        done: dict[str, str] = {k: v["output"] for k, v in taken.items()}
        shown: dict[str, dict[str, str]] = {k: v["shown"] for k, v in taken.items()}
        attempts: dict[str, int] = {}
        created_ms = int(doc.get("created_ms", 0))  # type: ignore[call-overload]
        ended_ms = dict.fromkeys(taken, created_ms)
        for step in await self.store.step_attempts(run_id):
            attempts[step.step_id] = max(attempts.get(step.step_id, 0), step.attempt)
            if step.state == "COMPLETED" and not step.superseded:
                done[step.step_id] = step.output_json
                shown[step.step_id] = step.ended_fields()
                if step.ended_at is not None:
                    ended_ms[step.step_id] = int(step.ended_at.timestamp() * 1000)
        fold_instances(done, shown, attempts)
        signaled = signal_fields(doc)  # signals that came before Redis lost the run
        waits = wait_starts(plan["steps"], signaled, ended_ms, created_ms)  # and waits begun
        specs = [
            QueuedStep(
                s["step_id"],
                s["deps"],
                s["dependents"],
                {**s["fields"], **signaled.get(s["step_id"], {}), **waits.get(s["step_id"], {})},
            )
            for s in plan["steps"]
        ]
        # Steps of the lost state may still run on executors: their leases cannot be renewed
        # now (heartbeats get them cancelled, or their fences stop them), so waiting one
        # lease period before running them again rules out two executions at once.
        not_before = self.clock.now_ms() + int(self.lease_seconds * 1000)
        not_before = max(not_before, int(plan["run_fields"].get("scheduled_ms", 0)))  # delayed
        return Submission(
            run_id, plan["run_fields"], specs, "", done, attempts, not_before, done_fields=shown
        )
