"""The scheduler's core (fleet, leasing, intake, reaper, listeners) against a real valkey,
without gRPC, MongoDB or executors: sessions are driven by hand, time by a fake clock, so
lease expiry, retry due times, fencing, cancellation races and batching are checked by what
happened, in order, not by sleeping."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from common.errors import AlreadyExists
from services.localstack.processes import free_port, wait_until
from services.localstack.stack import valkey_binary
from services.scheduler import keys, wake
from services.scheduler.clock import FakeClock
from services.scheduler.dispatcher import Dispatcher
from services.scheduler.fleet import (
    Assignment,
    Cancel,
    ExecutorProfile,
    ExecutorSession,
    Fleet,
    Renewed,
)
from services.scheduler.intake import RunningStep, StepReport
from services.scheduler.listeners import Listeners, Refused, RunListener
from services.scheduler.queue_records import QueuedStep, RunSnapshot, Submission
from services.scheduler.rest_ends import REQUEST_SECONDS, EndRest, RestEnds
from services.scheduler.result_cache import ResultCache
from services.scheduler.retry_policy import RetryPolicy
from services.scheduler.run_queue import RunQueue

LEASE_SECONDS = 30
RETRY_SECONDS = 2.0  # the first retry's delay (no jitter here)


@pytest.fixture(scope="module")
def valkey_url() -> Iterator[str]:
    """A bare valkey-server of this module's own (no password, nothing else running)."""
    port = free_port()
    proc = subprocess.Popen(
        [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until("valkey-server", answers, None, 10)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class Heard(RunListener):
    """Every event, in order, as (event, subject, detail)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def run_started(self, run_id: str, at_ms: int) -> None:
        self.events.append(("run_started", run_id, ""))

    def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
        self.events.append(("attempt_ended", member, f"{snapshot['attempt']}:{snapshot['state']}"))

    def execution_refused(self, member: str, snapshot: dict[str, str], refused: Refused) -> None:
        self.events.append(("execution_refused", member, str(refused.attempt)))

    def lease_expired(self, member: str) -> None:
        self.events.append(("lease_expired", member, ""))

    def run_ended(self, run_id: str, final: RunSnapshot | None) -> None:
        self.events.append(("run_ended", run_id, final.run["state"] if final else ""))

    def of(self, kind: str) -> list[tuple[str, str]]:
        return [(subject, detail) for k, subject, detail in self.events if k == kind]


class Core:
    """The dispatcher's parts on a fake clock; nothing runs unless a test says so."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.clock = FakeClock()
        self.queue = RunQueue(client, finished_ttl_s=60, clock=self.clock)
        self.heard = Heard()
        self.listeners = Listeners(self.heard)
        self.core = Dispatcher(
            self.queue,
            self.listeners,
            lease_seconds=LEASE_SECONDS,
            retry=RetryPolicy(RETRY_SECONDS, 60.0, jitter=False),
            silent_after=15.0,
            clock=self.clock,
            cache=ResultCache(client, ttl_seconds=60),
        )
        self.listeners.register(self.core.fleet.proven)  # as services/scheduler/__main__.py

    def executor(self, name: str, slots: int = 1) -> ExecutorSession:
        return self.core.open_session(ExecutorProfile(name, ["q"], slots, {}))

    async def submit(self, run_id: str, max_retries: int = 0) -> None:
        fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        [(created, _)] = await self.core.submit(
            [Submission(run_id, fields, [step("a", max_retries)])]
        )
        assert created

    async def lease_round(self) -> None:
        async with self.core.leaser.round() as r:
            if r.wants:
                await r.hand_out(await self.queue.dispatch_many(r.wants, LEASE_SECONDS * 1000))

    async def report(
        self,
        session: ExecutorSession,
        a: Assignment,
        outcome: str,
        output: str = "{}",
        timings: dict[str, int] | None = None,
    ) -> None:
        self.core.intake.report(
            session,
            StepReport(
                a.run_id, a.step_id, a.attempt, outcome, output, "", timings or {}, a.lease_id,
                session.executor_id,
            ),
        )  # fmt: skip
        await self.core.intake.record_pending()


def step(step_id: str, max_retries: int) -> QueuedStep:
    return QueuedStep(
        step_id,
        [],
        [],
        {
            "task_id": step_id,
            "task_version": "1.0.0",
            "digest": "d" * 64,
            "entry_point": "task.Task",
            "queue": "q",
            "timeout": "10",
            "max_retries": str(max_retries),
            "input_id": f"input_{step_id}",
            "output_id": f"output_{step_id}",
            "mapping": "{}",
            "reads": "[]",
        },
    )


def chain(run_id: str) -> Submission:
    """A run of two steps, b after a."""
    a, b = step("a", 0), step("b", 0)
    a.dependents.append("b")
    b.deps.append("a")
    fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": '["b"]'}
    return Submission(run_id, fields, [a, b])


def sent(session: ExecutorSession) -> list[Any]:
    """What went down the executor's stream since the last look."""
    out = []
    while not session.outbox.empty():
        out.append(session.outbox.get_nowait())
    return out


def assignments(session: ExecutorSession) -> list[Assignment]:
    return [m for m in sent(session) if isinstance(m, Assignment)]


@asynccontextmanager
async def core_on(url: str) -> AsyncIterator[Core]:
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    c = Core(client)
    await c.queue.load_scripts()
    try:
        yield c
    finally:
        await c.queue.close()
        await client.aclose()


def scenario(url: str, body: Any) -> Any:
    async def main() -> Any:
        async with core_on(url) as c:
            return await body(c)

    return asyncio.run(main())


def test_a_large_batch_leases_its_first_runs_before_the_rest_are_queued(
    valkey_url: str,
) -> None:
    """In one round trip, the free slots waited for every run's script (200 three-step runs:
    27-40 ms of valkey's time). Now the first runs go with the lease; the rest follow."""
    from services.scheduler.leasing import HEAD_RUNS

    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=2)
        queued_later: list[int] = []
        original = c.queue.submit_many

        async def submit_many(runs: list[Submission]) -> list[tuple[bool, str]]:
            queued_later.append(len(runs))
            assert len(assignments(e1)) == 2  # both slots leased before these were queued
            return await original(runs)

        c.queue.submit_many = submit_many  # type: ignore[method-assign]
        fields = {"input_json": "{}", "priority": "5", "sinks": '["a"]'}
        runs = [Submission(f"r{i:03}", {"run_id": f"r{i:03}", **fields}, [step("a", 0)])
                for i in range(HEAD_RUNS + 10)]  # fmt: skip
        created = await c.core.submit(runs)
        assert [ok for ok, _ in created] == [True] * len(runs)
        assert [rid for _, rid in created] == [r.run_id for r in runs]
        assert queued_later == [10]
        await c.lease_round()
        assert assignments(e1) == []  # the slots are taken; the rest wait in the queue
        stats = await c.queue.queue_stats({"q"})
        assert stats["q"][0] == len(runs) - 2

    scenario(valkey_url, body)


def test_a_submit_to_an_idle_fleet_leases_in_the_same_round_trip(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1")
        [a] = assignments(e1)  # no lease round ran: the submit leased it
        assert (a.run_id, a.step_id, a.attempt) == ("r1", "a", 1) and a.lease_id
        assert c.heard.of("run_started") == [("r1", "")]
        await c.report(e1, a, "SUCCEEDED", '{"ok": true}')
        assert c.heard.of("attempt_ended") == [("r1:a", "1:COMPLETED")]
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]

    scenario(valkey_url, body)


def test_an_assignment_says_proven_once_its_task_versions_code_started_on_an_executor(
    valkey_url: str,
) -> None:
    """``StepAssignment.proven``: not while every attempt of the version failed before its
    process() was called (an executor's own error); from the first attempt whose process()
    was called (the executor reported its start), on any executor."""

    async def body(c: Core) -> None:
        e1, e2 = c.executor("e1"), c.executor("e2")
        await c.submit("r1")
        [a] = assignments(e1) + assignments(e2)
        assert not a.proven
        await c.report(e1 if "r1:a" in e1.in_flight else e2, a, "FAILED")  # its code never ran
        await c.submit("r2")
        [b] = assignments(e1) + assignments(e2)
        assert not b.proven
        started = {"t_recv": 1, "t_p0": 2, "t_p1": 3}  # process() was called, and raised
        await c.report(e1 if "r2:a" in e1.in_flight else e2, b, "FAILED", timings=started)
        await c.submit("r3")
        [d] = assignments(e1) + assignments(e2)
        assert d.proven and d.digest == b.digest

    scenario(valkey_url, body)


def test_a_silent_executors_lease_expires_when_the_clock_passes_it_not_before(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1", max_retries=1)
        [first] = assignments(e1)
        # It had the step (a heartbeat named it), then fell silent.
        await c.core.intake.heartbeat(e1, [RunningStep("r1", "a", 1, first.lease_id)])
        c.clock.advance(LEASE_SECONDS - 1)
        await c.core.reaper.expire_leases()
        assert not c.heard.of("lease_expired")
        c.clock.advance(2)
        await c.core.reaper.expire_leases()
        assert c.heard.of("lease_expired") == [("r1:a", "")]
        assert c.heard.of("attempt_ended") == [("r1:a", "1:QUEUED")]  # to be retried
        # The silent executor, should it wake, is told to stop at its next heartbeat.
        await c.core.intake.heartbeat(e1, [RunningStep("r1", "a", 1, first.lease_id)], sequence=7)
        assert sent(e1) == [Cancel("r1", "a", 1, "attempt is no longer current"), Renewed(7)]
        assert e1.free_slots == 1
        e2 = c.executor("e2")
        await c.core.reaper.promote_due()
        await c.lease_round()
        [second] = assignments(e2)
        assert second.attempt == 2 and second.lease_id != first.lease_id

    scenario(valkey_url, body)


def test_a_silent_executor_is_given_no_step_until_it_is_heard_again(valkey_url: str) -> None:
    """A frozen executor keeps its stream open: a step leased to it waited out a whole lease,
    and its retry went to it again (three times in a row, on the stack). After three
    heartbeats' silence it is passed over; the next thing it says makes it a candidate again."""

    async def body(c: Core) -> None:
        frozen, live = c.executor("frozen", slots=4), c.executor("live")
        c.clock.advance(15.0)  # silent_after: neither was heard since it connected
        await c.core.intake.heartbeat(live, [])
        for run_id in ("r1", "r2", "r3"):
            await c.submit(run_id)
            await c.lease_round()
        assert not assignments(frozen) and len(assignments(live)) == 1  # two wait
        await c.core.intake.heartbeat(frozen, [])  # it speaks again
        await c.lease_round()
        assert len(assignments(frozen)) == 2

    scenario(valkey_url, body)


def test_a_lease_no_heartbeat_named_comes_back_at_once_without_spending_a_retry(
    valkey_url: str,
) -> None:
    """An assignment lost in flight (a scheduler killed between the lease and the stream,
    a broken stream) was counted as a failed attempt when its lease ran out: with no
    retries left, the run failed TIMED_OUT for a step that never ran. Its executor never
    named it in a heartbeat, so it now goes back unspent, at once (and is recorded: it may
    have run, on an executor that froze before its first heartbeat)."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1", max_retries=0)
        [lost] = assignments(e1)
        c.clock.advance(LEASE_SECONDS + 1)
        await c.core.reaper.expire_leases()
        assert c.heard.of("lease_expired") == [("r1:a", "")]
        assert c.heard.of("attempt_ended") == [("r1:a", "1:QUEUED")]  # recorded, not counted
        assert not c.heard.of("run_ended")
        assert sent(e1) == [
            Cancel("r1", "a", 1, "lease expired before the executor said it had the step")
        ]
        await c.core.intake.heartbeat(e1, [])  # alive all along; it never had the step
        await c.core.reaper.promote_due()  # due at once, not after a retry's backoff
        await c.lease_round()
        [again] = assignments(e1)
        assert again.attempt == 2 and again.lease_id != lost.lease_id  # numbers not reused
        await c.report(e1, again, "SUCCEEDED", '{"ok": true}')
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]

    scenario(valkey_url, body)


def test_a_lease_whose_step_reported_progress_counts_when_it_runs_out(valkey_url: str) -> None:
    """Progress (or a log line) from a step is its executor saying it has it, as a heartbeat
    would: when the executor then dies before its first heartbeat, the lost attempt counts
    against the retries and says the executor went silent — it was taken for one lost in
    flight, retried unspent "before the executor said it had the step"."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1", max_retries=0)
        [had] = assignments(e1)
        ref = RunningStep("r1", "a", 1, had.lease_id)
        await c.core.intake.progress(e1, ref, 0.5, "half way")
        await c.core.intake.log(e1, ref, "INFO", "and a line")
        c.clock.advance(LEASE_SECONDS + 1)
        await c.core.reaper.expire_leases()
        assert c.heard.of("lease_expired") == [("r1:a", "")]
        assert [r for r, _ in c.heard.of("run_ended")] == ["r1"]  # counted: no retry left
        assert c.heard.of("attempt_ended") == [("r1:a", "1:TIMED_OUT")]  # not 1:QUEUED
        error = await c.queue.redis.hget(keys.step("r1", "a"), "error")
        assert b"stopped sending heartbeats" in error, error

    scenario(valkey_url, body)


def test_a_failed_attempt_comes_back_at_its_due_time_and_not_before(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1", max_retries=1)
        [first] = assignments(e1)
        await c.report(e1, first, "FAILED")
        assert c.heard.of("attempt_ended") == [("r1:a", "1:QUEUED")]
        c.clock.advance(RETRY_SECONDS - 0.1)
        await c.core.reaper.promote_due()
        await c.lease_round()
        assert assignments(e1) == []  # not due yet, though the slot is free
        c.clock.advance(0.2)
        await c.core.reaper.promote_due()
        await c.lease_round()
        [second] = assignments(e1)
        assert second.attempt == 2
        await c.report(e1, second, "FAILED")  # out of retries
        assert c.heard.of("run_ended") == [("r1", "FAILED")]

    scenario(valkey_url, body)


def test_a_result_for_a_superseded_lease_is_refused_and_the_current_one_counts(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1", max_retries=1)
        [old] = assignments(e1)
        c.clock.advance(LEASE_SECONDS + 1)
        await c.core.reaper.expire_leases()
        e2 = c.executor("e2")
        await c.core.reaper.promote_due()
        await c.lease_round()
        [current] = assignments(e2)
        await c.report(e1, old, "SUCCEEDED", '{"late": true}')  # the silent one woke up
        assert c.heard.of("execution_refused") == [("r1:a", "1")]
        assert not c.heard.of("run_ended")
        await c.report(e2, current, "SUCCEEDED", '{"current": true}')
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]
        _, _, outputs = await c.queue.reader.read_run("r1")
        assert json.loads(outputs["a"]) == {"current": True}

    scenario(valkey_url, body)


def test_a_result_racing_a_cancel_does_not_complete_the_run(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1")
        [a] = assignments(e1)
        assert await c.core.cancel_run("r1", "not needed") == "cancelled"
        assert [m for m in sent(e1) if isinstance(m, Cancel)] == [
            Cancel("r1", "a", 1, "run cancelled: not needed")
        ]
        await c.report(e1, a, "SUCCEEDED")  # it finished before the cancel reached it
        assert c.heard.of("run_ended") == [("r1", "")]  # once: by the cancel
        assert c.heard.of("execution_refused") == [("r1:a", "1")]
        run, _, _ = await c.queue.reader.read_run("r1")
        assert run["state"] == "CANCELLED"

    scenario(valkey_url, body)


def test_results_that_arrive_together_are_recorded_in_one_round_trip(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=5)
        for i in range(5):
            await c.submit(f"r{i}")
        leased = assignments(e1)
        assert len(leased) == 5
        before = c.core.intake.batches
        for a in leased:  # as they would arrive while a batch is in Redis
            c.core.intake.report(
                e1, StepReport(a.run_id, a.step_id, a.attempt, "SUCCEEDED", "{}", "", {},
                               a.lease_id, "e1"),
            )  # fmt: skip
        await c.core.intake.record_pending()
        assert c.core.intake.batches == before + 1
        assert sorted(r for r, _ in c.heard.of("run_ended")) == [f"r{i}" for i in range(5)]

    scenario(valkey_url, body)


def test_the_next_steps_are_written_to_the_stream_before_the_listeners_hear_of_the_end(
    valkey_url: str,
) -> None:
    """A result that makes a dependent ready: the dependent's assignment leaves through the
    executor's stream (its writer takes it from the outbox) before the listeners are told of
    the attempt that ended — they must not delay the next step."""
    written: list[str] = []
    seen_at_end: list[list[str]] = []

    class Ended(RunListener):
        def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
            seen_at_end.append(list(written))

    async def body(c: Core) -> None:
        c.listeners.register(Ended())
        e1 = c.executor("e1")
        await c.core.submit([chain("r1")])
        [first] = assignments(e1)

        async def writer() -> None:  # what the servicer's stream does with the outbox
            while True:
                item = await e1.outbox.get()
                if isinstance(item, Assignment):
                    written.append(item.step_id)

        task = asyncio.create_task(writer())
        try:
            await c.report(e1, first, "SUCCEEDED", "{}")
        finally:
            task.cancel()
        assert seen_at_end == [["b"]]

    scenario(valkey_url, body)


def test_a_listener_that_raises_costs_only_its_own_record(valkey_url: str) -> None:
    class Broken(RunListener):
        def run_started(self, run_id: str, at_ms: int) -> None:
            raise RuntimeError("broken listener")

    async def body(c: Core) -> None:
        c.listeners = Listeners(Broken(), c.heard)
        c.core.leaser.listeners = c.listeners
        e1 = c.executor("e1")
        await c.submit("r1")
        assert len(assignments(e1)) == 1  # the lease went out
        assert c.heard.of("run_started") == [("r1", "")]  # and the next listener heard it

    scenario(valkey_url, body)


def test_a_live_executor_id_is_not_taken_over_until_its_stream_goes_silent(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        c.executor("e1")
        with pytest.raises(AlreadyExists):
            c.executor("e1")
        c.clock.advance(16)  # silent for longer than silent_after
        assert c.executor("e1").executor_id == "e1"

    scenario(valkey_url, body)


def test_an_operator_ends_a_rest_from_any_replica_and_a_request_no_one_took_is_dropped(
    valkey_url: str,
) -> None:
    """ResumeExecutor on a resting executor (``rest_ends.py``): the replica holding its stream
    sends EndRest at once; another replica leaves the request in Redis for the holder's
    reaper; a request older than REQUEST_SECONDS, or made before the rest it finds began, is
    dropped unsent (it must not end a later rest), and one for an executor no replica holds
    any more by the next request left; an executor too old to be told, or not resting, is not
    told."""

    async def body(c: Core) -> None:
        session = c.core.open_session(ExecutorProfile("e1", ["q"], 1, {}, ends_rests=True))
        await c.core.intake.heartbeat(session, [], resting_seconds=30)
        record = json.loads(c.core.fleet.describe(session, "CONNECTED"))
        here = RestEnds(c.queue.redis, c.core.fleet, c.clock)
        elsewhere = RestEnds(c.queue.redis, Fleet(c.queue, clock=c.clock), c.clock)
        sent(session)

        assert await here.end(record, "ops-key")
        assert sent(session) == [EndRest("ops-key")]

        assert await elsewhere.end(record, "other-key")
        assert sent(session) == [] and await c.queue.redis.hexists(keys.REST_ENDS, "e1")
        await here.tick()
        assert sent(session) == [EndRest("other-key")]
        assert not await c.queue.redis.exists(keys.REST_ENDS)

        assert await elsewhere.end(record, "late-key")
        c.clock.advance(REQUEST_SECONDS + 1)  # not taken in time; then the executor rests anew
        await c.core.intake.heartbeat(session, [], resting_seconds=0)
        await c.core.intake.heartbeat(session, [], resting_seconds=60)
        await here.tick()
        assert sent(session) == [] and not await c.queue.redis.exists(keys.REST_ENDS)

        record = json.loads(c.core.fleet.describe(session, "CONNECTED"))
        assert await elsewhere.end(record, "early-key")
        c.clock.advance(1)  # the rest runs out before the request is taken; another begins
        await c.core.intake.heartbeat(session, [], resting_seconds=0)
        await c.core.intake.heartbeat(session, [], resting_seconds=30)
        await here.tick()
        assert sent(session) == [] and not await c.queue.redis.exists(keys.REST_ENDS)

        # An executor that left and never came back: no reaper takes its request; the next
        # request left, past REQUEST_SECONDS, drops it.
        gone = {**json.loads(c.core.fleet.describe(session, "CONNECTED")), "executor_id": "e9"}
        gone["resting_until"] = c.clock.time() + 600  # as its record last said
        assert await elsewhere.end(gone, "ops-key")
        c.clock.advance(REQUEST_SECONDS / 2)
        assert await elsewhere.end({**gone, "executor_id": "e8"}, "ops-key")
        assert set(await c.queue.redis.hkeys(keys.REST_ENDS)) == {b"e9", b"e8"}
        c.clock.advance(REQUEST_SECONDS / 2 + 1)
        assert await elsewhere.end(gone, "ops-key")
        assert set(await c.queue.redis.hkeys(keys.REST_ENDS)) == {b"e9", b"e8"}  # e9 anew
        c.clock.advance(REQUEST_SECONDS / 2)
        assert await elsewhere.end({**gone, "executor_id": "e7"}, "ops-key")
        assert set(await c.queue.redis.hkeys(keys.REST_ENDS)) == {b"e9", b"e7"}
        await c.queue.redis.delete(keys.REST_ENDS)

        record = json.loads(c.core.fleet.describe(session, "CONNECTED"))
        assert not await here.end({**record, "ends_rests": False}, "ops-key")  # too old
        assert not await here.end({**record, "state": "LOST"}, "ops-key")
        await c.core.intake.heartbeat(session, [], resting_seconds=0)  # the rest is over
        assert not await here.end(json.loads(c.core.fleet.describe(session, "CONNECTED")), "k")
        assert sent(session) == []

    scenario(valkey_url, body)


def fan_out(run_id: str, width: int, max_parallel: int) -> Submission:
    """A run of one first step, then ``width`` steps that depend on it only."""
    limit = {"max_parallel": str(max_parallel)}
    names = [f"b{i}" for i in range(width)]
    first = step("a", 0)
    first = QueuedStep("a", [], names, {**first.fields, **limit})
    rest = [QueuedStep(n, ["a"], [], {**step(n, 0).fields, **limit}) for n in names]
    fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": json.dumps(names),
              **limit}  # fmt: skip
    return Submission(run_id, fields, [first, *rest])


def test_max_parallel_tasks_keeps_a_runs_steps_in_flight_at_the_limit(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=10)
        [(created, _)] = await c.core.submit([fan_out("r1", 5, 2)])
        assert created
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        in_flight = assignments(e1)
        assert len(in_flight) == 2  # five are ready, ten slots are free: the limit holds
        held = await c.queue.redis.zrange("wtm:h:r1", 0, -1)
        assert [m.decode() for m in held] == ["r1:b2", "r1:b3", "r1:b4"]  # in pipeline order
        done = []
        while in_flight:
            finished = in_flight.pop(0)
            await c.report(e1, finished, "SUCCEEDED")
            done.append(finished.step_id)
            await c.lease_round()
            in_flight += assignments(e1)
            assert len(in_flight) <= 2
        assert sorted(done) == [f"b{i}" for i in range(5)]
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]

    scenario(valkey_url, body)


def test_a_cancelled_run_leaves_no_held_steps(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=10)
        await c.core.submit([fan_out("r1", 4, 1)])
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        assert len(assignments(e1)) == 1
        assert await c.queue.redis.zcard("wtm:h:r1") == 3
        await c.core.cancel_run("r1", "enough")
        assert not await c.queue.redis.exists("wtm:h:r1")
        steps = [await c.queue.redis.hget(f"wtm:s:r1:b{i}", "state") for i in range(4)]
        assert {s.decode() for s in steps} == {"CANCELLED"}

    scenario(valkey_url, body)


def cached_run(run_id: str, text: str) -> Submission:
    a = step("a", 0)
    fields = {"run_id": run_id, "input_json": json.dumps({"text": text}), "priority": "5",
              "sinks": '["a"]'}  # fmt: skip
    return Submission(run_id, fields, [QueuedStep("a", [], [], {**a.fields, "cache": "1"})])


def test_a_cached_output_completes_the_step_without_an_executor_running_it(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.core.submit([cached_run("r1", "hello")])
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED", '{"n": 1}')
        await c.core.submit([cached_run("r2", "hello"), cached_run("r3", "other")])
        assert c.core.leaser.work_queued.is_set()  # r2's slot is free again: lease again
        await c.lease_round()
        [ran] = assignments(e1)  # r2 never reached the executor; r3's input is new
        assert ran.run_id == "r3" and e1.free_slots == 0
        assert c.heard.of("run_ended") == [("r1", "COMPLETED"), ("r2", "COMPLETED")]
        hit = await c.queue.redis.hgetall("wtm:s:r2:a")
        assert hit[b"cached_from"] == b"r1/output_a" and hit[b"executor"] == b""
        assert await c.queue.redis.hget("wtm:o:r2", "a") == b'{"n": 1}'
        assert json.loads(hit[b"lineage"]) == [["r1/output_a", "output_a"]]
        # Only the executed attempt's output was stored: the hit did not store itself again.
        assert len(await c.queue.redis.keys("wtm:cache:*")) == 1

    scenario(valkey_url, body)


def test_retain_shortens_a_finished_runs_keys_in_one_call(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1")
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        r = c.queue.redis
        names = ["wtm:r:r1", "wtm:s:r1:a", "wtm:o:r1", "wtm:e:r1"]
        assert await r.ttl("wtm:r:r1") > 5  # the finished-run TTL (60 s here)
        await c.queue.retain(["r1", "no-such-run"], 5)
        ttls = [await r.ttl(k) for k in names]
        assert all(0 < t <= 5 for t in ttls), ttls

    scenario(valkey_url, body)


def test_an_executor_that_found_its_queues_empty_is_not_asked_until_work_is_queued(
    valkey_url: str,
) -> None:
    """A large fleet's idle executors cost nothing per lease round: one that found nothing
    sits out until steps are queued (here or on another replica), then is asked again."""

    async def body(c: Core) -> None:
        idle = c.core.open_session(ExecutorProfile("idle", ["other"], 2, {}))
        busy = c.executor("busy", slots=2)
        await c.submit("r1")  # busy takes it; idle is asked too and finds nothing
        assert [a.run_id for a in assignments(busy)] == ["r1"] and assignments(idle) == []

        async def asked() -> set[str]:
            async with c.core.leaser.round() as r:
                return {w.executor_id for w in r.wants}

        assert await asked() == {"busy"}  # idle sits this round out
        c.queue.work_was_queued()  # e.g. another replica said it queued work
        assert await asked() == {"busy", "idle"}
        await c.lease_round()  # both asked; neither queue has anything
        assert await asked() == set()  # so a round now costs no script call at all
        c.clock.advance(1.0)  # the backstop: each is asked again once a second
        assert await asked() == {"busy", "idle"}
        await c.lease_round()
        elsewhere = step("a", 0)
        elsewhere.fields["queue"] = "other"
        fields = {"run_id": "r2", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        await c.core.submit([Submission("r2", fields, [elsewhere])])
        assert [a.run_id for a in assignments(idle)] == ["r2"]  # new work reaches it at once

    scenario(valkey_url, body)


def test_a_result_that_queues_a_dependent_asks_only_executors_of_its_queue(
    valkey_url: str,
) -> None:
    """complete.lua names the queues it filled: an idle executor of another queue sits the
    next round out (a result that made steps ready used to wake every idle executor)."""

    async def body(c: Core) -> None:
        elsewhere = c.core.open_session(ExecutorProfile("elsewhere", ["other"], 2, {}))
        worker = c.executor("worker", slots=1)
        await c.core.submit([chain("r1")])
        [a] = assignments(worker)
        assert assignments(elsewhere) == []
        assert "elsewhere" in c.core.leaser.asked.idle  # it found its queue empty
        epoch = c.queue.queued_epoch
        await c.report(worker, a, "SUCCEEDED")  # queues b on "q"; the freed slot takes it
        assert [x.step_id for x in assignments(worker)] == ["b"]
        assert c.queue.queued_epoch == epoch  # no blind "work somewhere" bump
        async with c.core.leaser.round() as r:
            assert "elsewhere" not in {w.executor_id for w in r.wants}
        assert "elsewhere" in c.core.leaser.asked.idle

    scenario(valkey_url, body)


def test_an_idle_executor_whose_slot_frees_is_asked_for_work_queued_while_it_was_full(
    valkey_url: str,
) -> None:
    """An executor found idle while its slot was busy (its prefetch place found nothing) is
    passed over by new work (no free slot then); when its slot frees, the round of that
    result asks it, rather than leaving the work to the one-second backstop (seen in the
    200-DAG burst: the last eight steps waited ~0.9 s with both executors idle)."""

    async def body(c: Core) -> None:
        c.core.leaser.prefetch = 1
        worker = c.executor("worker", slots=1)
        await c.submit("r1")
        [first] = assignments(worker)
        await c.lease_round()  # its prefetch place asks, and finds the queue empty
        assert "worker" in c.core.leaser.asked.idle
        await c.submit("r2")  # new work, while the slot is busy: not leased now
        assert assignments(worker) == []
        await c.report(worker, first, "SUCCEEDED")  # the slot frees: r2 goes at once
        assert [a.run_id for a in assignments(worker)] == ["r2"]

    scenario(valkey_url, body)


def test_a_paused_queue_keeps_its_steps_until_it_is_resumed(valkey_url: str) -> None:
    """PauseQueue: the lease rounds leave a paused queue out of what they ask each executor
    for; its steps stay queued, another queue's are leased as before, and a resume reaches
    the idle executors in the next round."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=2)
        both = c.core.open_session(ExecutorProfile("both", ["q", "other"], 2, {}))
        c.core.pause_only(frozenset({"q"}))
        await c.submit("r1")
        await c.lease_round()
        assert assignments(e1) == [] and assignments(both) == []
        elsewhere = step("a", 0)
        elsewhere.fields["queue"] = "other"
        fields = {"run_id": "r2", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        await c.core.submit([Submission("r2", fields, [elsewhere])])
        assert [a.run_id for a in assignments(both)] == ["r2"]  # its other queue is not paused
        assert await c.queue.queue_stats({"q"}) != {"q": (0, 0)}  # r1's step still waits
        c.core.pause_only(frozenset())
        await c.lease_round()
        assert [a.run_id for a in assignments(e1) + assignments(both)] == ["r1"]

    scenario(valkey_url, body)


def test_the_first_step_on_a_new_labelled_queue_is_leased_in_the_next_round(
    valkey_url: str,
) -> None:
    """An idle executor's queues were worked out before a labelled variant existed; the first
    step on it wakes a round that asks every idle executor (it waited for the one-second
    backstop before), and a wake message naming a variant another replica made does too."""

    async def body(c: Core) -> None:
        gpu = c.core.open_session(ExecutorProfile("gpu", ["q"], 4, {"gpu": "true"}))
        await c.lease_round()  # idle: asked, found nothing
        labelled = step("a", 0)
        labelled.fields["queue"] = "q|gpu=true"
        fields = {"run_id": "g1", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        await c.core.submit([Submission("g1", fields, [labelled])])
        assert c.queue.work_queued.is_set()
        await c.lease_round()
        assert [a.run_id for a in assignments(gpu)] == ["g1"]
        epoch = c.queue.queued_epoch
        c.queue.heard(wake.message("another-replica", Counter({"q|zone=eu": 1})))
        assert c.queue.queued_epoch == epoch + 1 and "q|zone=eu" in c.queue.queue_variants

    scenario(valkey_url, body)


def test_pausing_a_queue_holds_its_labelled_variants_and_a_variants_pause_only_it(
    valkey_url: str,
) -> None:
    """A task with executor labels queues on a variant ("q|gpu=true"): pausing "q" holds it
    too (the operator names the task's queue), while pausing the variant alone leaves "q"."""

    async def body(c: Core) -> None:
        gpu = c.core.open_session(ExecutorProfile("gpu", ["q"], 4, {"gpu": "true"}))
        labelled = step("a", 0)
        labelled.fields["queue"] = "q|gpu=true"
        fields = {"run_id": "g1", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        c.core.pause_only(frozenset({"q"}))
        await c.core.submit([Submission("g1", fields, [labelled])])
        await c.submit("r1")
        await c.lease_round()
        assert assignments(gpu) == []  # neither the queue nor its variant
        c.core.pause_only(frozenset({"q|gpu=true"}))
        await c.lease_round()
        assert [a.run_id for a in assignments(gpu)] == ["r1"]  # "q" itself goes on
        c.core.pause_only(frozenset())
        await c.lease_round()
        assert [a.run_id for a in assignments(gpu)] == ["g1"]

    scenario(valkey_url, body)


def test_a_paused_executor_is_given_nothing_new_until_it_is_resumed(valkey_url: str) -> None:
    """PauseExecutor (a cordon): the paused executor keeps its stream, the other takes the
    work; resumed, it is asked again in the next round."""

    async def body(c: Core) -> None:
        cordoned, other = c.executor("cordoned", slots=2), c.executor("other")
        c.core.hold_only(frozenset({"cordoned"}))
        for run_id in ("r1", "r2"):
            await c.submit(run_id)
            await c.lease_round()
        assert assignments(cordoned) == [] and [a.run_id for a in assignments(other)] == ["r1"]
        c.core.hold_only(frozenset())
        await c.lease_round()
        assert [a.run_id for a in assignments(cordoned)] == ["r2"]

    scenario(valkey_url, body)
