"""The firing rules of schedules, with a clock the test moves, on a fresh database of the
session's nx-27017: one run per due time however many replicas fire it, one run for the
latest of the times missed while none ran, overlap, a time that cannot start its run.

``Schedules`` is the real domain class and ``ScheduleStore`` the real store; what stands in
is the run service it submits to (``SubmittedRuns``), which records each submit and, as the
real one does, gives the same run for the same request id."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.asynchronous.database import AsyncDatabase

from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    WtmError,
)
from services.common import auth
from services.common.api_key_store import ApiKeys
from services.common.gate import Gate
from services.localstack import Cluster
from services.scheduler import schedule_backfills
from services.scheduler.clock import FakeClock
from services.scheduler.planning import SubmitRequest
from services.scheduler.schedule_records import ScheduleRecord, ScheduleStore
from services.scheduler.schedules import Schedules
from tests.integration.test_history_retention import CountingMeters, counts, on_a_fresh_database

MINUTE = 60.0


class SubmittedRuns:
    """What ``Schedules`` asks of ``RunService``: submit (``started``), and get a run's state."""

    catalog = None

    def __init__(self) -> None:
        self.submits: list[tuple[SubmitRequest, auth.Principal]] = []
        self.finished: dict[str, bool] = {}
        self.refuse: WtmError | None = None
        self.reader = SimpleNamespace(run_states=self.run_states)

    async def run_states(self, run_ids: list[str]) -> list[str]:
        known = self.finished
        return ["COMPLETED" if known[r] else "RUNNING" if r in known else "" for r in run_ids]

    async def claimed(self, key: str) -> str:
        run_id = f"run-of-{key.partition('/')[2]}"  # the key: "team-s/<request id>"
        return run_id if run_id in self.finished else ""

    async def started(self, req: SubmitRequest) -> tuple[Any, bool]:
        if self.refuse is not None:
            raise self.refuse
        await asyncio.sleep(0.01)  # a submit takes a while: replicas overlap in it
        self.submits.append((req, auth.current()))
        run_id = f"run-of-{req.request_id}"  # one run per request id
        created = run_id not in self.finished
        self.finished.setdefault(run_id, False)
        return SimpleNamespace(run_id=run_id), created

    async def get(self, run_id: str, namespace: str) -> Any:
        if run_id not in self.finished:
            raise NotFound(f"no run {run_id}", field="run_id")
        return SimpleNamespace(finished=self.finished[run_id])


async def schedule(
    store: ScheduleStore,
    clock: FakeClock,
    overlap: str = "SKIP",
    paused: bool = False,
    created_by: str = "k" * 16,
) -> ScheduleRecord:
    record = ScheduleRecord(
        namespace="team-s",
        schedule_id="minutely",
        every_seconds=MINUTE,
        task="tick",
        input_json='{"n": 1}',
        labels={"team": "s"},
        overlap=overlap,
        paused=paused,
        created_ms=clock.now_ms(),
        created_by=created_by,
    )
    record.next_ms = 0 if paused else record.timing.next_after(record.created_ms)
    await store.insert(record)
    return record


def scenario(cluster: Cluster, body: Any) -> None:
    async def run(db: AsyncDatabase) -> None:
        store = ScheduleStore(db)
        await store.start()
        clock, runs, meter = FakeClock(), SubmittedRuns(), CountingMeters()
        replicas = [
            Schedules(store, runs, clock, meter=meter.get_meter("t"))  # type: ignore[arg-type]
            for _ in range(2)
        ]
        await body(store, clock, runs, replicas, meter)

    on_a_fresh_database(cluster, run)


def test_each_due_time_starts_one_run_however_many_replicas_fire_it(cluster: Cluster) -> None:
    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        record = await schedule(store, clock)
        await asyncio.gather(*(r.fire_due() for r in replicas))
        assert runs.submits == []  # not due yet
        clock.advance(MINUTE)
        await asyncio.gather(*(r.fire_due() for r in replicas))
        due = record.next_ms
        assert {req.request_id for req, _ in runs.submits} == {f"schedule/minutely/{due}"}
        req, principal = runs.submits[0]
        assert (req.task, req.input_json, req.namespace) == ("tick", '{"n": 1}', "team-s")
        at = datetime.fromtimestamp(due / 1000, UTC).isoformat(timespec="milliseconds")
        assert req.labels == {
            "team": "s",
            "wtm.schedule": "minutely",
            "wtm.schedule_time": at.replace("+00:00", "Z"),  # the time it was due for
        }
        assert (principal.key_id, principal.namespace, principal.scope) == (
            "k" * 16,
            "team-s",
            "team-s",
        )
        assert auth.current() is auth.ANONYMOUS  # the creator's principal was for the submit
        after = await store.get("team-s", "minutely")
        assert after is not None
        assert (after.runs_started, after.times_skipped) == (1, 0)
        assert (after.last_ms, after.last_run_id) == (due, f"run-of-schedule/minutely/{due}")
        assert after.next_ms == due + 60_000
        assert counts(meter, "wtm_schedule_runs_started") == {(("namespace", "team-s"),): 1}

    scenario(cluster, body)


