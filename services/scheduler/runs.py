"""``RunService``: accept runs, report them, and stream their events."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from common import telemetry
from common.errors import InvalidArgument, NotFound, Unavailable
from services.common import auth
from services.scheduler import run_reuse
from services.scheduler.input_check import as_batch_item
from services.scheduler.listeners import Listeners, RunListener
from services.scheduler.models import TERMINAL, Run, ms_to_dt
from services.scheduler.planning import (
    SubmitRequest,
    check_input,
    new_run,
    parse_input,
    plan_run,
)
from services.scheduler.queue_records import RunSnapshot, Submission
from services.scheduler.run_events import RunEvent, event_cursor, history_events
from services.scheduler.run_limits import RunLimits
from services.scheduler.run_listing import RunListing
from services.scheduler.run_reader import RunReader
from services.scheduler.run_store import RunStore
from services.scheduler.signal_records import SignalRecords
from services.scheduler.stored_plans import plan_doc
from services.scheduler.submit_checks import check_request, request_key
from services.scheduler.task_catalog import TaskCatalog

T = TypeVar("T")
MAX_BATCH = 10_000


MAX_WAIT_SECONDS = 3600.0
# How long a submit that lost a request id to a concurrent one waits for that one's run.
CLAIM_WAIT_SECONDS = 10.0
# How often a waiting submit looks at the run itself, for runs that end on another replica
# (those on this one wake it at once).
WAIT_POLL_SECONDS = 0.5


class Queueing(Protocol):
    """Where accepted runs go (the dispatcher): queueing also leases free slots in the same
    round trip, and cancelling tells executors to stop the run's running steps."""

    async def submit(self, runs: list[Submission]) -> list[tuple[bool, str]]: ...

    async def cancel_run(self, run_id: str, reason: str) -> str: ...


