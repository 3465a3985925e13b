"""``RunStore``: run history in MongoDB — ``runs`` and one ``step_runs`` document per attempt.

A run is inserted durably before SubmitRun returns. Later changes (step attempts, the end of
a run) are written behind: queued in memory and flushed in bulk calls every
``flush_interval`` seconds, so the scheduling path never waits on MongoDB per step; each
call goes as a new run's insert, which its submit waits for, lands. A flush that fails keeps
what it held and is tried again, backing off up to 30 s.

Most runs cost MongoDB three writes: the insert, a step attempt, the end. A run's RUNNING
mark is written only once it has run for ``RUNNING_AFTER_S``; a run that ends sooner never
needs it (its end carries ``started_at``), as Temporal writes an activity's started event
only with its completion. The end of a run whose insert is still in flight here waits for
the next flush instead of missing its document.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError
from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from common.errors import InvalidArgument
from services.common.auth import DEFAULT_NAMESPACE
from services.common.backends import mongo_options
from services.common.paging import decode_token, encode_token
from services.common.stopping import cancel_and_wait
from services.scheduler.insert_landings import InsertLandings
from services.scheduler.models import Run, StepRun
from services.scheduler.request_claims import RequestClaims
from services.scheduler.run_docs import (
    FROM_REDIS,
    ms_of,
    naming_artifacts,
    new_doc,
    with_datetimes,
)
from services.scheduler.stored_plans import StepTemplates, compact_many

log = logging.getLogger(__name__)
FLUSH_RETRY_MAX_S = 30.0
UNMATCHED_TRIES = 200  # ~10 s of flushes for a run's insert to land before its end
# A flush writes each kind of record in up to FLUSH_CALLS calls of at least FLUSH_CHUNK
# records, each sent as a new run's insert lands while submits come (``_after_inserts``): a
# MongoDB that applies one command at a time per database (nx-27017, the local stack's) makes
# a submit's insert wait for a call it meets, so the calls go where inserts are not.
FLUSH_CALLS, FLUSH_CHUNK = 4, 4
INSERT_FIRST_S = 0.05  # a call waits at most this long for an insert to land
RUNNING_AFTER_S = 1.0  # ListRuns may show a run QUEUED for this long after it started
Marks = dict[str, tuple[datetime | None, float]]  # RUNNING marks: run -> (started, heard at)


def _chunks(records: dict[str, Any]) -> list[list[str]]:
    keys = list(records)
    size = max(FLUSH_CHUNK, -(-len(keys) // FLUSH_CALLS))
    return [keys[i : i + size] for i in range(0, len(keys), size)]


class RunStore:
    """Runs and step attempts in MongoDB, with write-behind for updates."""

    def __init__(
        self, uri: str, database: str, flush_interval: float = 0.05, timeout_s: float = 10.0
    ) -> None:
        self._client: AsyncMongoClient = AsyncMongoClient(uri, **mongo_options(timeout_s))
        self.db = db = self._client[database]
        self._runs = db["runs"]
        self._steps = db["step_runs"]
        self.claims = RequestClaims(db["run_requests"], self._runs)  # request ids
        self._plans = StepTemplates(db["run_plans"])  # what the runs' plans share
        self._flush_interval = flush_interval
        self._pending_runs: dict[str, dict[str, Any]] = {}
        self._pending_steps: dict[str, dict[str, Any]] = {}
        # run id -> (started_at, when the mark was taken: time.monotonic())
        self._pending_started: Marks = {}
        self._marks_due: asyncio.TimerHandle | None = None  # wakes the flusher for them
        self._unmatched: dict[str, int] = {}  # run id -> flushes that found no run to update
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.landings = InsertLandings()  # new runs' inserts: a flush call goes as one lands
        self._landing: set[str] = set()  # the runs those inserts hold
        self.inserts_ok = True  # the last insert went through (else submits insert first)
        self._inserted: set[str] = set()  # each insert's first run, since ``take_inserted``
        self._ends_written: set[str] = set()  # runs whose end was written since ``take_written``

    async def ping(self) -> None:
        """Raises unless MongoDB answers."""
        await self._client.admin.command("ping")

    async def start(self) -> None:
        # _id is the run id (unique already); request_id is looked up on every submit that
        # carries an idempotency key, so it must not be a collection scan.
        await self._runs.create_index([("request_id", ASCENDING)])
        await self._runs.create_index([("created_ms", DESCENDING), ("run_id", DESCENDING)])
        await self._runs.create_index([("state", ASCENDING)])
        await self._runs.create_index([("batch_id", ASCENDING)])
        await self._runs.create_index([("label_pairs", ASCENDING)], sparse=True)
        await self._runs.create_index(
            [("namespace", ASCENDING), ("created_ms", DESCENDING), ("run_id", DESCENDING)]
        )
        # What the artifact sweep reads: the few records that name artifacts.
        for records in (self._runs, self._steps):
            await records.create_index([("artifacts", ASCENDING)], sparse=True)
        # Runs recorded before namespaces existed belong to "default".
        await self._runs.update_many(
            {"namespace": {"$exists": False}}, {"$set": {"namespace": DEFAULT_NAMESPACE}}
        )
        # One document per execution: _id is run:step:attempt:lease, so an attempt number
        # that repeats (after Redis lost its data) still gets a record of its own. The unique
        # index of releases before lease ids is dropped.
        with contextlib.suppress(Exception):
            await self._steps.drop_index("run_id_1_step_id_1_attempt_1")
        await self._steps.create_index(
            [("run_id", ASCENDING), ("step_id", ASCENDING), ("attempt", ASCENDING)],
            name="run_step_attempt",
        )
        self._task = asyncio.create_task(self._flusher())

    async def close(self) -> None:
        if self._marks_due is not None:
            self._marks_due.cancel()
        if self._task is not None:
            await cancel_and_wait([self._task])
        await self.flush(young_marks=True)
        await self._client.close()

    async def insert_run(self, run: Run, plan: dict[str, Any], from_redis: bool = False) -> bool:
        """Insert a new run durably, with the plan that rebuilds it; False when a run with
        that id already exists — unless that is this run, recorded from Redis meanwhile
        (``from_redis``: by ``UnrecordedRuns``, when this insert had not landed in time)."""
        try:
            async with self._insert([run.run_id]):
                [doc], templates = compact_many([new_doc(run, plan, from_redis)])
                await self._plans.save(templates)
                try:
                    await self._runs.insert_one(doc)
                except DuplicateKeyError:
                    if from_redis or not await self._from_redis([run.run_id]):
                        raise
        except DuplicateKeyError:
            return False
        return True

    async def insert_runs(self, runs: list[tuple[Run, dict[str, Any]]]) -> None:
        """Insert many new runs durably in one round trip (ids are fresh: no collisions, but
        for runs recorded from Redis meanwhile, which are these runs)."""
        try:
            async with self._insert([run.run_id for run, _ in runs]):
                docs, templates = compact_many([new_doc(run, plan) for run, plan in runs])
                await self._plans.save(templates)
                try:
                    await self._runs.insert_many(docs, ordered=False)
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    taken = [docs[e["index"]]["_id"] for e in errors if e.get("code") == 11000]
                    if len(taken) < len(errors) or not await self._from_redis(taken):
                        raise
        except BulkWriteError as exc:
            raise InvalidArgument(
                f"run id collision; submit again ({exc})", field="run_id"
            ) from exc

    async def _from_redis(self, run_ids: list[str]) -> bool:
        """Whether every one of these runs has a document recorded from Redis."""
        query = {"_id": {"$in": run_ids}, "recorded": FROM_REDIS}
        return await self._runs.count_documents(query) == len(set(run_ids))

    def take_written(self) -> set[str]:
        """The runs whose end has been written since the last call (History then shortens
        their life in Redis)."""
        written, self._ends_written = self._ends_written, set()
        return written

    def take_inserted(self) -> set[str]:
        """The first run of each insert since the last call (their documents are in MongoDB):
        the index keys ``UnrecordedRuns`` forgets."""
        inserted, self._inserted = self._inserted, set()
        return inserted

    async def missing(self, run_ids: list[str]) -> set[str]:
        """Those of these runs that have no document."""
        there = {d["_id"] async for d in self._runs.find({"_id": {"$in": run_ids}}, {"_id": 1})}
        return set(run_ids) - there

    async def unfinished_runs(self, batch_size: int = 500) -> AsyncIterator[list[str]]:
        """The ids of the runs MongoDB has not seen finish, in batches."""
        batch: list[str] = []
        async for doc in self._runs.find({"state": {"$in": ["QUEUED", "RUNNING"]}}, {"_id": 1}):
            batch.append(doc["_id"])
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    async def with_plans(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """These runs' documents, each with its whole plan (to rebuild it in Redis)."""
        return await self._plans.expand(
            [d async for d in self._runs.find({"_id": {"$in": run_ids}})]
        )

    async def step_attempts(self, run_id: str) -> list[StepRun]:
        return [
            StepRun.from_doc(with_datetimes(d))
            async for d in self._steps.find({"run_id": run_id}).sort("attempt", ASCENDING)
        ]

    async def list_runs(
        self,
        filters: dict[str, Any],
        created_after: datetime | None,
        created_before: datetime | None,
        page_size: int,
        page_token: str,
        label_pairs: list[str] | None = None,
    ) -> tuple[list[Run], str]:
        """Runs newest first (keyset paging on created_at, run_id), without step details;
        with ``label_pairs`` ("key=value"), only runs that have every one."""
        query: dict[str, Any] = {k: v for k, v in filters.items() if v}
        if label_pairs:  # an $and of equalities: nx-27017 has no $all
            query["$and"] = [{"label_pairs": pair} for pair in label_pairs]
        created: dict[str, Any] = {}
        if created_after is not None:
            created["$gte"] = ms_of(created_after)
        if created_before is not None:
            created["$lt"] = ms_of(created_before)
        if page_token:
            last_ms, last_id = decode_token(page_token, (int, str))
            query["$or"] = [
                {"created_ms": {**created, "$lt": last_ms}},
                {"created_ms": last_ms, "run_id": {"$lt": last_id}},
            ]
        elif created:
            query["created_ms"] = created
        cursor = (
            self._runs.find(query, {"plan": 0})
            .sort([("created_ms", DESCENDING), ("run_id", DESCENDING)])
            .limit(page_size + 1)
        )
        docs = [d async for d in cursor]
        runs = [Run.from_doc(with_datetimes(d), []) for d in docs[:page_size]]
        token = ""
        if len(docs) > page_size:
            last = docs[page_size - 1]
            token = encode_token([last["created_ms"], last["run_id"]])
        return runs, token

    async def find_batch(self, batch_id: str) -> list[str]:
        """The run ids of a batch, in the order they were submitted."""
        cursor = self._runs.find({"batch_id": batch_id}, {"run_id": 1}).sort("_id", ASCENDING)
        return [d["run_id"] async for d in cursor]

    async def get_run(self, run_id: str) -> Run | None:
        doc = await self._runs.find_one({"_id": run_id})
        if doc is None:
            return None
        latest: dict[str, StepRun] = {}
        async for s in self._steps.find({"run_id": run_id}).sort("attempt", ASCENDING):
            step = StepRun.from_doc(with_datetimes(s))
            if step.superseded and step.step_id in latest:  # the run's own attempt stays
                continue
            latest[step.step_id] = step
        in_order = sorted(latest.values(), key=lambda s: s.input_id)  # "input_001": the plan's
        return Run.from_doc(with_datetimes(doc), in_order)

    def update_run_later(self, run_id: str, fields: dict[str, Any]) -> None:
        self._pending_runs.setdefault(run_id, {}).update(fields)
        self._wake.set()

    def mark_running_later(self, run_id: str, started_at: datetime | None) -> None:
        """QUEUED -> RUNNING, written behind once the run has run for RUNNING_AFTER_S (not at
        all if it ends sooner). The write applies only while the run is still QUEUED, so it
        never undoes an end written first (by this replica or another)."""
        self._pending_started[run_id] = (started_at, time.monotonic())
        self._wake.set()

    def record_step_later(self, run_id: str, step: StepRun) -> None:
        key = f"{run_id}:{step.step_id}:{step.attempt}:{step.lease_id}"
        self._pending_steps[key] = naming_artifacts(
            {"_id": key, **step.to_doc(run_id)}, step.output_json
        )
        self._wake.set()

    async def flush(self, young_marks: bool = False) -> set[str]:
        """Write what is pending, each kind in up to FLUSH_CALLS bulk calls (``_chunks``), each
        as an insert lands (a submit waits for its insert; nothing waits for a flush). What a
        phase leaves, or a failed write held, stays for a later flush (newer changes to the
        same records win). Returns the runs whose end is now in MongoDB."""
        written: set[str] = set()
        runs, self._pending_runs = self._pending_runs, {}
        steps, self._pending_steps = self._pending_steps, {}
        started, self._pending_started = self._pending_started, {}
        # A run that ended since it started needs no RUNNING mark: its end (state, started_at)
        # is written below, in the same flush.
        started = {r: mark for r, mark in started.items() if r not in runs}
        try:  # each phase takes out of its dict what it wrote
            await self._write_marks(started, young_marks)
            await self._write_steps(steps)
            await self._write_runs(runs, written)
        finally:  # what was not written stays pending
            self._ends_written |= written
            for key, doc in steps.items():
                self._pending_steps.setdefault(key, doc)
            for run_id, fields in runs.items():
                self._pending_runs[run_id] = {**fields, **self._pending_runs.get(run_id, {})}
            for run_id, mark in started.items():
                self._pending_started.setdefault(run_id, mark)
        return written

    async def _write_marks(self, started: Marks, young_marks: bool) -> None:
        """RUNNING marks of runs started RUNNING_AFTER_S ago or more (every one with
        ``young_marks``) whose insert has landed, conditioned on the run still being QUEUED."""
        due = time.monotonic() - RUNNING_AFTER_S  # (heard at: this process's monotonic clock)
        marks = [r for r, (_, heard) in started.items() if young_marks or heard <= due]
        for chunk in _chunks(dict.fromkeys(marks)):
            await self._after_inserts()
            chunk = [r for r in chunk if r not in self._landing]
            if chunk:
                await self._runs.bulk_write(
                    [
                        UpdateOne(
                            {"_id": r, "state": "QUEUED"},
                            {"$set": {"state": "RUNNING", "started_at": started[r][0]}},
                        )
                        for r in chunk
                    ],
                    ordered=False,
                )
            for r in chunk:
                del started[r]

    async def _write_steps(self, steps: dict[str, dict[str, Any]]) -> None:
        """Step attempts' records; one already there (an attempt ends once) is left as it is."""
        for chunk in _chunks(steps):
            await self._after_inserts()
            try:
                await self._steps.insert_many([steps[k] for k in chunk], ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != 11000 for e in errors):
                    raise
            for k in chunk:
                del steps[k]

    async def _write_runs(self, runs: dict[str, dict[str, Any]], written: set[str]) -> None:
        """Ends of runs whose insert has landed; ``written`` gains each call's as it returns."""
        for chunk in _chunks(runs):
            await self._after_inserts()
            landed = {r: runs[r] for r in chunk if r not in self._landing}
            if landed:
                written |= await self._write_ends(landed)
            for r in landed:
                del runs[r]

    async def _write_ends(self, runs: dict[str, dict[str, Any]]) -> set[str]:
        """Update finished runs; returns those whose end is now written."""
        result = await self._runs.bulk_write(
            [UpdateOne({"_id": r}, {"$set": f}) for r, f in runs.items()], ordered=False
        )
        if result.matched_count < len(runs):
            # A run's end can be written before its insert has landed (the insert goes at
            # the same time as the run starts): keep those for the next flush.
            there = {
                d["_id"] async for d in self._runs.find({"_id": {"$in": list(runs)}}, {"_id": 1})
            }
            for run_id in set(runs) - there:
                fields = runs[run_id]
                tries = self._unmatched[run_id] = self._unmatched.get(run_id, 0) + 1
                if tries < UNMATCHED_TRIES:
                    self.update_run_later(run_id, fields)
                else:  # its submit stopped between Redis and MongoDB (killed, or withdrawn):
                    del self._unmatched[run_id]  # the run is recorded whole from Redis
                    log.info("run %s ended with no document: left to UnrecordedRuns", run_id)
            runs = {r: f for r, f in runs.items() if r in there}
        for run_id in runs:
            self._unmatched.pop(run_id, None)
        return set(runs)

    async def _after_inserts(self) -> None:
        """While submits come, wait for the next insert to land and go then: a call sent at
        any moment met the next submit's insert in one case of four, which waited ~2 ms for
        it (nx-27017); sent as one lands, in one of eight (``InsertLandings``)."""
        await self.landings.next_landing(INSERT_FIRST_S)

    @contextlib.asynccontextmanager
    async def _insert(self, run_ids: list[str]) -> AsyncIterator[None]:
        self.landings.began()
        self._landing.update(run_ids)
        try:
            yield
        except DuplicateKeyError:  # MongoDB answered
            raise
        except Exception:
            self.inserts_ok = False
            raise
        else:
            self.inserts_ok = True
            self._inserted.update(run_ids[:1])  # the index key of its submit's runs
        finally:
            self._landing.difference_update(run_ids)
            self.landings.landed()
            if self._pending_runs or self._pending_started:  # some may have waited for it
                self._wake.set()

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._pending_runs) + len(self._pending_steps) + len(self._pending_started)

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._flush_interval)
            # MongoDB unreachable: keep everything, try again, backing off (records that
            # arrive meanwhile join the next try).
            async for attempt in AsyncRetrying(
                wait=wait_exponential(multiplier=self._flush_interval, max=FLUSH_RETRY_MAX_S),
                before_sleep=self._failed,
            ):
                with attempt:
                    await self.flush()
            self._wake_for_marks()

    def _wake_for_marks(self) -> None:
        """Flush again when the oldest RUNNING mark kept back is due."""
        if self._marks_due is not None:
            self._marks_due.cancel()
            self._marks_due = None
        if self._pending_started:
            oldest = min(taken for _, taken in self._pending_started.values())
            delay = max(0.0, oldest + RUNNING_AFTER_S - time.monotonic())
            self._marks_due = asyncio.get_running_loop().call_later(delay, self._wake.set)

    def _failed(self, state: RetryCallState) -> None:
        log.error(
            "write-behind flush failed (%d in a row); %d records kept, retrying in %.1fs",
            state.attempt_number,
            self.pending,
            state.upcoming_sleep,
            exc_info=state.outcome.exception() if state.outcome else None,
        )