def test_times_missed_while_no_replica_ran_start_one_run_for_the_latest(cluster: Cluster) -> None:
    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        record = await schedule(store, clock)
        clock.advance(10.5 * MINUTE)  # due at 1, 2, ... 10 minutes: all passed
        await replicas[0].fire_due()
        latest = record.next_ms + 9 * 60_000
        assert [req.request_id for req, _ in runs.submits] == [f"schedule/minutely/{latest}"]
        after = await store.get("team-s", "minutely")
        assert after is not None
        assert (after.runs_started, after.times_skipped, after.last_ms) == (1, 9, latest)
        assert after.next_ms == latest + 60_000
        assert counts(meter, "wtm_schedule_times_skipped") == {
            (("namespace", "team-s"), ("reason", "missed")): 9
        }

    scenario(cluster, body)


def test_a_time_starts_nothing_while_the_last_run_goes_on_unless_overlap_is_allowed(
    cluster: Cluster,
) -> None:
    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        await schedule(store, clock)
        clock.advance(MINUTE)
        await replicas[0].fire_due()
        clock.advance(MINUTE)
        await replicas[0].fire_due()  # the first run has not ended
        skipping = await store.get("team-s", "minutely")
        assert skipping is not None
        assert (len(runs.submits), skipping.runs_started, skipping.times_skipped) == (1, 1, 1)
        runs.finished[skipping.last_run_id] = True
        clock.advance(MINUTE)
        await replicas[0].fire_due()
        assert len(runs.submits) == 2

        await store.delete("team-s", "minutely")
        await schedule(store, clock, overlap="ALLOW")
        for _ in range(2):  # neither run ends
            clock.advance(MINUTE)
            await replicas[1].fire_due()
        allowing = await store.get("team-s", "minutely")
        assert allowing is not None
        assert (len(runs.submits), allowing.runs_started, allowing.times_skipped) == (4, 2, 0)

    scenario(cluster, body)


def test_a_time_that_cannot_start_its_run_says_why_and_the_schedule_goes_on(
    cluster: Cluster,
) -> None:
    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        record = await schedule(store, clock)
        runs.refuse = FailedPrecondition("tick@1.0.0 is deprecated", field="task")
        clock.advance(MINUTE)
        await replicas[0].fire_due()
        failed = await store.get("team-s", "minutely")
        assert failed is not None
        assert failed.last_error == "task: tick@1.0.0 is deprecated"
        assert (failed.runs_started, failed.times_skipped) == (0, 1)
        assert failed.next_ms == record.next_ms + 60_000
        runs.refuse = None
        clock.advance(MINUTE)
        await replicas[0].fire_due()
        recovered = await store.get("team-s", "minutely")
        assert recovered is not None
        assert (recovered.runs_started, recovered.last_error) == (1, "")

    scenario(cluster, body)


def test_a_paused_schedule_starts_nothing_and_resumes_from_its_next_time(cluster: Cluster) -> None:
    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        record = await schedule(store, clock, paused=True)
        clock.advance(5 * MINUTE)
        await replicas[0].fire_due()
        assert runs.submits == []
        run_id, triggered = await replicas[0].trigger("team-s", "minutely")  # now, paused
        assert [req.request_id for req, _ in runs.submits] == [
            f"schedule/minutely/now/{clock.now_ms()}"
        ]
        assert (triggered.last_run_id, triggered.runs_started) == (run_id, 1)
        assert (triggered.paused, triggered.next_ms) == (True, 0)  # its times as they were
        runs.finished[run_id] = True
        resumed = await replicas[0].resume("team-s", "minutely")
        assert resumed.next_ms == record.created_ms + 6 * 60_000  # the next after now
        clock.advance(MINUTE)
        await replicas[0].fire_due()
        after = await store.get("team-s", "minutely")
        assert after is not None
        assert (after.runs_started, after.times_skipped) == (2, 0)  # none made up

    scenario(cluster, body)