class RunService(RunListener):
    """The domain side of SchedulerService; a listener of runs, to wake the submits that
    wait for one to end."""

    def __init__(
        self,
        reader: RunReader,
        store: RunStore,
        catalog: TaskCatalog,
        queueing: Queueing,
        listeners: Listeners,
        limits: RunLimits | None = None,
        signals: SignalRecords | None = None,
    ) -> None:
        self.reader = reader  # runs are read here, and written through ``queueing``
        self.signals = signals  # what a resumed run's steps were sent (run_signals.py)
        self.limits = limits or RunLimits()  # runs queued or running, per namespace
        self.queueing = queueing
        self.listeners = listeners
        self.store = store
        self.catalog = catalog
        self.listing = RunListing(store, reader)  # ListRuns
        # Submits waiting for runs to end: each has its own future, set when the run ends on
        # this replica.
        self._waiters: dict[str, set[asyncio.Future[Run | None]]] = {}

    async def submit(self, req: SubmitRequest) -> Run:
        """Accept one run. It is queued in Redis and written to MongoDB at the same time; the
        call returns once both hold it, so the run can start before MongoDB has answered."""
        return (await self.started(req))[0]

    async def started(self, req: SubmitRequest) -> tuple[Run, bool]:
        """``submit``, and whether this call made the run (not: its request id had one)."""
        check_request(req)
        doc = parse_input(req.input_json)
        if not 0 <= req.wait_seconds <= MAX_WAIT_SECONDS:
            raise InvalidArgument(f"must be between 0 and {MAX_WAIT_SECONDS:g}s", field="wait")
        key = request_key(auth.one_namespace(req.namespace), req.request_id)
        if key and (existing := await self.claimed(key)):  # most repeats find their run here
            found = await self._run_recorded(key, existing)
            return await self._until_finished(found, req.wait_seconds), False
        plan = await plan_run(self.catalog, req)
        options = check_input(plan, doc)
        reused = await run_reuse.taken_over(self.get, self.catalog, req, plan, doc)
        self.limits.admit(auth.one_namespace(req.namespace), 1)
        run, submission = new_run(req, plan, doc, key, trace=telemetry.current(), options=options)
        if reused:
            run, submission = run_reuse.applied(run, submission, reused, req.reuse_from)
        if req.reuse_from and self.signals and any(p.await_signal for p in plan.steps):
            kept = await self.signals.read(req.reuse_from)
            submission = run_reuse.with_signals(submission, kept)
        if key and (holder := await self.store.claims.claim(key, run.run_id)) is not None:
            # A concurrent submit with this request id won: its run is the answer.
            found = await self._run_recorded(key, holder)
            return await self._until_finished(found, req.wait_seconds), False
        waiter = self._watch(run.run_id) if req.wait_seconds > 0 else None  # before queueing,
        try:  # so that its end cannot be missed
            accepted = await self._accept(run, submission)
        except BaseException:
            self._unwatch(run.run_id, waiter)
            if key:
                with contextlib.suppress(Exception):
                    await self.store.claims.release(key, run.run_id)
            raise
        created = accepted.run_id == run.run_id
        if not created:  # the request id's first run, not this one
            self._unwatch(run.run_id, waiter)
            waiter = None
        ended = await self._until_finished(accepted.run_id, req.wait_seconds, accepted, waiter)
        return ended, created

    async def _recorded(self, key: str, ident: str, find: Callable[[], Awaitable[T]]) -> T:
        """What ``find()`` returns once the submit that claimed ``key`` for ``ident`` has
        recorded it (it may still be writing); ``find`` returns something empty, or raises
        NotFound, until then. A claim whose run never appears (that submit died between
        claiming and recording) is released, so the client's next try creates the run."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_WAIT_SECONDS
        while True:
            with contextlib.suppress(NotFound):
                if found := await find():
                    return found
            if loop.time() > deadline:
                await self.store.claims.release(key, ident)
                raise Unavailable(
                    "the first submit with this request id did not finish; try again",
                    field="request_id",
                )
            await asyncio.sleep(0.05)

    async def _run_recorded(self, key: str, run_id: str) -> str:
        await self._recorded(key, run_id, lambda: self.get(run_id))
        return run_id

    def run_ended(self, run_id: str, final: RunSnapshot | None = None) -> None:
        """A run ended on this replica: wake the submits waiting for it (with the run as it
        ended, when the caller has it, so they need not read it back)."""
        waiting = self._waiters.get(run_id)
        if not waiting:
            return
        run = Run.from_redis(*final) if final is not None else None
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(run)

    def _watch(self, run_id: str) -> asyncio.Future[Run | None]:
        waiter: asyncio.Future[Run | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(run_id, set()).add(waiter)
        return waiter

    def _unwatch(self, run_id: str, waiter: asyncio.Future[Run | None] | None) -> None:
        waiting = self._waiters.get(run_id)
        if waiting is not None and waiter is not None:
            waiting.discard(waiter)
            if not waiting:
                del self._waiters[run_id]

    async def _until_finished(
        self,
        run_id: str,
        seconds: float,
        run: Run | None = None,
        waiter: asyncio.Future[Run | None] | None = None,
    ) -> Run:
        """The run once it has finished, or as it stands after ``seconds``. A run that ends
        on this replica wakes the wait at once; one that ends elsewhere is seen by looking
        every WAIT_POLL_SECONDS."""
        if seconds <= 0:
            return run or await self.get(run_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        waiter = waiter or self._watch(run_id)  # before reading: no end is missed
        try:
            if run is None:
                run = await self.get(run_id)
            while not run.finished and loop.time() < deadline:
                if not waiter.done():
                    pause = max(0.0, min(WAIT_POLL_SECONDS, deadline - loop.time()))
                    await asyncio.wait({waiter}, timeout=pause)
                ended = waiter.result() if waiter.done() else None
                if ended is not None:
                    return ended
                if waiter.done():  # a fresh one, before reading again
                    self._unwatch(run_id, waiter)
                    waiter = self._watch(run_id)
                run = await self.get(run_id)
            return run
        finally:
            self._unwatch(run_id, waiter)

    async def _accept(self, run: Run, submission: Submission) -> Run:
        """Write the run to MongoDB and queue it in Redis (``_record_and_queue``)."""
        inserted, queued = await self._record_and_queue(
            self.store.insert_run(run, plan_doc(submission)), [submission]
        )
        if not inserted:  # another run holds this id: take back only what this submit queued
            if queued and queued[0][0]:
                await self._withdraw(run.run_id)
            raise InvalidArgument("run id collision; submit again", field="run_id")
        [(created, run_id)] = queued
        if not created:  # the same request id won a race in Redis
            return await self.get(run_id)
        for step in run_reuse.records(run):  # the steps it took over, as the history keeps them
            self.store.record_step_later(run.run_id, step)
        self.listeners.runs_submitted(1)
        return run

    async def claimed(self, key: str) -> str:
        """The run a request key (``request_key``) made already, or ""."""
        claims = self.store.claims
        return await claims.holder(key) or await claims.run_from_before_claims(key) or ""

    async def submit_many(self, req: SubmitRequest, inputs: list[str]) -> tuple[str, list[str]]:
        """Accept one run per input document as one batch: one plan, one MongoDB write and
        one Redis round trip (``_record_and_queue``). Returns (batch id, run ids in input
        order)."""
        if not inputs:
            raise InvalidArgument("must hold at least one input document", field="inputs_json")
        if len(inputs) > MAX_BATCH:
            raise InvalidArgument(
                f"holds {len(inputs)} documents; at most {MAX_BATCH} per call", field="inputs_json"
            )
        check_request(req)
        key = request_key(auth.one_namespace(req.namespace), req.request_id)
        docs = []
        for i, text in enumerate(inputs):
            try:
                docs.append(parse_input(text))
            except InvalidArgument as exc:
                raise as_batch_item(exc, i) from exc
        batch_id = key and f"batch-{key}"
        if key:
            existing = await self.store.find_batch(batch_id)
            if existing:
                return batch_id, existing
            if await self.store.claims.claim(batch_id, batch_id) is not None:
                return batch_id, await self._recorded(
                    batch_id, batch_id, lambda: self.store.find_batch(batch_id)
                )
        batch_id = batch_id or f"batch-{uuid.uuid4().hex}"
        plan = await plan_run(self.catalog, req)
        options = []
        for i, doc in enumerate(docs):
            try:
                options.append(check_input(plan, doc))
            except InvalidArgument as exc:
                raise as_batch_item(exc, i) from exc
        self.limits.admit(auth.one_namespace(req.namespace), len(docs))
        parents, link = telemetry.run_parents(len(docs)), telemetry.submit_link()
        made = [
            new_run(req, plan, doc, "", batch_id, parent, trace_link=link, options=o)
            for doc, o, parent in zip(docs, options, parents, strict=True)
        ]
        try:
            _, queued = await self._record_and_queue(
                self.store.insert_runs([(run, plan_doc(sub)) for run, sub in made]),
                [sub for _, sub in made],
                lease_first=True,
                insert_first=bool(key),  # a retry must find the whole batch in MongoDB
            )
        except BaseException:
            if key:
                with contextlib.suppress(Exception):
                    await self.store.claims.release(batch_id, batch_id)
            raise
        self.listeners.runs_submitted(len(made))
        return batch_id, [run.run_id for run, _ in made]

    async def _record_and_queue(
        self,
        insert: Awaitable[T],
        runs: list[Submission],
        lease_first: bool = False,
        insert_first: bool = False,
    ) -> tuple[T, list[tuple[bool, str]]]:
        """Write new runs to MongoDB and queue them in Redis; return once both hold them (the
        insert's result, and what queueing created). While MongoDB is well both go at once,
        Redis first; a run queued whose insert then fails is withdrawn (only one this call
        created). After an insert failed they go one after the other, so no run starts
        unrecorded while MongoDB is out of reach.

        ``lease_first`` (a batch): the insert starts once Redis holds the runs; beside it, its
        encoding of the documents held the loop while Redis's answer waited (a 200-DAG burst's
        first steps started 15-26 ms after the runs were created, 14-21 ms this way).

        ``insert_first`` (a batch with a request id): MongoDB first, then Redis. A retry of
        the request answers with the batch as MongoDB lists it, so it must be there whole:
        queued first, a replica that died between its two Redis pipelines, or before its
        insert, left part of the batch in Redis alone, and a retry got fewer runs than it
        asked for (the rest never made). Written first, a batch whose replica dies before
        queueing it is queued by the recovery scan (``History.recover``) within its period."""
        # Until the insert is known, Redis keeps the runs' plans under the first one's id
        # (``UnrecordedRuns``: a replica killed in between leaves them to be recorded).
        runs = [dataclasses.replace(r, index_key=runs[0].run_id) for r in runs]
        if insert_first or not self.store.inserts_ok:
            inserted = await insert
            return inserted, (await self.queueing.submit(runs) if inserted is not False else [])
        inserting = None if lease_first else asyncio.ensure_future(insert)
        try:
            queued = await self.queueing.submit(runs)
        except BaseException:  # recorded or not (a batch's first runs may be in Redis), the
            await asyncio.wait({inserting or asyncio.ensure_future(insert)})  # error is Redis's
            raise
        inserting = inserting or asyncio.ensure_future(insert)
        try:
            return await inserting, queued
        except BaseException:
            for sub, (created, _) in zip(runs, queued, strict=True):
                if created:
                    await self._withdraw(sub.run_id)
            raise

    async def _withdraw(self, run_id: str) -> None:
        """Take back a run whose MongoDB write failed: it must not run unrecorded (its first
        steps may already be running: they are stopped)."""
        with contextlib.suppress(Exception):
            await self.queueing.cancel_run(run_id, "not recorded: the history store failed")

    async def cancel(
        self, run_id: str, reason: str, namespace: str = auth.ALL_NAMESPACES
    ) -> tuple[Run, bool]:
        """Cancel a run of ``namespace``: its queued steps are dropped and its running ones
        stopped. The run, and whether this call ended it (not: it had ended already)."""
        if not run_id:
            raise InvalidArgument("is required", field="run_id")
        caller = auth.current()
        owner = ""
        if namespace != auth.ALL_NAMESPACES or not caller.may(auth.Permission.CANCEL_ANY):
            owner = (await self.get(run_id, namespace)).submitted_by
        auth.check_own(owner, f"run {run_id}", "run_id")  # a submitter cancels its own runs
        return await self.end(run_id, reason)

    async def end(self, run_id: str, reason: str) -> tuple[Run, bool]:
        """Cancel a run the caller may cancel (``cancel``, and each of a bulk cancel's): the
        run after it, and whether this call ended it. NotFound: no such run."""
        state = await self.queueing.cancel_run(run_id, reason or "cancelled by a user")
        if state == "missing":
            await self.get(run_id)  # NotFound, or a finished run only MongoDB still has
        return await self.get(run_id), state == "cancelled"

    async def get(self, run_id: str, namespace: str = auth.ALL_NAMESPACES) -> Run:
        """A run; NOT_FOUND when it is in a namespace other than ``namespace``, as if it
        did not exist."""
        if not run_id:
            raise InvalidArgument("is required", field="run_id")
        run_hash, steps, outputs = await self.reader.read_run(run_id)
        found = Run.from_redis(run_hash, steps, outputs) if run_hash else None
        if found is None:
            found = await self.store.get_run(run_id)
        if found is None or not auth.visible(found.namespace, namespace):
            raise NotFound(f"no run {run_id}", field="run_id")
        return found

    async def watch(
        self, run_id: str, after_event_id: str = "", namespace: str = auth.ALL_NAMESPACES
    ) -> AsyncIterator[RunEvent]:
        """Events of a run of ``namespace`` from the start (or after an event id) until it
        finishes."""
        if not run_id:
            raise InvalidArgument("is required", field="run_id")
        found_in, has_events = await self.reader.watch_facts(run_id)
        if found_in is None and namespace != auth.ALL_NAMESPACES:
            await self.get(run_id, namespace)  # Redis no longer has the run: the history says
        elif found_in is not None and not auth.visible(found_in, namespace):
            raise NotFound(f"no run {run_id}", field="run_id")
        cursor = event_cursor(after_event_id)
        if not has_events:  # Redis has let them go: the history tells them again
            run = await self.get(run_id)  # NotFound if it never existed
            for told in history_events(run, await self.store.step_attempts(run_id), cursor):
                yield told
            return
        # Resuming a finished run: a run ends in the same script that appends its last
        # event, so once it has ended every event is there to read without waiting; a watch
        # resumed after the last one ends at once. (A watch that sees the end event ends on
        # it, so the state need not be asked again.)
        ended = bool(after_event_id) and await self.reader.run_state(run_id) in TERMINAL
        while True:
            batch = await self.reader.read_events(run_id, cursor, None if ended else 5000)
            if ended and not batch:
                return
            for event_id, f in batch:
                cursor = event_id
                event = RunEvent(
                    event_id,
                    run_id,
                    f.get("step", ""),
                    int(f.get("attempt", 0)),
                    f["state"],
                    f.get("msg", ""),
                    ms_to_dt(f.get("t")),
                    float(f.get("progress", 0.0)),
                    f.get("kind", "STATE"),
                )
                yield event
                if event.ends_run:
                    return
            if not batch and not await self.reader.events_exist(run_id):
                return
