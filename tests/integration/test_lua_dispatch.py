"""Leasing and results through the scheduler's Lua scripts on a real valkey-server: priority
order, attempts, stale results, retries and their backoff, fatal errors, dependents."""

from __future__ import annotations

import json
from typing import Any

from services.scheduler import keys
from services.scheduler.run_queue import RunQueue
from tests.integration.lua_scenarios import step, submit


def test_dispatch_takes_higher_priority_first_then_oldest(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> list[str]:
        await submit(q, "old", [step("a")], priority=5)
        q.clock.advance(0.002)  # type: ignore[attr-defined]
        await submit(q, "new", [step("a")], priority=5)
        await submit(q, "urgent", [step("a")], priority=9)
        return [leased.run_id for leased in await q.dispatch("ex1", ["q"], 3, 10_000)]

    assert on_valkey(scenario) == ["urgent", "old", "new"]


def test_queue_stats_find_the_oldest_step_across_priority_bands(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        start = q.clock.now_ms()
        await submit(q, "oldest-low", [step("a")], priority=1)
        q.clock.advance(5)
        for n in range(3):
            await submit(q, f"newer-high-{n}", [step("a")], priority=9)
        q.clock.advance(2)
        await submit(q, "other", [step("a", queue="r")], priority=5)
        before = await q.queue_stats({"q", "r", "empty"})
        # Leasing the high-priority steps leaves the oldest; leasing it too empties "q".
        await q.dispatch("ex1", ["q"], 3, 10_000)
        middle = await q.queue_stats({"q"})
        await q.dispatch("ex1", ["q"], 1, 10_000)
        return start, before, middle, await q.queue_stats({"q"})

    start, before, middle, after = on_valkey(scenario)
    assert before == {"q": (4, start), "r": (1, start + 7000), "empty": (0, None)}
    assert middle == {"q": (1, start)}
    assert after == {"q": (0, None)}


def test_dispatch_leases_attempt_one_and_marks_the_run_running(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        await submit(q, "r1", [step("a")])
        [leased] = await q.dispatch("ex1", ["q"], 5, 10_000)
        run, steps, _ = await q.reader.read_run("r1")
        deadline = await q.redis.zscore(keys.LEASES, "r1:a")
        lease = deadline - q.clock.now_ms()
        return leased.attempt, leased.run_input_json, run["state"], steps[0]["executor"], lease

    attempt, run_input, state, executor, lease = on_valkey(scenario)
    assert (attempt, json.loads(run_input), state, executor) == (1, {"run": "r1"}, "RUNNING", "ex1")
    assert lease == 10_000  # the lease runs from the queue's clock


def test_a_stale_result_is_refused(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[str, str, str]:
        await submit(q, "r1", [step("a", max_retries=1)])
        await q.dispatch("ex1", ["q"], 1, lease_ms=1)  # attempt 1, lease lapses at once
        q.clock.advance(0.01)  # type: ignore[attr-defined]
        await q.expire_leases()
        await q.promote_due()
        [second] = await q.dispatch("ex2", ["q"], 1, 10_000)
        late = await q.complete("r1:a", 1, "SUCCEEDED", '{"from": "ex1"}', "", 0)
        current = await q.complete("r1:a", second.attempt, "SUCCEEDED", '{"from": "ex2"}', "", 0)
        run, _, outputs = await q.reader.read_run("r1")
        return late.verdict, current.verdict, outputs["a"]

    assert on_valkey(scenario) == ("stale", "run_completed", '{"from": "ex2"}')


def test_a_failed_attempt_is_retried_after_its_backoff_then_fails_the_run(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> list[Any]:
        await submit(q, "r1", [step("a", max_retries=1)])
        await q.dispatch("ex1", ["q"], 1, 10_000)
        first = await q.complete("r1:a", 1, "FAILED", "", "boom", q.clock.now_ms() + 200)
        too_early = await q.dispatch("ex1", ["q"], 1, 10_000)
        q.clock.advance(0.25)  # type: ignore[attr-defined]
        await q.promote_due()
        [retry] = await q.dispatch("ex1", ["q"], 1, 10_000)
        second = await q.complete("r1:a", 2, "FAILED", "", "boom again", q.clock.now_ms())
        run, steps, _ = await q.reader.read_run("r1")
        return [
            first.verdict,
            too_early,
            retry.attempt,
            second.verdict,
            run["state"],
            steps[0]["state"],
        ]

    assert on_valkey(scenario) == ["retrying", [], 2, "failed", "FAILED", "FAILED"]


def test_a_tasks_own_backoff_sets_each_retrys_time(on_valkey) -> None:  # noqa: ANN001
    """task.json's retry_backoff (2 s) and retry_backoff_max (5 s), as the step's retry_ms:
    the retry after attempt n waits between half and all of min(5 s, 2 s * 2^(n-1)), not the
    scheduler's time (here: now); a step without one keeps the scheduler's."""

    async def scenario(q: RunQueue) -> list[tuple[int, str]]:
        own = step("a", max_retries=3)
        own.fields["retry_ms"] = "2000,5000"
        await submit(q, "r1", [own])
        waits = []
        for attempt in (1, 2, 3):
            now = q.clock.now_ms()
            await q.dispatch("ex1", ["q"], 1, 10_000)
            verdict = await q.complete("r1:a", attempt, "FAILED", "", "busy", now)
            [h] = [s for s in (await q.reader.read_run("r1"))[1] if s["step_id"] == "a"]
            waits.append((int(h["retry_at_ms"]) - q.clock.now_ms(), verdict.verdict))
            q.clock.advance(6)  # type: ignore[attr-defined]
            await q.promote_due()
        await q.dispatch("ex1", ["q"], 1, 10_000)  # attempt 4: it stays leased
        await submit(q, "r2", [step("b", max_retries=1)])
        await q.dispatch("ex1", ["q"], 1, 10_000)
        now = q.clock.now_ms()
        await q.complete("r2:b", 1, "FAILED", "", "busy", now + 123)
        [h] = (await q.reader.read_run("r2"))[1]
        return [*waits, (int(h["retry_at_ms"]) - now, "scheduler's")]

    (w1, v1), (w2, v2), (w3, v3), (w4, _) = on_valkey(scenario)
    assert v1 == v2 == v3 == "retrying"
    assert 1000 <= w1 <= 2000 and 2000 <= w2 <= 4000 and 2500 <= w3 <= 5000, (w1, w2, w3)
    assert w4 == 123


def test_a_fatal_error_fails_at_once_and_cancels_the_rest(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        await submit(
            q,
            "r1",
            [
                step("a", dependents=["c"], max_retries=3),
                step("b", dependents=["c"], max_retries=3),
                step("c", deps=["a", "b"]),
            ],
        )
        await q.dispatch("ex1", ["q"], 2, 10_000)
        verdict = await q.complete("r1:a", 1, "FATAL", "", "bad image", q.clock.now_ms())
        run, steps, _ = await q.reader.read_run("r1")
        return verdict.verdict, verdict.cancel, run["state"], [s["state"] for s in steps]

    verdict, cancel, run_state, states = on_valkey(scenario)
    assert (verdict, run_state, states) == (
        "failed",
        "FAILED",
        ["FAILED", "CANCELLED", "CANCELLED"],
    )
    assert cancel == [("r1:b", "ex1")]  # b was running on ex1: its executor must be told


def test_completing_steps_unblocks_dependents_and_finishes_the_run(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> list[Any]:
        await submit(
            q,
            "r1",
            [
                step("detect", dependents=["attrs", "feats"]),
                step("attrs", deps=["detect"], dependents=["merge"]),
                step("feats", deps=["detect"], dependents=["merge"]),
                step("merge", deps=["attrs", "feats"]),
            ],
        )
        seen, merge_inputs = [], {}
        for _ in range(3):
            batch = await q.dispatch("ex1", ["q"], 5, 10_000)
            seen.append(sorted(b.step_id for b in batch))
            for b in batch:
                if b.step_id == "merge":
                    merge_inputs = b.dep_outputs
                verdict = await q.complete(
                    b.member, b.attempt, "SUCCEEDED", json.dumps({b.step_id: 1}), "", 0
                )
        run, _, _ = await q.reader.read_run("r1")
        return [seen, verdict.verdict, run["state"], merge_inputs]

    seen, last_verdict, state, merge_inputs = on_valkey(scenario)
    assert seen == [["detect"], ["attrs", "feats"], ["merge"]]
    assert merge_inputs == {"attrs": '{"attrs": 1}', "feats": '{"feats": 1}'}
    assert (last_verdict, state) == ("run_completed", "COMPLETED")


def test_a_step_with_two_parents_waits_for_both(on_valkey) -> None:  # noqa: ANN001
    """A join is queued by its last parent's result, not its first's; the same in a run
    rebuilt with one parent's output already there (what Redis lost is rebuilt from MongoDB)."""
    diamond = [
        step("detect", dependents=["attrs", "feats"]),
        step("attrs", deps=["detect"], dependents=["merge"]),
        step("feats", deps=["detect"], dependents=["merge"]),
        step("merge", deps=["attrs", "feats"]),
    ]

    async def scenario(q: RunQueue) -> list[Any]:
        await submit(q, "r1", diamond)
        [detect] = await q.dispatch("ex1", ["q"], 5, 10_000)
        await q.complete(detect.member, detect.attempt, "SUCCEEDED", "{}", "", 0)
        branches = {b.step_id: b for b in await q.dispatch("ex1", ["q"], 5, 10_000)}
        await q.complete("r1:attrs", branches["attrs"].attempt, "SUCCEEDED", "{}", "", 0)
        seen = [[b.step_id for b in await q.dispatch("ex1", ["q"], 5, 10_000)]]
        await q.complete("r1:feats", branches["feats"].attempt, "SUCCEEDED", "{}", "", 0)
        seen.append([b.step_id for b in await q.dispatch("ex1", ["q"], 5, 10_000)])
        # Rebuilt: detect and attrs have their outputs, feats is to run again.
        await submit(q, "r2", diamond, done={"detect": "{}", "attrs": "{}"})
        run, _, _ = await q.reader.read_run("r2")
        [(_, first_event)] = await q.redis.xrange(keys.events("r2"), count=1)
        seen.append([run["state"], first_event[b"msg"].decode()])
        seen.append([b.step_id for b in await q.dispatch("ex1", ["q"], 5, 10_000)])
        await q.complete("r2:feats", 1, "SUCCEEDED", "{}", "", 0)
        seen.append([b.step_id for b in await q.dispatch("ex1", ["q"], 5, 10_000)])
        return seen

    assert on_valkey(scenario) == [[], ["merge"], ["RUNNING", "rebuilt"], ["feats"], ["merge"]]


def test_steps_of_runs_in_flight_go_ahead_of_new_first_steps(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> list[str]:
        await submit(q, "early", [step("one", dependents=["two"]), step("two", deps=["one"])])
        [one] = await q.dispatch("ex1", ["q"], 1, 10_000)
        await submit(q, "late", [step("one", dependents=["two"]), step("two", deps=["one"])])
        await q.complete(
            one.member, one.attempt, "SUCCEEDED", "{}", "", 0
        )  # early:two queued after late:one
        return [b.member for b in await q.dispatch("ex1", ["q"], 2, 10_000)]

    assert on_valkey(scenario) == ["early:two", "late:one"]
