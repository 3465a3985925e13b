"""Results in the scheduler's core against a real valkey (``scheduler_core.py``): recorded
together, the next steps sent before the listeners hear, a listener that raises, an
executor id taken over, rests ended by operators."""

from __future__ import annotations

import asyncio
import json

import pytest

from common.errors import AlreadyExists
from services.scheduler import keys
from services.scheduler.fleet import (
    Assignment,
    ExecutorProfile,
    Fleet,
)
from services.scheduler.intake import RunningStep, StepReport
from services.scheduler.listeners import Listeners, RunListener
from services.scheduler.rest_ends import REQUEST_SECONDS, EndRest, RestEnds
from tests.unit.scheduler_core import Core, assignments, chain, scenario, sent


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


def test_progress_and_log_lines_count_for_the_current_attempt_only(valkey_url: str) -> None:
    """What an executor reports of a step reaches the run's watchers while that attempt is
    the one it holds; a line about another attempt (one since retried, or never leased
    here) is dropped, not shown as the step's."""

    async def body(c: Core) -> list[tuple[str, str]]:
        e1 = c.executor("e1")
        await c.submit("r1")
        [a] = assignments(e1)
        current = RunningStep(a.run_id, a.step_id, a.attempt, a.lease_id)
        stale = RunningStep(a.run_id, a.step_id, a.attempt + 1, a.lease_id)
        await c.core.intake.progress(e1, current, 0.5, "halfway")
        await c.core.intake.log(e1, current, "INFO", "read the image")
        await c.core.intake.progress(e1, stale, 0.9, "not mine")
        await c.core.intake.log(e1, stale, "INFO", "nor this")
        events = await c.queue.redis.xrange(keys.events("r1"))
        return [
            (f[b"kind"].decode(), f[b"msg"].decode())
            for _, f in events
            if f.get(b"kind") in (b"PROGRESS", b"LOG")
        ]

    assert scenario(valkey_url, body) == [("PROGRESS", "halfway"), ("LOG", "INFO read the image")]
