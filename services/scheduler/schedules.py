"""``Schedules``: runs started at the times a cron expression or an interval gives.

What Celery beat's schedule, Temporal's Schedules and Hatchet's cron triggers do, for a
task or a pipeline on one input, in one namespace. A schedule lives in MongoDB
(``ScheduleStore``); every replica's reaper calls ``fire_due`` each second, and each due
time starts one run, however many replicas see it:

- the run is submitted with the request id ``schedule/<id>/<due ms>``, so replicas that fire
  the same time at once get the same run (the submit's idempotency, ``RequestClaims``);
- the schedule then moves on to its next time with an update filtered by the due time it
  read, so only one of them counts it.

Chosen where nothing asked (each as Temporal or Celery beat does):

- **Overlap**: while the last run has not ended, a due time starts nothing and is counted as
  skipped (Temporal's default, SKIP); ALLOW starts another run anyway.
- **Catch-up**: times that passed while no replica ran start one run, for the latest of
  them (Celery beat runs a missed entry once); the rest are counted as skipped. A paused
  schedule resumes from its next time after now.
- **Whose runs**: a schedule's runs are submitted as the key that created it (their
  ``submitted_by``; it may cancel them), with that key's role, in the schedule's namespace
  and under its limits, labelled ``wtm.schedule`` and ``wtm.schedule_time`` (the time it
  was due for). The key is looked up at each due time (as
  a call's key is, cached for seconds): once it is revoked or expired the schedule starts
  nothing more — a revoked key acts no more, whoever's schedule it set up — and each due
  time says why (``last_error``) until a live key creates it again. Pausing or deleting a
  schedule is for its creator or a role that may cancel anyone's runs.
- A due time that cannot start its run (its task withdrawn, the namespace at its limit of
  runs, its creator's key revoked) records why in ``last_error`` and counts as skipped; the
  schedule keeps going.
- A run started while the schedule was paused or resumed under it (the replica had read
  it due) is recorded as its last run all the same, and counted once (one deleted under it
  keeps no record, and its run goes on).
- **Which time a run stands for** reaches task code only through its input (it gets nothing
  else): with ``due_time_field`` set, each run's input has that key set to its due time.
- **Backfill** (Temporal's, Airflow's): a run for each time of a past range, each as that
  time would have started it, with the same request id, so a time that already has a run
  gets no second one and a retried backfill starts only what is missing. Not the schedule's
  last run, and not held back by its overlap or its pause: an explicit request, as a trigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from datetime import UTC, datetime

from opentelemetry import metrics
from opentelemetry.metrics import Meter

from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    WtmError,
)
from services.common import auth
from services.common.gate import Gate
from services.common.stopping import cancel_and_wait
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.planning import (
    SubmitRequest,
    check_input,
    parse_input,
    plan_run,
)
from services.scheduler.runs import RunService
from services.scheduler.schedule_backfills import Backfilled, Backfills
from services.scheduler.schedule_records import OVERLAPS, ScheduleRecord, ScheduleStore
from services.scheduler.submit_checks import check_request, request_key

log = logging.getLogger(__name__)

SCHEDULE_LABEL = "wtm.schedule"
TIME_LABEL = "wtm.schedule_time"  # the time a run was due (ISO, UTC), as Temporal records it
SUBMIT_RUN = "/wtm.v1.SchedulerService/SubmitRun"  # what the audit log calls a fired run
MAX_PER_NAMESPACE = 1000
MAX_BACKFILL = 1000  # times per BackfillSchedule call
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def iso_ms(ms: int) -> str:
    """``ms`` as ISO 8601 in UTC to the millisecond, "Z" for UTC (a run's due time)."""
    due = datetime.fromtimestamp(ms / 1000, UTC)
    return due.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Schedules:
    """Creates, reads, pauses, resumes and deletes schedules, and starts their due runs."""

    def __init__(
        self,
        store: ScheduleStore,
        runs: RunService,
        clock: Clock = SYSTEM,
        max_per_namespace: int = MAX_PER_NAMESPACE,
        batch: int = 100,
        meter: Meter | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.store = store
        self.runs = runs
        self.clock = clock
        self.max_per_namespace = max_per_namespace
        self.batch = batch  # due schedules fired per reaper second, per replica
        self._firing: asyncio.Task[None] | None = None
        # the creators' keys (None, or a gate without keys: auth is off), and the audit log,
        # where each run a schedule starts is a submit of its creator's
        self.gate = gate
        meter = meter or metrics.get_meter("wtm.scheduler")
        self.started = meter.create_counter(
            "wtm_schedule_runs_started", description="runs schedules started, per namespace"
        )
        self.backfills = Backfills(
            store, self._backfill_one, lambda run_ids: runs.reader.run_states(run_ids), batch
        )
        self.skipped = meter.create_counter(
            "wtm_schedule_times_skipped",
            description="due times of schedules that started no run, per namespace and why "
            "(overlap: the last run went on; missed: no replica ran then; refused: the submit was)",
        )

    async def create(self, record: ScheduleRecord) -> ScheduleRecord:
        """Check and store a new schedule of the call's namespace (``record.namespace``)."""
        auth.one_namespace(record.namespace)
        if not _ID.match(record.schedule_id):
            raise InvalidArgument(
                "must be 1-63 letters, digits, '_', '.', '-', starting with a letter or digit",
                field="schedule.schedule_id",
            )
        if record.overlap not in OVERLAPS:
            raise InvalidArgument(f"must be one of {', '.join(OVERLAPS)}", field="schedule.overlap")
        if record.due_time_field and not _FIELD.match(record.due_time_field):
            raise InvalidArgument(
                "must be a letter or '_', then letters, digits or '_' (64 at most)",
                field="schedule.due_time_field",
            )
        for ours in (SCHEDULE_LABEL, TIME_LABEL):
            if ours in record.labels:
                raise InvalidArgument("is set by the scheduler", field=f"schedule.labels.{ours}")
        record.created_ms = self.clock.now_ms()  # an interval counts from here
        record.timing.check()
        await self._check_target(record)
        existing = await self.store.get(record.namespace, record.schedule_id)
        if existing is not None and existing.spec == record.spec:
            return existing  # the same schedule again (a retried call) is no error
        if existing is None and await self.store.count(record.namespace) >= self.max_per_namespace:
            raise FailedPrecondition(
                f"namespace {record.namespace!r} has {self.max_per_namespace} schedules, the "
                "most it may have; delete one first",
                field="schedule",
            )
        record.created_by = auth.current().key_id
        record.next_ms = 0 if record.paused else record.timing.first(record.created_ms)
        record.last_ms, record.last_run_id, record.last_error = 0, "", ""
        record.runs_started = record.times_skipped = 0
        try:
            await self.store.insert(record)
        except AlreadyExists:  # the same schedule again (a retried call) is no error
            existing = await self.store.get(record.namespace, record.schedule_id)
            if existing is None or existing.spec != record.spec:
                raise
            return existing
        return record

    async def _check_target(self, record: ScheduleRecord) -> None:
        """What a run of the schedule would be refused for, refused now (the task or the
        pipeline, the input against their schemas), each field named under ``schedule.``."""
        req = self._request(record, "", self.clock.now_ms() if record.due_time_field else 0)
        try:
            check_request(req)
            doc = parse_input(req.input_json)
            check_input(await plan_run(self.runs.catalog, req), doc)
        except WtmError as exc:
            if exc.field and not exc.field.startswith("schedule."):
                exc.field = f"schedule.{exc.field}"
                exc.message = f"schedule.{exc.message}"
                exc.args = (exc.message,)
            raise

    def _request(
        self, record: ScheduleRecord, request_id: str, due_ms: int = 0, delay: float = 0.0
    ) -> SubmitRequest:
        """The submit of the schedule's run for the time ``due_ms`` (0: none, a check),
        starting ``delay`` seconds after it is accepted (its jitter)."""
        labels = {**record.labels, SCHEDULE_LABEL: record.schedule_id}
        input_json = record.input_json or "{}"
        if due_ms:
            labels[TIME_LABEL] = iso_ms(due_ms)
            if record.due_time_field:  # over its input, an object (checked when created)
                doc = {**parse_input(input_json), record.due_time_field: iso_ms(due_ms)}
                input_json = json.dumps(doc)
        return SubmitRequest(
            task=record.task,
            pipeline=record.pipeline,
            input_json=input_json,
            priority=record.priority,
            request_id=request_id,
            labels=labels,
            namespace=record.namespace,
            run_timeout_seconds=record.run_timeout_seconds,
            start_delay_seconds=delay,
        )

    async def get(self, namespace: str, schedule_id: str) -> ScheduleRecord:
        if not schedule_id:
            raise InvalidArgument("is required", field="schedule_id")
        record = await self.store.get(auth.one_namespace(namespace), schedule_id)
        if record is None:
            raise NotFound(
                f"namespace {namespace!r} has no schedule {schedule_id!r}", field="schedule_id"
            )
        return record

    async def page(self, namespace: str, after: str, size: int) -> list[ScheduleRecord]:
        """A page of the schedules of ``namespace`` (``*``: every namespace's, for a key of
        every namespace) after the key ``after``."""
        return await self.store.page(namespace, after, size)

    async def pause(self, namespace: str, schedule_id: str) -> ScheduleRecord:
        record = await self._own(namespace, schedule_id)
        await self.store.update(record.key, {"paused": True, "next_ms": 0})
        return await self.get(namespace, schedule_id)

    async def resume(self, namespace: str, schedule_id: str) -> ScheduleRecord:
        """Resume from the next time after now; one not paused is left as it is."""
        record = await self._own(namespace, schedule_id)
        if record.paused:
            following = record.timing.next_after(self.clock.now_ms())
            await self.store.update(record.key, {"paused": False, "next_ms": following})
        return await self.get(namespace, schedule_id)

    async def delete(self, namespace: str, schedule_id: str) -> None:
        await self._own(namespace, schedule_id)
        await self.store.delete(namespace, schedule_id)

    async def trigger(self, namespace: str, schedule_id: str) -> tuple[str, ScheduleRecord]:
        """Start the schedule's run now, as one of its times would — paused or not, and
        whatever its last run is doing (an explicit request, as Temporal's trigger); its
        times go on as they were. The run's id, and the schedule."""
        record = await self._own(namespace, schedule_id)
        now = self.clock.now_ms()
        run_id, _ = await self._start(record, f"schedule/{schedule_id}/now/{now}", now)
        await self.store.update(
            record.key,
            {"last_ms": now, "last_run_id": run_id, "last_error": ""},
            {"runs_started": 1},
        )
        self.started.add(1, {"namespace": record.namespace})
        return run_id, await self.get(namespace, schedule_id)

    async def backfill(
        self, namespace: str, schedule_id: str, start_ms: int, end_ms: int, most: int = 0
    ) -> tuple[list[Backfilled], ScheduleRecord]:
        """A run for each time the schedule gives from ``start_ms`` to ``end_ms`` (both
        included, both past), in order; a time that already had its run keeps it. With
        ``most``, at most that many of them run at once; the rest wait (schedule_backfills)."""
        record = await self._own(namespace, schedule_id)
        if not 0 <= most <= MAX_BACKFILL:
            raise InvalidArgument(f"must be from 0 to {MAX_BACKFILL}", field="max_running")
        if end_ms < start_ms:
            raise InvalidArgument("must not be before start_time", field="end_time")
        if end_ms > self.clock.now_ms():
            raise InvalidArgument(
                "is in the future: a backfill is of times past (times to come start on their "
                "own; TriggerSchedule starts one now)",
                field="end_time",
            )
        times = record.timing.times_between(start_ms, end_ms, MAX_BACKFILL + 1)
        if len(times) > MAX_BACKFILL:
            raise InvalidArgument(
                f"the range gives more than {MAX_BACKFILL} times of this schedule; backfill it "
                "in parts (a time already backfilled is not started again)",
                field="end_time",
            )
        done: list[Backfilled] = []
        to_start: list[int] = []
        try:
            for due_ms in times:
                request_id = f"schedule/{schedule_id}/{due_ms}"  # as the due time's own firing
                ran = await self.runs.claimed(request_key(record.namespace, request_id))
                if ran:
                    done.append(Backfilled(due_ms, ran, started=False))
                elif most:
                    to_start.append(due_ms)
                else:
                    run_id, created = await self._start(record, request_id, due_ms)
                    done.append(Backfilled(due_ms, run_id, started=created))
        finally:  # what started before a refusal (the namespace's limit, say) is counted
            started = sum(b.started for b in done)
            if started:
                await self.store.update(record.key, {}, {"runs_started": started})
                self.started.add(started, {"namespace": record.namespace})
        if to_start:
            done += await self.backfills.add(record, to_start, most)
            done.sort(key=lambda b: b.due_ms)
        return done, await self.get(namespace, schedule_id)

    async def cancel_backfill(self, namespace: str, schedule_id: str) -> tuple[int, ScheduleRecord]:
        """Drop the schedule's waiting backfill times: how many, and the schedule."""
        dropped = await self.backfills.drop(await self._own(namespace, schedule_id))
        return dropped, await self.get(namespace, schedule_id)

    async def _backfill_one(self, record: ScheduleRecord, due_ms: int) -> tuple[str, bool]:
        """Start (and count) the run of one waiting backfill time."""
        run_id, created = await self._start(
            record, f"schedule/{record.schedule_id}/{due_ms}", due_ms
        )
        if created:
            await self.store.update(record.key, {}, {"runs_started": 1})
            self.started.add(1, {"namespace": record.namespace})
        return run_id, created

    async def _own(self, namespace: str, schedule_id: str) -> ScheduleRecord:
        """The schedule, if the caller created it or may cancel anyone's runs."""
        record = await self.get(namespace, schedule_id)
        auth.check_own(record.created_by, f"schedule {schedule_id}", "schedule_id")
        return record

    async def tick(self) -> None:
        """The reaper's duty each second: fire what is due, in the background (the leases'
        expiry must not wait on a hundred submits), unless the last firing goes on."""
        if self._firing is None or self._firing.done():
            self._firing = asyncio.create_task(self._fire_logged(), name="schedules")

    async def _fire_logged(self) -> None:
        try:
            await self.fire_due()
            await self.backfills.drip()
        except Exception:  # MongoDB out of reach: the next second tries again
            log.exception("reading the schedules that are due")

    async def close(self) -> None:
        if self._firing is not None:
            await cancel_and_wait([self._firing])

    async def fire_due(self) -> None:
        """Start the runs of the schedules whose time has come (at most ``batch`` of them)."""
        now = self.clock.now_ms()
        for record in await self.store.due(now, self.batch):
            try:
                await self._fire(record, now)
            except Exception:  # one schedule's trouble (MongoDB away) must not stop the rest
                log.exception("firing schedule %s", record.key)

    async def _fire(self, record: ScheduleRecord, now: int) -> bool:
        """Start (or skip) the latest due time of ``record``, and move it on to its next
        time: whether this replica moved it (another may have first)."""
        timing = record.timing
        latest, missed = timing.latest_until(record.next_ms, now)
        changes: dict[str, object] = {"next_ms": timing.next_after(now)}
        skipped, run_id = {"missed": missed}, ""
        if record.overlap == "SKIP" and await self._last_run_going(record):
            skipped["overlap"] = 1
        else:
            try:
                run_id, _ = await self._start(
                    record,
                    f"schedule/{record.schedule_id}/{latest}",
                    latest,
                    timing.delay_of(record.key, latest),
                )
            except WtmError as exc:
                changes["last_error"] = exc.message
                skipped["refused"] = 1
                log.warning("schedule %s could not start its run: %s", record.key, exc.message)
            else:
                changes |= {"last_ms": latest, "last_run_id": run_id, "last_error": ""}
        # Counted by the replica that moves the schedule on, whichever made the run.
        started = int(bool(run_id))
        counts = {"times_skipped": sum(skipped.values()), "runs_started": started}
        moved = await self.store.update(record.key, changes, counts, next_ms=record.next_ms)
        namespace = {"namespace": record.namespace}
        if moved:  # counted once, by the replica that moved it on
            if started:
                self.started.add(1, namespace)
            for why, n in skipped.items():
                if n:
                    self.skipped.add(n, {**namespace, "reason": why})
        elif run_id and await self.store.record_run(record.key, latest, run_id):
            # paused (or resumed) while its run was being submitted: the run started all the
            # same, so it is the schedule's last run, counted by the one replica that says so
            self.started.add(1, namespace)
        return moved

    async def _last_run_going(self, record: ScheduleRecord) -> bool:
        if not record.last_run_id:
            return False
        try:
            return not (await self.runs.get(record.last_run_id, record.namespace)).finished
        except NotFound:  # gone with the history
            return False

    async def _start(
        self, record: ScheduleRecord, request_id: str, due_ms: int, delay: float = 0.0
    ) -> tuple[str, bool]:
        """Submit the schedule's run for the time ``due_ms`` (its idempotency key
        ``request_id``), to start ``delay`` seconds later, as the key that created the
        schedule: its id, and whether this call started it (a concurrent backfill, say, may
        have)."""
        principal = await self._creator(record)
        token = auth.set_current(principal)
        outcome = "INTERNAL"
        try:
            request = self._request(record, request_id, due_ms, delay)
            run, created = await self.runs.started(request)
            outcome = "OK"
            return run.run_id, created
        except WtmError as exc:
            outcome = exc.code
            raise
        finally:
            with contextlib.suppress(ValueError):
                auth.reset_current(token)
            if self.gate is not None:
                self.gate.record(SUBMIT_RUN, principal, outcome)

    async def _creator(self, record: ScheduleRecord) -> auth.Principal:
        """The key that created ``record``, acting in its namespace: FAILED_PRECONDITION
        once it is revoked or expired (or, with auth off, a submitter of that name)."""
        name = f"schedule {record.schedule_id}"
        keys = self.gate.keys if self.gate is not None else None
        if keys is None:
            return auth.Principal(
                record.created_by, name, auth.Role.SUBMITTER, record.namespace, record.namespace
            )
        key = await asyncio.to_thread(keys.stored, record.created_by)
        problem = "gone" if key is None else key.problem(int(time.time() * 1000))  # as a call's
        if key is None or problem or auth.Permission.SUBMIT not in auth.ROLE_PERMISSIONS[key.role]:
            raise FailedPrecondition(
                f"the key that created schedule {record.schedule_id!r} "
                f"({record.created_by}) is {problem or 'no longer one that may submit'}, and its "
                "runs start as that key: a key that may submit must create it again",
                field="schedule.created_by",
            )
        return auth.Principal(key.key_id, name, key.role, key.namespace, record.namespace)
