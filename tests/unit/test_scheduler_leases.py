"""Leases and fencing in the scheduler's core against a real valkey, time by a fake clock
(``scheduler_core.py``): silent executors, expiry, retries' due times, superseded leases,
a result racing a cancel."""

from __future__ import annotations

import json
import logging

import pytest

from services.scheduler import keys
from services.scheduler.fleet import (
    Cancel,
    Renewed,
)
from services.scheduler.intake import RunningStep
from services.scheduler.queue_records import Submission
from tests.unit.scheduler_core import (
    LEASE_SECONDS,
    RETRY_SECONDS,
    Core,
    assignments,
    scenario,
    sent,
    step,
)


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


def test_a_result_racing_a_cancel_does_not_complete_the_run(
    valkey_url: str, caplog: pytest.LogCaptureFixture
) -> None:
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

    caplog.set_level(logging.INFO, logger="services.scheduler.intake")
    scenario(valkey_url, body)
    # expected after a cancel: said, not warned of (a soak of 11,000 runs warned 140 times)
    [said] = [r for r in caplog.records if "refused" in r.getMessage()]
    assert (said.levelname, said.getMessage()) == (
        "INFO",
        "refused a cancelled step's result for r1:a attempt 1",
    )


def test_an_assignment_names_the_last_heartbeat_heard_before_its_round_began(
    valkey_url: str,
) -> None:
    """The executor counts a lease from the sending of the heartbeat an assignment names
    (``LeaseFence``), so the scheduler must name one it had heard before the lease was
    made: a heartbeat read while the round's script runs came later, and is not named."""

    async def body(c: Core) -> None:
        worker = c.executor("worker", slots=3)
        await c.submit("r1")
        [first] = assignments(worker)
        assert first.leased_after == 0  # nothing heard since the hello
        held = [RunningStep("r1", "a", 1, first.lease_id)]
        await c.core.intake.heartbeat(worker, held, sequence=7)
        await c.submit("r2")
        [second] = assignments(worker)
        assert second.leased_after == 7
        fields = {"run_id": "r3", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        await c.queue.submit_many([Submission("r3", fields, [step("a", 0)])])  # queued only
        async with c.core.leaser.round() as r:  # the round that leases it
            await c.core.intake.heartbeat(worker, held, sequence=8)  # heard during it
            await r.hand_out(await c.queue.dispatch_many(r.wants, LEASE_SECONDS * 1000))
        [third] = assignments(worker)
        assert (third.run_id, third.leased_after) == ("r3", 7)

    scenario(valkey_url, body)


def test_a_result_sent_again_is_said_and_a_superseded_one_warned_of(
    valkey_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An executor re-sends its recent results after reconnecting: one whose attempt already
    counted is expected (INFO; soaks of faults warned of hundreds). A result of an attempt
    whose lease lapsed and was given to another executor is a warning still."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=2)
        await c.submit("r1")
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        await c.report(e1, a, "SUCCEEDED")  # re-sent after a reconnect
        await c.submit("r2", max_retries=1)
        [b] = assignments(e1)
        await c.core.intake.heartbeat(e1, [RunningStep("r2", "a", 1, b.lease_id)])
        c.clock.advance(LEASE_SECONDS + 1)
        await c.core.reaper.expire_leases()  # e1 fell silent: r2's lease lapsed
        c.clock.advance(RETRY_SECONDS + 1)
        await c.core.reaper.promote_due()
        e2 = c.executor("e2")
        await c.lease_round()
        assert [x.attempt for x in assignments(e2)] == [2]
        await c.report(e1, b, "SUCCEEDED")  # attempt 1's late result

    caplog.set_level(logging.INFO, logger="services.scheduler.intake")
    scenario(valkey_url, body)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "refused" in r.getMessage()]
    assert said == [
        ("INFO", "refused a recorded attempt's repeated result for r1:a attempt 1"),
        ("WARNING", "refused stale result for r2:a attempt 1"),
    ]
