"""Dynamic batches and steps coming due through the scheduler's Lua scripts on a real
valkey-server."""

from __future__ import annotations

from typing import Any

from services.scheduler import keys, wake
from services.scheduler.queue_records import QueuedStep, Want
from services.scheduler.run_queue import RunQueue
from tests.integration.lua_scenarios import step, submit


def batching_step(
    step_id: str, digest: str = "b" * 64, size: int = 3, wait_ms: int = 0
) -> QueuedStep:
    """A step of a task that batches (task.json batching: max_batch_size, max_wait_ms)."""
    s = step(step_id)
    fields = {**s.fields, "digest": digest, "batch": str(size), "batch_wait": str(wait_ms)}
    return QueuedStep(s.step_id, s.deps, s.dependents, fields)


def test_a_batch_takes_ready_steps_of_its_version_from_any_runs_as_one_place(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        for n in range(4):
            await submit(q, f"b{n}", [batching_step("a")])
        await submit(q, "other", [batching_step("a", digest="c" * 64)])  # another version
        await submit(q, "plain", [step("a")])
        [got] = await q.dispatch_many([Want("ex1", ["q"], 2, True)], 10_000)
        rest = await q.dispatch("ex2", ["q"], 5, 10_000)  # an executor without batching
        return [(x.run_id, x.call) for x in got], [(x.run_id, x.call) for x in rest]

    got, rest = on_valkey(scenario)
    calls = [c for _, c in got]
    # Two places: a batch of three of version b (its size), then the next head, b3, with
    # the other version's step: versions never mix, so b3's batch has only itself.
    assert [r for r, _ in got] == ["b0", "b1", "b2", "b3"]
    assert calls[0] and calls[0] == calls[1] == calls[2] and calls[3] not in ("", calls[0])
    assert rest == [("other", ""), ("plain", "")]  # not batched: this executor does not


def test_a_short_batch_waits_for_its_max_wait_then_goes_as_it_is(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        await submit(q, "b0", [batching_step("a", wait_ms=500)])
        await submit(q, "plain", [step("a")])
        want = [Want("ex1", ["q"], 2, True)]
        [first] = await q.dispatch_many(want, 10_000)  # b0 waits; plain, behind it, goes
        due = q.due_ms.pop("batch")
        q.clock.advance(0.2)  # type: ignore[attr-defined]
        await submit(q, "b1", [batching_step("a", wait_ms=500)])
        [second] = await q.dispatch_many(want, 10_000)  # still short of 3: waits on
        q.clock.advance(0.31)  # type: ignore[attr-defined]  # b0 has waited 510 ms
        [third] = await q.dispatch_many(want, 10_000)
        return first, due, second, third, q.clock.now_ms()

    first, due, second, third, now = on_valkey(scenario)
    assert [x.run_id for x in first] == ["plain"]
    assert due == now - 510 + 500  # when b0 (queued 510 ms before the end) is due
    assert second == []
    assert [x.run_id for x in third] == ["b0", "b1"] and third[0].call == third[1].call != ""


def test_retries_that_come_due_name_their_queues(on_valkey) -> None:  # noqa: ANN001
    """A promoted retry asks only its queue's executors, here and on every replica (it used
    to wake every idle executor of the fleet)."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        await submit(q, "r1", [step("a", max_retries=1)])
        await submit(q, "r2", [step("a", queue="vision", max_retries=1)])
        for queue in ("q", "vision"):
            [leased] = await q.dispatch("e1", [queue], 1, 30_000)
            await q.complete(leased.member, 1, "FAILED", "", "boom", q.clock.now_ms() + 100)
        # The submits announce their queues in the background (``wake.Announcer``): all sent
        # before we listen. One whose connection came late was read as the promotion's
        # message in a CI run ({"vision": 1}: the second submit's).
        await q.announce.close()
        pubsub = q.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(keys.WAKE_CHANNEL)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        q.new_work.clear()
        epoch = q.queued_epoch
        q.clock.advance(0.2)  # type: ignore[attr-defined]
        promoted = await q.promote_due()
        message = await pubsub.get_message(timeout=1.0)
        await pubsub.aclose()
        return promoted, dict(q.new_work), q.queued_epoch - epoch, message["data"], q.origin

    promoted, new_work, epoch_moved, message, origin = on_valkey(scenario)
    assert (promoted, new_work, epoch_moved) == (2, {"q": 1, "vision": 1}, 0)
    assert wake.parse(message) == (origin, {"q": 1, "vision": 1})


def test_a_batch_that_fills_up_goes_at_once_without_waiting_out_its_max_wait(on_valkey) -> None:  # noqa: ANN001
    """A short batch waits for mates up to its max_wait_ms; once it has max_batch_size of
    them it goes in the next round, whatever is left of the wait. A batch of two is a batch."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        want = [Want("ex1", ["q"], 2, True)]
        await submit(q, "b0", [batching_step("a", wait_ms=60_000)])
        [waiting] = await q.dispatch_many(want, 10_000)
        q.clock.advance(0.01)  # type: ignore[attr-defined]
        for n in (1, 2):
            await submit(q, f"b{n}", [batching_step("a", wait_ms=60_000)])
        [full] = await q.dispatch_many(want, 10_000)
        for n in (0, 1):
            await submit(q, f"pair{n}", [batching_step("a", digest="e" * 64, size=2)])
        [pair] = await q.dispatch_many(want, 10_000)
        return waiting, full, pair

    waiting, full, pair = on_valkey(scenario)
    assert waiting == []
    assert [x.run_id for x in full] == ["b0", "b1", "b2"]
    assert full[0].call != "" and len({x.call for x in full}) == 1
    assert [x.run_id for x in pair] == ["pair0", "pair1"]
    assert pair[0].call != "" and pair[0].call == pair[1].call
