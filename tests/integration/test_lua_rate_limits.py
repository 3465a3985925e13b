"""Rate limits through the scheduler's Lua scripts on a real valkey-server."""

from __future__ import annotations

from typing import Any

from services.scheduler import keys
from services.scheduler.queue_records import QueuedStep, Want
from services.scheduler.run_queue import RunQueue
from tests.integration.lua_scenarios import limited_step, step, submit


def test_a_rate_limited_task_starts_one_step_per_interval_over_every_executor(on_valkey) -> None:  # noqa: ANN001
    """Five steps of a task limited to one start per 250 ms, from five runs, asked for by two
    executors with room for all: one starts now, the others are given the next four start
    times and put aside until then (each once), and start when promoted at their times,
    whichever executor asks; another task's steps and another namespace's are not held."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        t0 = q.clock.now_ms()
        for n in range(5):
            await submit(q, f"r{n}", [limited_step("a", 250.0)])
        await submit(q, "plain", [step("a")])
        await submit(q, "theirs", [limited_step("a", 250.0, key="team-b/api_call")])
        got = await q.dispatch_many(
            [Want("e1", ["q"], 4, False), Want("e2", ["q"], 4, False)], 10_000
        )
        due = dict(q.due_ms)
        aside = await q.redis.zrange(keys.DELAYED, 0, -1, withscores=True)
        starts: list[tuple[int, str, str]] = [
            (0, x.run_id, e) for e, leased in zip(("e1", "e2"), got, strict=True) for x in leased
        ]
        again = await q.dispatch("e2", ["q"], 4, 10_000)  # nothing more before its time
        for _ in range(8):
            q.clock.advance(0.125)  # type: ignore[attr-defined]
            await q.promote_due()
            for e in ("e1", "e2"):
                for x in await q.dispatch(e, ["q"], 4, 10_000):
                    starts.append((q.clock.now_ms() - t0, x.run_id, e))
                    fields = await q.redis.hgetall(keys.step(x.run_id, "a"))
                    assert b"rate_at" not in fields  # its reserved start is spent
        return starts, due, aside, again, t0

    starts, due, aside, again, t0 = on_valkey(scenario)
    first = sorted(r for ms, r, _ in starts if ms == 0)
    assert first == ["plain", "r0", "theirs"]  # one of the task's, and those not held by it
    assert [(m.decode(), s - t0) for m, s in aside] == [
        ("r1:a", 250), ("r2:a", 500), ("r3:a", 750), ("r4:a", 1000)
    ]  # fmt: skip
    assert due == {"delayed": t0 + 250} and again == []
    later = [(ms, r) for ms, r, _ in starts if ms > 0]
    assert later == [(250, "r1"), (500, "r2"), (750, "r3"), (1000, "r4")]


def test_a_retry_of_a_rate_limited_step_takes_a_start_of_its_own(on_valkey) -> None:  # noqa: ANN001
    """The limit counts attempts: a failed attempt's retry waits for the next free start."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        s = limited_step("a", 1000.0)
        retried = QueuedStep(s.step_id, s.deps, s.dependents, {**s.fields, "max_retries": "1"})
        await submit(q, "r0", [retried])
        t0 = q.clock.now_ms()
        [leased] = await q.dispatch("e1", ["q"], 1, 10_000)
        q.clock.advance(0.1)  # type: ignore[attr-defined]
        await q.complete(leased.member, 1, "FAILED", "", "boom", q.clock.now_ms())  # due now
        await q.promote_due()
        soon = await q.dispatch("e1", ["q"], 1, 10_000)  # 100 ms after the first start: aside
        aside = await q.redis.zscore(keys.DELAYED, "r0:a")
        q.clock.advance(0.9)  # type: ignore[attr-defined]
        await q.promote_due()
        [then] = await q.dispatch("e1", ["q"], 1, 10_000)
        return soon, aside - t0, then.attempt

    soon, reserved, attempt = on_valkey(scenario)
    assert soon == [] and reserved == 1000 and attempt == 2


def test_rate_limited_steps_promoted_late_do_not_start_together(on_valkey) -> None:  # noqa: ANN001
    """Put aside for 250 and 500 ms but asked for only at 1.6 s (no timer, no free place):
    more than a second late, each takes a new start — one now, the other 250 ms on."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        t0 = q.clock.now_ms()
        for n in range(3):
            await submit(q, f"r{n}", [limited_step("a", 250.0)])
        [first] = await q.dispatch_many([Want("e1", ["q"], 4, False)], 10_000)
        q.clock.advance(1.6)  # type: ignore[attr-defined]
        await q.promote_due()
        late = await q.dispatch("e1", ["q"], 4, 10_000)
        aside = await q.redis.zrange(keys.DELAYED, 0, -1, withscores=True)
        return [x.run_id for x in first], [x.run_id for x in late], aside, t0

    first, late, aside, t0 = on_valkey(scenario)
    assert first == ["r0"] and late == ["r1"]
    assert [(m.decode(), s - t0) for m, s in aside] == [("r2:a", 1850)]


def test_a_rate_limits_burst_starts_that_many_at_once_then_one_per_interval(on_valkey) -> None:  # noqa: ANN001
    """task.json rate_burst 3 over one start per second: of five steps three start at once
    and the next two a second apart; after three quiet seconds the bucket is full again (three
    at once), and not fuller (the fourth waits a second)."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        t0 = q.clock.now_ms()
        for n in range(5):
            await submit(q, f"r{n}", [limited_step("a", 1000.0, burst=3)])
        first = await q.dispatch("e1", ["q"], 8, 10_000)
        aside = await q.redis.zrange(keys.DELAYED, 0, -1, withscores=True)
        for x in first:
            await q.complete(x.member, x.attempt, "COMPLETED", "{}", "", q.clock.now_ms())
        promoted = []
        for _ in range(2):
            q.clock.advance(1.0)  # type: ignore[attr-defined]
            await q.promote_due()
            for x in await q.dispatch("e1", ["q"], 8, 10_000):
                promoted.append((q.clock.now_ms() - t0, x.run_id))
                await q.complete(x.member, x.attempt, "COMPLETED", "{}", "", q.clock.now_ms())
        q.clock.advance(5.0)  # type: ignore[attr-defined]  # quiet: the bucket refills
        t1 = q.clock.now_ms()
        for n in range(4):
            await submit(q, f"s{n}", [limited_step("a", 1000.0, burst=3)])
        again = await q.dispatch("e1", ["q"], 8, 10_000)
        later = await q.redis.zrange(keys.DELAYED, 0, -1, withscores=True)
        return (
            sorted(x.run_id for x in first),
            [(m.decode(), s - t0) for m, s in aside],
            promoted,
            sorted(x.run_id for x in again),
            [(m.decode(), s - t1) for m, s in later],
        )

    first, aside, promoted, again, later = on_valkey(scenario)
    assert first == ["r0", "r1", "r2"] and aside == [("r3:a", 1000), ("r4:a", 2000)]
    assert promoted == [(1000, "r3"), (2000, "r4")]
    assert again == ["s0", "s1", "s2"] and later == [("s3:a", 1000)]