def test_a_one_off_starts_its_run_once_even_after_the_replicas_were_down(cluster: Cluster) -> None:
    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        at = clock.now_ms() + 30_000
        record = ScheduleRecord(
            namespace="team-s", schedule_id="once", at_ms=at, task="tick",
            created_ms=clock.now_ms(), created_by="k" * 16,
        )  # fmt: skip
        record.next_ms = record.timing.first(record.created_ms)
        await store.insert(record)
        clock.advance(10 * MINUTE)  # its time passed while none ran
        for _ in range(3):
            await asyncio.gather(*(r.fire_due() for r in replicas))
            clock.advance(MINUTE)
        # Whichever replicas fired it asked for the one run of its time.
        assert {req.request_id for req, _ in runs.submits} == {f"schedule/once/{at}"}
        done = await store.get("team-s", "once")
        assert done is not None
        assert (done.runs_started, done.times_skipped, done.next_ms, done.last_ms) == (1, 0, 0, at)

    scenario(cluster, body)


def test_a_run_started_while_its_schedule_was_paused_is_its_last_run_counted_once(
    cluster: Cluster,
) -> None:
    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        record = await schedule(store, clock)
        submit = runs.started

        async def paused_meanwhile(req: SubmitRequest) -> Any:
            await replicas[0].pause("team-s", "minutely")  # between the read and the move
            return await submit(req)

        runs.started = paused_meanwhile  # type: ignore[method-assign]
        clock.advance(MINUTE)
        await asyncio.gather(*(r.fire_due() for r in replicas))
        after = await store.get("team-s", "minutely")
        assert after is not None
        run_id = f"run-of-schedule/minutely/{record.next_ms}"
        due = f"schedule/minutely/{record.next_ms}"
        assert {req.request_id for req, _ in runs.submits} == {due}
        assert (after.paused, after.next_ms) == (True, 0)  # the pause holds
        assert (after.last_run_id, after.last_ms, after.runs_started) == (
            run_id,
            record.next_ms,
            1,
        )  # the run it started is known, counted once over both replicas
        assert counts(meter, "wtm_schedule_runs_started") == {(("namespace", "team-s"),): 1}

    scenario(cluster, body)


def test_a_schedule_starts_nothing_more_once_its_creators_key_is_revoked(
    cluster: Cluster,
) -> None:
    assert cluster.endpoints is not None
    sync = MongoClient(cluster.endpoints.mongodb_uri)

    async def run(db: AsyncDatabase) -> None:
        store, clock, runs = ScheduleStore(db), FakeClock(), SubmittedRuns()
        await store.start()
        keys = ApiKeys(sync[db.name], cache_seconds=0)  # the keys, in the same database
        admin = auth.Principal("a" * 16, "admin", auth.Role.ADMIN, "team-s", "team-s")
        operator, _ = keys.create("on call", "operator", "team-s", 0, admin)
        creator, _ = keys.create("ci", "submitter", "team-s", 0, admin)
        schedules = Schedules(store, runs, clock, gate=Gate(keys))  # type: ignore[arg-type]
        record = await schedule(store, clock, created_by=creator.key_id)
        clock.advance(MINUTE)
        await schedules.fire_due()
        ((_, principal),) = runs.submits
        assert (principal.key_id, principal.role, principal.scope) == (
            creator.key_id,
            auth.Role.SUBMITTER,
            "team-s",
        )
        runs.finished = dict.fromkeys(runs.finished, True)
        keys.revoke(creator.key_id, admin)
        clock.advance(MINUTE)
        await schedules.fire_due()
        assert len(runs.submits) == 1  # a revoked key acts no more
        after = await store.get("team-s", "minutely")
        assert after is not None
        assert after.last_error == (
            f"schedule.created_by: the key that created schedule 'minutely' "
            f"({creator.key_id}) is revoked, and its runs start as that key: a key that "
            "may submit must create it again"
        )
        assert (after.runs_started, after.times_skipped) == (1, 1)
        assert after.next_ms == record.next_ms + 2 * 60_000  # it goes on, saying why
        # Nor does a key whose role may not submit.
        await store.update(record.key, {"created_by": operator.key_id})
        clock.advance(MINUTE)
        await schedules.fire_due()
        assert len(runs.submits) == 1
        refused = await store.get("team-s", "minutely")
        assert refused is not None
        assert "is no longer one that may submit" in refused.last_error

    try:
        on_a_fresh_database(cluster, run)
    finally:
        sync.close()


def test_creating_the_same_schedule_again_at_the_namespaces_limit_returns_it(
    cluster: Cluster,
) -> None:
    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        schedules = Schedules(store, runs, clock, max_per_namespace=1)

        async def target_checked(record: ScheduleRecord) -> None:
            """(What a run would be refused for is another test's: test_schedules.py.)"""

        schedules._check_target = target_checked  # type: ignore[method-assign]

        def spec(schedule_id: str, every: float = MINUTE) -> ScheduleRecord:
            return ScheduleRecord(
                namespace="team-s", schedule_id=schedule_id, every_seconds=every, task="tick"
            )

        first = await schedules.create(spec("a"))
        again = await schedules.create(spec("a"))  # a retried call, the namespace full
        assert (again.key, again.next_ms, again.created_ms) == (
            first.key,
            first.next_ms,
            first.created_ms,
        )
        with pytest.raises(AlreadyExists):
            await schedules.create(spec("a", every=2 * MINUTE))
        with pytest.raises(FailedPrecondition, match="has 1 schedules, the most it may have"):
            await schedules.create(spec("b"))

    scenario(cluster, body)


def test_a_backfills_waiting_times_start_in_turn_over_two_replicas_each_once(
    cluster: Cluster,
) -> None:
    """max_running 2 over six times: two start with the call; both replicas' ticks start
    the next one each time a run ends — one run per time, counted once, never more than two
    going; a namespace at its limit keeps the rest waiting, another refusal stops it."""

    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        record = await schedule(store, clock, paused=True)  # a pause does not hold a backfill
        clock.advance(10 * MINUTE)
        first, last = record.created_ms + 60_000, record.created_ms + 6 * 60_000
        answer, _ = await replicas[0].backfill("team-s", "minutely", first, last, 2)
        assert [(b.started, b.waiting) for b in answer] == [(True, False)] * 2 + [(False, True)] * 4

        def going() -> list[str]:
            return [r for r, done in runs.finished.items() if not done]

        for _ in range(6):
            await asyncio.gather(*(r.backfills.drip() for r in replicas))
            assert len(going()) <= 2, going()
            if going():
                runs.finished[sorted(going())[0]] = True  # the older one ends
        for _ in range(3):
            for r in going():
                runs.finished[r] = True
            await asyncio.gather(*(r.backfills.drip() for r in replicas))
        started = [req.request_id for req, _ in runs.submits]
        times = [first + i * 60_000 for i in range(6)]
        assert sorted(set(started), key=started.index) == [
            f"schedule/minutely/{t}" for t in times
        ]  # each time's run, oldest first
        after = await store.get("team-s", "minutely")
        assert after is not None
        assert (after.backfill_ms, after.runs_started, after.last_error) == ([], 6, "")
        assert counts(meter, "wtm_schedule_runs_started") == {(("namespace", "team-s"),): 6}

        earlier = record.created_ms - 10 * 60_000
        answer, _ = await replicas[1].backfill("team-s", "minutely", earlier, earlier + 60_000, 1)
        assert [(b.started, b.waiting) for b in answer] == [(True, False), (False, True)]
        runs.finished[answer[0].run_id] = True
        runs.refuse = ResourceExhausted("namespace team-s has 10 unfinished runs", field="")
        await replicas[0].backfills.drip()
        held = await store.get("team-s", "minutely")
        assert held is not None and held.backfill_ms == [earlier + 60_000]  # it waits
        runs.refuse = FailedPrecondition("tick@1.0.0 is deprecated", field="task")
        await replicas[0].backfills.drip()
        stopped = await store.get("team-s", "minutely")
        assert stopped is not None and stopped.backfill_ms == []
        assert stopped.last_error == (
            "backfill stopped with 1 of its times not started: task: tick@1.0.0 is deprecated"
        )
        older = earlier - 5 * 60_000
        with pytest.raises(FailedPrecondition):  # a call hears it, and nothing is kept
            await replicas[0].backfill("team-s", "minutely", older, older + 60_000, 1)
        kept = await store.get("team-s", "minutely")
        assert kept is not None and kept.backfill_ms == []

    scenario(cluster, body)


def test_a_backfill_that_would_keep_too_many_times_waiting_is_refused_whole(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting times live in the schedule's document: past MAX_WAITING a backfill is
    FAILED_PRECONDITION naming max_running, and starts and keeps nothing."""
    monkeypatch.setattr(schedule_backfills, "MAX_WAITING", 3)

    async def body(
        store: ScheduleStore, clock: FakeClock, runs: SubmittedRuns, replicas: Any, meter: Any
    ) -> None:
        record = await schedule(store, clock)
        clock.advance(10 * MINUTE)
        first, last = record.created_ms + 60_000, record.created_ms + 6 * 60_000
        with pytest.raises(FailedPrecondition) as refused:
            await replicas[0].backfill("team-s", "minutely", first, last, 1)
        assert refused.value.field == "max_running" and "more than 3" in refused.value.message
        assert runs.submits == []
        after = await store.get("team-s", "minutely")
        assert after is not None and after.backfill_ms == []

    scenario(cluster, body)
