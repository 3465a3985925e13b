"""The scheduler's Lua scripts, through a real valkey-server (database 1 of the session's stack)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.localstack import Cluster
from services.scheduler import keys, wake
from services.scheduler.clock import FakeClock
from services.scheduler.fair_shares import FairShares
from services.scheduler.queue_records import Completion, QueuedStep, Submission, Want
from services.scheduler.run_queue import RunQueue
from services.scheduler.script_connection import SCRIPT_CONNECTION_NAME

Scenario = Callable[[RunQueue], Awaitable[Any]]


@pytest.fixture
def on_valkey(cluster: Cluster) -> Callable[[Scenario], Any]:
    assert cluster.endpoints is not None
    # The queue as the schedulers' ACL user (its scripts touch only keys it may); the flush
    # as the admin.
    url = cluster.endpoints.redis_url.rsplit("/", 1)[0] + "/1"
    admin_url = cluster.endpoints.redis_admin_url.rsplit("/", 1)[0] + "/1"

    def run(scenario: Scenario) -> Any:
        async def main() -> Any:
            admin = aioredis.Redis.from_url(admin_url)
            await admin.flushdb()
            client = aioredis.Redis.from_url(url)
            queue = RunQueue(client, finished_ttl_s=60, clock=FakeClock())  # moved by hand
            queue.admin = admin  # type: ignore[attr-defined]  # what a scenario does as an operator
            try:
                return await scenario(queue)
            finally:
                await queue.close()
                await client.aclose()
                await admin.aclose()

        return asyncio.run(main())

    return run


def step(
    step_id: str,
    deps: list[str] = (),
    dependents: list[str] = (),
    queue: str = "q",  # type: ignore[assignment]
    max_retries: int = 0,
) -> QueuedStep:
    return QueuedStep(
        step_id,
        list(deps),
        list(dependents),
        {
            "task_id": step_id,
            "task_version": "1.0.0",
            "digest": "d" * 64,
            "entry_point": "task.Task",
            "queue": queue,
            "timeout": "10",
            "max_retries": str(max_retries),
            "input_id": f"input_{step_id}",
            "output_id": f"output_{step_id}",
            "mapping": "{}",
            "reads": json.dumps(list(deps)),
        },
    )


async def submit(
    q: RunQueue,
    run_id: str,
    steps: list[QueuedStep],
    priority: int = 5,
    also: dict[str, str] | None = None,
) -> None:
    fields = {
        "run_id": run_id,
        "input_json": json.dumps({"run": run_id}),
        "priority": str(priority),
        "sinks": json.dumps([steps[-1].step_id]),
        **(also or {}),
    }
    created, _ = await q.submit(run_id, fields, steps)
    assert created


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


TEAMS = ["team-a/q", "team-b/q"]


async def lease_all(q: RunQueue, queues: list[str]) -> list[str]:
    """Every ready step of ``queues``, leased one at a time, as runs ids in lease order."""
    order = []
    while leased := await q.dispatch("ex1", queues, 1, 10_000):
        order.append(leased[0].run_id)
    return order


def test_a_namespaces_backlog_does_not_hold_back_another_namespaces_new_runs(on_valkey) -> None:  # noqa: ANN001
    """New work of several namespaces takes turns from where the fleet is: team-b's runs,
    queued after twenty of team-a's, are leased among the next ones, not after all of them."""

    async def scenario(q: RunQueue) -> list[str]:
        for n in range(20):
            await submit(q, f"a{n}", [step("s", queue="team-a/q")])
            q.clock.advance(0.001)  # type: ignore[attr-defined]
        order = [(await q.dispatch("ex1", TEAMS, 1, 10_000))[0].run_id for _ in range(2)]
        for n in range(3):
            await submit(q, f"b{n}", [step("s", queue="team-b/q")])
            q.clock.advance(0.001)  # type: ignore[attr-defined]
        return order + await lease_all(q, TEAMS)

    order = on_valkey(scenario)
    assert order == ["a0", "a1", "b0", "a2", "b1", "a3", "b2", *(f"a{n}" for n in range(4, 20))]


def test_fair_turns_keep_each_namespaces_order_and_yield_to_priority(on_valkey) -> None:  # noqa: ANN001
    """Within a namespace, first come first leased; across them, a higher priority still
    goes first; a namespace that was idle comes back at the fleet's turn, with no credit
    for the time it did not use."""

    async def scenario(q: RunQueue) -> tuple[list[str], list[str]]:
        for n in range(4):
            await submit(q, f"a{n}", [step("s", queue="team-a/q")])
        await submit(q, "b-urgent", [step("s", queue="team-b/q")], priority=9)
        first = await lease_all(q, TEAMS)
        # team-b idle all along at priority 5: it does not now get four turns in a row.
        for n in range(4):
            await submit(q, f"a{n + 4}", [step("s", queue="team-a/q")])
        for n in range(2):
            await submit(q, f"b{n}", [step("s", queue="team-b/q")])
        return first, await lease_all(q, TEAMS)

    first, then = on_valkey(scenario)
    assert first == ["b-urgent", "a0", "a1", "a2", "a3"]
    assert then == ["b0", "a4", "b1", "a5", "a6", "a7"]


def test_a_namespace_of_weight_three_starts_three_runs_for_each_of_weight_one(on_valkey) -> None:  # noqa: ANN001
    """WTM_NAMESPACE_WEIGHTS: while both wait, team-a (weight 3) is given three first steps
    for each one of team-b's; each keeps its own order. A scheduler started without a
    namespace's weight drops it."""

    async def scenario(q: RunQueue) -> tuple[list[str], dict[bytes, bytes]]:
        await FairShares(q.redis, {"team-a": 3, "team-gone": 2}).start()
        await FairShares(q.redis, {"team-a": 3}).start()  # team-gone no longer named
        costs = {k: v for k, v in (await q.redis.hgetall(keys.FAIR)).items() if k.startswith(b"c:")}
        for n in range(12):
            await submit(q, f"a{n}", [step("s", queue="team-a/q")])
        for n in range(4):
            await submit(q, f"b{n}", [step("s", queue="team-b/q")])
        return await lease_all(q, TEAMS), costs

    order, costs = on_valkey(scenario)
    assert costs == {b"c:team-a": b"0.34375"}  # 1/3 in whole 32nds
    assert order == [
        *("a0", "b0", "a1", "a2", "b1", "a3", "a4", "a5", "b2"),
        *("a6", "a7", "a8", "b3", "a9", "a10", "a11"),
    ]


def test_first_steps_queued_before_fair_turns_keep_their_place(on_valkey) -> None:  # noqa: ANN001
    """A Redis that a scheduler without fair turns filled: its first steps were scored by
    enqueue ms. New runs are tagged from the clock on, so those older steps stay ahead."""

    async def scenario(q: RunQueue) -> list[str]:
        await submit(q, "old", [step("a")])
        band = (10 - 5) * 2 + 1
        before = band * 2**42 + q.clock.now_ms() - 5000  # as lib.lua's score was
        await q.redis.zadd(keys.queue("q"), {"old:a": before})
        await q.admin.delete(keys.FAIR)  # type: ignore[attr-defined]  # no fair state yet
        q.clock.advance(0.001)  # type: ignore[attr-defined]
        for run_id in ("new1", "new2"):
            await submit(q, run_id, [step("a")])
        return await lease_all(q, ["q"])

    assert on_valkey(scenario) == ["old", "new1", "new2"]


def test_each_namespaces_unfinished_runs_are_counted_until_they_end(on_valkey) -> None:  # noqa: ANN001
    """What RunLimits reads: +1 as a run is created, -1 as it ends, however it ends
    (completed, failed, cancelled), once."""

    async def scenario(q: RunQueue) -> list[dict[str, int]]:
        async def submit_in(namespace: str, run_id: str, steps: list[QueuedStep]) -> None:
            fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": "[]"}
            created, _ = await q.submit(run_id, {**fields, "namespace": namespace}, steps)
            assert created

        queue = "team-a/q"
        await submit_in("team-a", "done", [step("a", queue=queue)])
        two = [step("a", dependents=["b"], queue=queue), step("b", deps=["a"], queue=queue)]
        await submit_in("team-a", "two", two)
        await submit_in("team-a", "broken", [step("a", queue=queue)])
        await submit_in("team-a", "dropped", [step("a", queue=queue)])
        await submit_in("default", "plain", [step("a")])
        seen = [await q.unfinished_counts()]
        leased = {x.member: x for x in await q.dispatch("e1", [queue, "q"], 10, 30_000)}

        async def end(member: str, outcome: str = "SUCCEEDED") -> None:
            await q.complete(member, leased[member].attempt, outcome, "{}", "it broke", 0)

        await end("done:a")
        await end("two:a")  # two:b is queued: the run goes on
        seen.append(await q.unfinished_counts())
        leased.update({x.member: x for x in await q.dispatch("e1", [queue], 1, 30_000)})
        await end("two:b")
        await end("broken:a", "FATAL")
        await end("plain:a")
        await q.cancel_run("dropped", "no longer wanted")
        await q.cancel_run("done", "already over: not counted twice")
        seen.append(await q.unfinished_counts())
        return seen

    assert on_valkey(scenario) == [
        {"team-a": 4, "default": 1},
        {"team-a": 3, "default": 1},
        {"team-a": 0, "default": 0},
    ]


def test_a_run_past_its_deadline_times_out_and_its_running_steps_are_named(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> dict[str, Any]:
        clock: FakeClock = q.clock  # type: ignore[assignment]
        deadline = {"deadline_ms": str(clock.now_ms() + 5_000)}
        await submit(q, "slow", [step("a", dependents=["b"]), step("b", deps=["a"])], also=deadline)
        await submit(q, "quick", [step("a")], also=deadline)
        await submit(q, "free", [step("a")])
        leased = {x.member: x for x in await q.dispatch("ex1", ["q"], 3, 60_000)}
        await q.complete("quick:a", leased["quick:a"].attempt, "SUCCEEDED", "{}", "", 0)
        seen: dict[str, Any] = {"early": await q.time_out_runs()}
        seen["waiting"] = await q.redis.zrange(keys.DEADLINES, 0, -1)  # quick's left with it
        clock.advance(5.001)
        seen["due"] = await q.time_out_runs()
        seen["again"] = await q.time_out_runs()
        seen["left"] = await q.redis.zcard(keys.DEADLINES)
        slow, steps, _ = await q.reader.read_run("slow")
        seen["slow"] = (slow["state"], slow["error"])
        seen["steps"] = sorted((s["step_id"], s["state"], s["error"]) for s in steps)
        late = await q.complete("slow:a", leased["slow:a"].attempt, "SUCCEEDED", "{}", "", 0)
        seen["late"] = late.verdict
        seen["others"] = [(await q.reader.read_run(r))[0]["state"] for r in ("quick", "free")]
        seen["unfinished"] = await q.unfinished_counts()
        return seen

    seen = on_valkey(scenario)
    assert seen["early"] == ([], [])
    assert seen["waiting"] == [b"slow"]
    assert seen["due"] == (["slow"], [("slow:a", "ex1")])  # its executor must stop it
    assert seen["again"] == ([], []) and seen["left"] == 0
    assert seen["slow"] == ("TIMED_OUT", "run_timeout: the run had not finished by its deadline")
    assert seen["steps"] == [
        ("a", "CANCELLED", "run TIMED_OUT"),
        ("b", "CANCELLED", "run TIMED_OUT"),
    ]
    assert seen["late"] == "stale"  # the stopped attempt's result counts for nothing
    assert seen["others"] == ["COMPLETED", "RUNNING"]
    assert seen["unfinished"] == {"default": 1}


def test_heartbeats_renew_current_attempts_and_name_stale_ones(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[list[str], float, float]:
        await submit(q, "r1", [step("a")])
        await q.dispatch("ex1", ["q"], 1, lease_ms=1000)
        before = await q.redis.zscore(keys.LEASES, "r1:a")
        stale = await q.heartbeat([("r1:a", 1, ""), ("r1:a", 7, "")], lease_ms=60_000)
        after = await q.redis.zscore(keys.LEASES, "r1:a")
        return stale, before, after

    stale, before, after = on_valkey(scenario)
    assert stale == ["r1:a"]  # the attempt-7 claim
    assert after > before + 50_000


def test_a_repeated_request_id_returns_the_first_run(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> list[Any]:
        fields = {"run_id": "r1", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        first = await q.submit("r1", fields, [step("a")], request_id="req-1")
        second = await q.submit("r2", {**fields, "run_id": "r2"}, [step("a")], request_id="req-1")
        return [first, second, await q.redis.exists(keys.run("r2"))]

    assert on_valkey(scenario) == [(True, "r1"), (False, "r1"), 0]


def test_a_released_attempt_is_requeued_without_counting(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[str, int, str]:
        await submit(q, "r1", [step("a", max_retries=0)])
        [first] = await q.dispatch("draining", ["q"], 1, 10_000)
        verdict = await q.complete("r1:a", first.attempt, "RELEASED", "", "draining", 0)
        [again] = await q.dispatch("ex2", ["q"], 1, 10_000)
        done = await q.complete("r1:a", again.attempt, "SUCCEEDED", "{}", "", 0)
        return verdict.verdict, again.attempt, done.verdict

    assert on_valkey(scenario) == ("released", 1, "run_completed")


def test_pipelined_scripts_are_reloaded_when_redis_lost_them(on_valkey) -> None:  # noqa: ANN001
    """Pipelined calls go by SHA alone; after SCRIPT FLUSH (or a Redis restart) they are
    loaded again and every call runs once."""

    async def scenario(q: RunQueue) -> list[str]:
        await submit(q, "r1", [step("a")])
        await q.admin.script_flush()
        await submit(q, "r2", [step("a")])
        await q.admin.script_flush()
        leased = await q.dispatch("e1", ["q"], 5, 30_000)
        await q.admin.script_flush()
        verdicts = await q.complete_many(
            [Completion(x.member, x.attempt, "SUCCEEDED", "{}") for x in leased]
        )
        return [x.member for x in leased] + [v.verdict for v in verdicts]

    assert on_valkey(scenario) == ["r1:a", "r2:a", "run_completed", "run_completed"]


def test_results_and_the_next_leases_share_one_round_trip(on_valkey) -> None:  # noqa: ANN001
    """complete_and_dispatch records results first, so the same call leases the steps they
    made ready, and a stale result in the batch changes nothing."""

    async def scenario(q: RunQueue) -> tuple[list[str], list[list[str]]]:
        await submit(q, "r1", [step("a", dependents=["b"]), step("b", deps=["a"])])
        [a] = await q.dispatch("e1", ["q"], 1, 30_000)
        verdicts, leases = await q.complete_and_dispatch(
            [
                Completion(a.member, a.attempt, "SUCCEEDED", '{"x": 1}'),
                Completion(a.member, a.attempt + 1, "SUCCEEDED", "{}"),  # not the lease's attempt
            ],
            [("e1", ["q"], 2), ("e2", ["q"], 2)],
            30_000,
        )
        return [v.verdict for v in verdicts], [[x.member for x in got] for got in leases]

    verdicts, leases = on_valkey(scenario)
    assert verdicts == ["completed", "stale"]
    assert leases == [["r1:b"], []]


def test_a_run_ending_result_returns_the_whole_run_as_read_run_has_it(on_valkey) -> None:  # noqa: ANN001
    """The verdict that ends a run carries the run (waiting submits and the history use it
    instead of reading it back); other verdicts carry none."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        await submit(q, "r1", [step("a", dependents=["b"]), step("b", deps=["a"])])
        [a] = await q.dispatch("e1", ["q"], 1, 30_000)
        middle = await q.complete(a.member, a.attempt, "SUCCEEDED", '{"x": 1}', "", 0)
        [b] = await q.dispatch("e1", ["q"], 1, 30_000)
        last = await q.complete(b.member, b.attempt, "SUCCEEDED", '{"y": 2}', "", 0)
        return middle.final, last.final, await q.reader.read_run("r1")

    middle, final, read = on_valkey(scenario)
    assert middle is None
    assert final == read
    run, steps, outputs = final
    assert run["state"] == "COMPLETED"
    assert [(s["step_id"], s["state"]) for s in steps] == [("a", "COMPLETED"), ("b", "COMPLETED")]
    assert outputs == {"a": '{"x": 1}', "b": '{"y": 2}'}


def test_a_failing_result_returns_the_failed_run_with_its_cancelled_steps(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> Any:
        await submit(q, "r1", [step("a", dependents=["b"]), step("b", deps=["a"])])
        [a] = await q.dispatch("e1", ["q"], 1, 30_000)
        return (await q.complete(a.member, a.attempt, "FATAL", "", "broken", 0)).final

    run, steps, outputs = on_valkey(scenario)
    assert (run["state"], outputs) == ("FAILED", {})
    assert [s["state"] for s in steps] == ["FAILED", "CANCELLED"]


def test_a_submit_leases_free_slots_in_the_same_round_trip(on_valkey) -> None:  # noqa: ANN001
    """submit_and_dispatch queues new runs, then leases from the queues in the same call:
    older waiting work first (by score), then the new runs' first steps."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        await submit(q, "older", [step("a")])
        q.clock.advance(0.001)  # type: ignore[attr-defined]
        fields = {"run_id": "new", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        created, leases = await q.submit_and_dispatch(
            [Submission("new", fields, [step("a")])], [("e1", ["q"], 1), ("e2", ["q"], 5)], 30_000
        )
        return created, [[x.member for x in got] for got in leases]

    created, leases = on_valkey(scenario)
    assert created == [(True, "new")]
    assert leases == [["older:a"], ["new:a"]]


def test_a_result_that_queues_steps_publishes_the_wake_message(on_valkey) -> None:  # noqa: ANN001
    """Other replicas learn from the complete script itself that work was queued; a result
    that queues nothing publishes nothing."""

    async def scenario(q: RunQueue) -> tuple[list[bytes], bytes]:
        await submit(q, "r1", [step("a", dependents=["b"]), step("b", deps=["a"])])
        [a] = await q.dispatch("e1", ["q"], 1, 30_000)
        await q.announce.close()  # the submit's own announcement is sent before we listen
        pubsub = q.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(keys.WAKE_CHANNEL)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        await q.complete(a.member, a.attempt, "SUCCEEDED", "{}", "", 0)
        [b] = await q.dispatch("e1", ["q"], 1, 30_000)
        await q.complete(b.member, b.attempt, "SUCCEEDED", "{}", "", 0)
        got = []
        while (message := await pubsub.get_message(timeout=0.3)) is not None:
            got.append(message["data"])
        await pubsub.aclose()
        return got, q.origin.encode()

    got, origin = on_valkey(scenario)
    # From the first result (it queued b, on "q"), not from the last.
    assert got == [origin + b' {"q":1}']


def test_a_round_trip_tells_other_replicas_only_what_it_left_waiting(on_valkey) -> None:  # noqa: ANN001
    """A submit or a result whose round trip also leased the steps it queued sends no wake
    message (there is nothing for other replicas to take, and this one would only read its
    own message back); what it left waiting is announced, per queue."""

    async def scenario(q: RunQueue) -> tuple[list[bytes], bytes]:
        pubsub = q.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(keys.WAKE_CHANNEL)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        got = []

        async def heard() -> None:
            await q.announce.close()  # the messages sent in the background have gone
            while (message := await pubsub.get_message(timeout=0.3)) is not None:
                got.append(message["data"])

        def run(run_id: str) -> Submission:
            fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": '["b"]'}
            return Submission(run_id, fields, [step("a", dependents=["b"]), step("b", deps=["a"])])

        def ended(leased: list[Any]) -> list[Completion]:
            return [Completion(x.member, x.attempt, "SUCCEEDED", "{}") for x in leased]

        _, [first] = await q.submit_and_dispatch([run("r1")], [Want("e1", ["q"], 1)], 30_000)
        await heard()  # r1's a leased in the same round trip: nothing
        got.append(b"--")
        await q.submit_and_dispatch([run("r2")], [], 30_000)
        await heard()  # no free slot asked: r2's a waits
        got.append(b"--")
        _, [both] = await q.complete_and_dispatch(ended(first), [Want("e1", ["q"], 2)], 30_000)
        assert {x.member for x in both} == {"r1:b", "r2:a"}
        await heard()  # r1's b (queued by the result) and r2's a leased with it: nothing
        got.append(b"--")
        await q.complete_and_dispatch(ended(both), [], 30_000)
        await heard()  # r2's b queued, no slot asked: it waits
        await pubsub.aclose()
        return got, q.origin.encode()

    got, origin = on_valkey(scenario)
    waiting = origin + b' {"q": 1}'
    assert got == [b"--", waiting, b"--", b"--", waiting]


def test_another_replicas_wake_message_names_the_queues_to_ask(on_valkey) -> None:  # noqa: ANN001
    """A wake message with queue names becomes a hint (only those queues' executors are
    asked) — and, naming a variant not known here, moves the epoch too (every idle
    executor's queues were worked out without it); one without names (an older replica's)
    moves the epoch (everyone is asked); this process's own is ignored."""

    async def scenario(q: RunQueue) -> list[tuple[int, dict[str, int]]]:
        seen = []
        for message in (
            b'elsewhere {"q": 2, "gpu|kind=a,b": 1}',
            b"elsewhere",
            b"elsewhere {not json",
            q.origin.encode() + b' {"q": 5}',
        ):
            q.heard(message)
            seen.append((q.queued_epoch, dict(q.take_new_work())))
        return seen

    assert on_valkey(scenario) == [
        (1, {"q": 2, "gpu|kind=a,b": 1}),
        (2, {}),
        (3, {}),
        (3, {}),
    ]


def test_scripts_go_on_the_queues_own_lines_and_survive_a_drop(on_valkey) -> None:  # noqa: ANN001
    """Script pipelines go on the queue's own lines: round trips that overlap open more of
    them, up to four, and wait their turn past that (none goes through a pooled redis-py
    pipeline); a line the server dropped is replaced before its next call."""

    async def scenario(q: RunQueue) -> tuple[int, list[str], list[str]]:
        await asyncio.gather(*(submit(q, f"r{i}", [step("a")]) for i in range(6)))
        db = q.redis.connection_pool.connection_kwargs["db"]
        lines = [
            c
            for c in await q.admin.client_list()
            if c["name"] == SCRIPT_CONNECTION_NAME
            and c["db"] == str(db)  # not the session scheduler's
        ]
        for line in lines:
            await q.admin.client_kill_filter(_id=line["id"])
        await asyncio.sleep(0.05)  # the event loop sees the close
        leased = await q.dispatch("e1", ["q"], 10, 30_000)
        verdicts = await q.complete_many(
            [Completion(x.member, x.attempt, "SUCCEEDED", "{}") for x in leased]
        )
        return len(lines), sorted(x.member for x in leased), [v.verdict for v in verdicts]

    opened, members, verdicts = on_valkey(scenario)
    assert opened == 4  # six overlapping submits: four lines, two calls waited their turn
    assert members == [f"r{i}:a" for i in range(6)]
    assert verdicts == ["run_completed"] * 6


def test_a_pipeline_that_reloads_scripts_wakes_the_dispatcher(on_valkey) -> None:  # noqa: ANN001
    """Calls re-sent after a reload run after the ones that had found their script: a
    dispatch may have run before the submit that queued work, so the dispatcher is woken
    to lease it."""

    async def scenario(q: RunQueue) -> tuple[list[tuple[bool, str]], list[list[str]], bool]:
        q.work_queued.clear()
        await q.admin.script_flush()  # as after a Redis restart, then one script is back
        await q.redis.script_load(q._scripts["dispatch"].script)
        fields = {"run_id": "r1", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        created, leases = await q.submit_and_dispatch(
            [Submission("r1", fields, [step("a")])], [("e1", ["q"], 1)], 30_000
        )
        return created, [[x.member for x in got] for got in leases], q.work_queued.is_set()

    created, leases, woken = on_valkey(scenario)
    assert created == [(True, "r1")]
    assert leases == [[]]  # the dispatch ran first: submit_run had to be loaded again
    assert woken


def test_only_the_current_lease_of_an_attempt_counts(on_valkey) -> None:  # noqa: ANN001
    """An attempt number can repeat (Redis rebuilt a run); the lease id cannot."""

    async def scenario(q: RunQueue) -> tuple[str, list[str], list[str], str, str, str]:
        await submit(q, "r1", [step("a")])
        [leased] = await q.dispatch("ex1", ["q"], 1, 10_000)
        lease = leased.step["lease"]
        other = await q.dispatch("ex2", ["q"], 1, 10_000)  # nothing left: no second lease
        wrong_beat = await q.heartbeat([("r1:a", 1, "not-" + lease)], lease_ms=60_000)
        right_beat = await q.heartbeat([("r1:a", 1, lease)], lease_ms=60_000)
        forged = await q.complete("r1:a", 1, "SUCCEEDED", "{}", "", 0, lease="not-" + lease)
        real = await q.complete("r1:a", 1, "SUCCEEDED", "{}", "", 0, lease=lease)
        return lease, wrong_beat, right_beat, forged.verdict, real.verdict, str(other)

    lease, wrong_beat, right_beat, forged, real, other = on_valkey(scenario)
    assert lease and other == "[]"
    assert (wrong_beat, right_beat) == (["r1:a"], [])
    assert (forged, real) == ("stale", "run_completed")


def test_a_lease_lost_before_any_heartbeat_named_it_is_not_counted_three_times_at_most(
    on_valkey,  # noqa: ANN001
) -> None:
    """A lease no heartbeat renewed (the executor never said it had the step) goes back to
    its queue at once without spending a retry; after three such, a step whose executor
    dies before every first heartbeat counts its attempts again."""

    async def scenario(q: RunQueue) -> tuple[list[str], list[int], str, str]:
        await submit(q, "r1", [step("a", max_retries=0)])
        verdicts, attempts = [], []
        for _ in range(4):
            await q.promote_due()
            [leased] = await q.dispatch("ex1", ["q"], 1, lease_ms=1)
            attempts.append(leased.attempt)
            q.clock.advance(0.01)  # type: ignore[attr-defined]
            [expired] = await q.expire_leases()
            verdicts.append(expired["verdict"])
        run, steps, _ = await q.reader.read_run("r1")
        return verdicts, attempts, run["state"], steps[0]["unheard"]

    verdicts, attempts, state, unheard = on_valkey(scenario)
    assert verdicts == ["released"] * 3 + ["failed"] and attempts == [1, 2, 3, 4]
    assert (state, unheard) == ("TIMED_OUT", "3")


def test_a_lease_a_heartbeat_renewed_counts_when_it_runs_out(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> tuple[str, str]:
        await submit(q, "r1", [step("a", max_retries=0)])
        [leased] = await q.dispatch("ex1", ["q"], 1, lease_ms=1_000)
        await q.heartbeat([("r1:a", 1, leased.step["lease"])], lease_ms=1_000, executor="ex1")
        q.clock.advance(1.5)  # type: ignore[attr-defined]
        [expired] = await q.expire_leases()
        run, _, _ = await q.reader.read_run("r1")
        return expired["verdict"], run["state"]

    assert on_valkey(scenario) == ("failed", "TIMED_OUT")


def test_every_dispatch_gets_its_own_lease_id(on_valkey) -> None:  # noqa: ANN001
    async def scenario(q: RunQueue) -> list[str]:
        await submit(q, "r1", [step(x, max_retries=2) for x in "abc"])
        first = await q.dispatch("ex1", ["q"], 3, lease_ms=1)
        q.clock.advance(0.01)  # type: ignore[attr-defined]
        await q.expire_leases()
        await q.promote_due()
        again = await q.dispatch("ex1", ["q"], 3, 10_000)
        return [x.step["lease"] for x in first + again]

    leases = on_valkey(scenario)
    assert len(leases) == 6 and len(set(leases)) == 6


def test_the_schedulers_redis_user_reaches_only_its_own_keys(cluster: Cluster) -> None:
    """The services get an ACL user: keys and channels under wtm: only, and no admin or
    dangerous command (a leaked URL cannot flush, list or reconfigure Redis)."""
    import redis
    from redis.exceptions import NoPermissionError

    assert cluster.endpoints is not None
    r = redis.Redis.from_url(cluster.endpoints.redis_url)
    try:
        assert r.acl_whoami() == "wtm" and r.exists("wtm:epoch") in (0, 1)
        for forbidden in (
            lambda: r.get("someone-else"),
            lambda: r.publish("other-channel", "x"),
            lambda: r.flushall(),
            lambda: r.keys("*"),
            lambda: r.config_get("*"),
            lambda: r.acl_list(),
        ):
            with pytest.raises(NoPermissionError):
                forbidden()
    finally:
        r.close()


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


def limited_step(
    step_id: str, interval_ms: float, key: str = "default/api_call", burst: int = 1
) -> QueuedStep:
    """A step of a task with a rate limit (task.json rate_limit: one start every interval;
    rate_burst: up to that many at once)."""
    s = step(step_id)
    fields = {**s.fields, "rate": repr(interval_ms), "rate_key": key}
    if burst > 1:
        fields["rate_burst"] = str(burst)
    return QueuedStep(s.step_id, s.deps, s.dependents, fields)


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


def few_at_once(step_id: str, limit: int, key: str = "default/gpu_job") -> QueuedStep:
    """A step of a task with a concurrency limit (task.json concurrency_limit)."""
    s = step(step_id, max_retries=1)
    return QueuedStep(
        s.step_id, s.deps, s.dependents, {**s.fields, "conc": str(limit), "conc_key": key}
    )


async def run_events(q: RunQueue, run_id: str) -> list[str]:
    return [f[b"msg"].decode() for _, f in await q.redis.xrange(keys.events(run_id))]


def test_a_concurrency_limited_task_runs_at_most_its_limit_at_once(on_valkey) -> None:  # noqa: ANN001
    """Five runs of a task limited to two at once, two executors with room for all: two
    steps run, three wait for a place in arrival order (each run's events say so, once), and
    every end of a lease (a success, a failed attempt that retries, a cancelled run) queues
    the first waiting step, leased in the same round trip; another namespace's steps of the
    same task and a task without a limit are not held."""

    async def scenario(q: RunQueue) -> dict[str, Any]:
        for n in range(5):
            await submit(q, f"r{n}", [few_at_once("a", 2)])
            q.clock.advance(0.001)  # type: ignore[attr-defined]
        await submit(q, "plain", [step("a")])
        await submit(q, "theirs", [few_at_once("a", 2, key="team-b/gpu_job")])
        wants = [Want("e1", ["q"], 8, False), Want("e2", ["q"], 8, False)]
        first = [x for leased in await q.dispatch_many(wants, 10_000) for x in leased]
        seen: dict[str, Any] = {"first": sorted(x.run_id for x in first)}
        seen["waiting"] = [
            m.decode() for m in await q.redis.zrange(keys.place_waits("default/gpu_job"), 0, -1)
        ]
        seen["again"] = await q.dispatch("e2", ["q"], 8, 10_000)  # still full: nothing
        seen["held_back"] = await q.delayed_count()  # what ListQueues counts as held back
        seen["events"] = await run_events(q, "r2")
        held = {x.run_id: x for x in first}
        done = Completion("r0:a", 1, "SUCCEEDED", "{}", lease=held["r0"].step["lease"])
        verdicts, leases = await q.complete_and_dispatch([done], [Want("e1", ["q"], 8)], 10_000)
        seen["after_success"] = (verdicts[0].queued_on, [x.run_id for x in leases[0]])
        r2 = leases[0][0]
        failed = Completion(
            "r2:a", 1, "FAILED", "", "boom", q.clock.now_ms() + 60_000, lease=r2.step["lease"]
        )
        verdicts, leases = await q.complete_and_dispatch([failed], [Want("e1", ["q"], 8)], 10_000)
        seen["after_failure"] = (verdicts[0].verdict, [x.run_id for x in leases[0]])
        await q.cancel_run("r4", "not needed")  # waiting: it leaves the line
        await q.cancel_run("r1", "not needed")  # running: its place is left
        seen["after_cancel"] = [x.run_id for x in await q.dispatch("e1", ["q"], 8, 10_000)]
        seen["places"] = sorted(
            m.decode() for m in await q.redis.hkeys(keys.places("default/gpu_job"))
        )
        seen["left"] = await q.redis.exists(keys.place_waits("default/gpu_job"), keys.PLACE_LIMITS)
        seen["events_after"] = await run_events(q, "r2")
        return seen

    seen = on_valkey(scenario)
    assert seen["first"] == ["plain", "r0", "r1", "theirs"]
    assert seen["waiting"] == ["r2:a", "r3:a", "r4:a"] and seen["again"] == []
    assert seen["held_back"] == 3
    assert seen["events"].count("waits for a place: its task runs at most 2 at once") == 1
    assert seen["after_success"] == (["q"], ["r2"])
    assert seen["after_failure"] == ("retrying", ["r3"])  # the retry waits its backoff
    assert (
        seen["after_cancel"] == []
    )  # r4 was cancelled while it waited; r3 and r2's retry hold none
    assert seen["places"] == ["r3:a"] and seen["left"] == 0
    assert seen["events_after"].count("waits for a place: its task runs at most 2 at once") == 1


def test_a_place_left_without_a_word_is_found_and_a_lapsed_lease_leaves_its_place(
    on_valkey,
) -> None:  # noqa: ANN001
    """A holder whose lease is no longer its own (an older replica ended it without leaving
    its place) is not counted: the next promotion queues the waiting step. A lease that
    lapses (its executor stopped) leaves its place as any end does."""

    async def scenario(q: RunQueue) -> dict[str, Any]:
        for n in range(3):
            await submit(q, f"r{n}", [few_at_once("a", 1)])
            q.clock.advance(0.001)  # type: ignore[attr-defined]
        [held] = await q.dispatch("e1", ["q"], 8, 1_000)
        seen: dict[str, Any] = {"held": held.run_id}
        # As a scheduler from before this change would end it: the step's state, no place left.
        await q.admin.hset(keys.step("r0", "a"), "state", "COMPLETED")  # type: ignore[attr-defined]
        await q.admin.zrem(keys.LEASES, "r0:a")  # type: ignore[attr-defined]
        seen["promoted"] = await q.promote_due()
        [second] = await q.dispatch("e1", ["q"], 8, 1_000)
        seen["second"] = second.run_id
        q.clock.advance(2)  # type: ignore[attr-defined]
        seen["expired"] = [e["member"] for e in await q.expire_leases()]
        [third] = await q.dispatch("e2", ["q"], 8, 1_000)  # r1's retry waits its backoff
        seen["third"] = third.run_id
        return seen

    seen = on_valkey(scenario)
    assert seen == {"held": "r0", "promoted": 1, "second": "r1", "expired": ["r1:a"], "third": "r2"}


def test_an_operators_task_limits_stand_in_for_task_jsons_for_queued_steps_too(on_valkey) -> None:  # noqa: ANN001
    """SetTaskLimits' entries in wtm:task-limits: a task with no limits of its own, limited to
    one at once by an operator after its steps were queued, leases one; raised to three, the
    next promotion queues the waiting ones and two more are leased; a task.json limit set
    to 0 ("none") by an operator holds nothing back; a rate set by an operator spaces starts."""

    def of_task(s: QueuedStep, task: str) -> QueuedStep:
        namespace, task_id = task.split("/")
        fields = {**s.fields, "namespace": namespace, "task_id": task_id}
        return QueuedStep(s.step_id, s.deps, s.dependents, fields)

    async def scenario(q: RunQueue) -> dict[str, Any]:
        for n in range(4):
            await submit(q, f"r{n}", [of_task(step("a"), "default/plain")])
            await submit(q, f"l{n}", [of_task(few_at_once("a", 1, "default/own"), "default/own")])
        await q.redis.hset(
            keys.TASK_LIMITS, mapping={"conc:default/plain": "1", "conc:default/own": "0"}
        )
        first = await q.dispatch("e1", ["q"], 16, 10_000)
        seen: dict[str, Any] = {"first": sorted(x.run_id for x in first)}
        await q.redis.hset(keys.TASK_LIMITS, "conc:default/plain", "3")
        seen["promoted"] = await q.promote_due()
        seen["raised"] = sorted(x.run_id for x in await q.dispatch("e1", ["q"], 16, 10_000))
        await submit(q, "s0", [of_task(step("a"), "default/spaced")])
        await submit(q, "s1", [of_task(step("a"), "default/spaced")])
        await q.redis.hset(keys.TASK_LIMITS, "rate:default/spaced", "500.0")
        t0 = q.clock.now_ms()
        seen["spaced"] = [x.run_id for x in await q.dispatch("e2", ["q"], 16, 10_000)]
        seen["aside"] = [
            (m.decode(), s - t0)
            for m, s in await q.redis.zrange(keys.DELAYED, 0, -1, withscores=True)
        ]
        for n in range(3):  # an operator's burst of 2 over task.json's rate of one a minute
            await submit(q, f"b{n}", [of_task(limited_step("a", 60_000.0), "default/bursty")])
        await q.redis.hset(keys.TASK_LIMITS, "burst:default/bursty", "2")
        seen["burst"] = sorted(x.run_id for x in await q.dispatch("e2", ["q"], 16, 10_000))
        return seen

    seen = on_valkey(scenario)
    assert seen["first"] == ["l0", "l1", "l2", "l3", "r0"]  # task.json's 1 lifted; the operator's 1
    assert seen["promoted"] == 2 and seen["raised"] == ["r1", "r2"]
    assert seen["spaced"] == ["s0"] and seen["aside"] == [("s1:a", 500)]
    assert seen["burst"] == ["b0", "b1"]


def test_a_limit_per_input_value_holds_each_value_apart(on_valkey) -> None:  # noqa: ANN001
    """A task limited to one at once per document (task.json concurrency_key): the runs'
    groups (run field conc_groups) key their places, so one step per document runs, the
    second of a document waits (its events name the group) and is queued when the first
    ends; an operator's limit of two holds per group too, and a promotion reads it for a
    group's waiting steps; the groups' keys are gone once nothing holds or waits."""

    def for_doc(doc: str) -> dict[str, str]:
        return {"conc_groups": json.dumps({"a": f'doc="{doc}"'})}

    limited = few_at_once("a", 1)
    limited.fields.update(namespace="default", task_id="gpu_job")

    async def scenario(q: RunQueue) -> dict[str, Any]:
        for n, doc in enumerate(["x", "x", "y", "x"]):
            await submit(q, f"r{n}", [limited], also=for_doc(doc))
            q.clock.advance(0.001)  # type: ignore[attr-defined]
        first = await q.dispatch("e1", ["q"], 8, 10_000)
        seen: dict[str, Any] = {"first": sorted(x.run_id for x in first)}
        seen["waiting"] = [
            m.decode()
            for m in await q.redis.zrange(keys.place_waits('default/gpu_job#doc="x"'), 0, -1)
        ]
        seen["events"] = await run_events(q, "r1")
        held = {x.run_id: x for x in first}
        done = Completion("r0:a", 1, "SUCCEEDED", "{}", lease=held["r0"].step["lease"])
        _, leases = await q.complete_and_dispatch([done], [Want("e1", ["q"], 8)], 10_000)
        seen["next"] = [x.run_id for x in leases[0]]
        await q.redis.hset(keys.TASK_LIMITS, "conc:default/gpu_job", "2")
        seen["promoted"] = await q.promote_due()
        raised = await q.dispatch("e1", ["q"], 8, 10_000)
        seen["raised"] = [x.run_id for x in raised]
        ends = [
            Completion(x.member, 1, "SUCCEEDED", "{}", lease=x.step["lease"])
            for x in [held["r2"], *leases[0], *raised]
        ]
        await q.complete_and_dispatch(ends, [], 10_000)
        seen["left"] = [
            *await q.admin.keys(keys.places("*")),  # type: ignore[attr-defined]
            *await q.admin.keys(keys.place_waits("*")),  # type: ignore[attr-defined]
            *await q.admin.keys(keys.PLACE_LIMITS),  # type: ignore[attr-defined]
        ]
        return seen

    seen = on_valkey(scenario)
    assert seen["first"] == ["r0", "r2"]  # x's first and y's; x's others wait
    assert seen["waiting"] == ["r1:a", "r3:a"]
    assert 'waits for a place: its task runs at most 1 at once per doc="x"' in seen["events"]
    assert seen["next"] == ["r1"]
    assert seen["promoted"] == 1 and seen["raised"] == ["r3"]  # two of x's at once now
    assert seen["left"] == []


def test_a_concurrency_strategy_cancels_the_oldest_or_the_newest_run_for_a_place(on_valkey) -> None:  # noqa: ANN001
    """task.json concurrency_strategy (Hatchet's CANCEL_IN_PROGRESS and CANCEL_NEWEST), a
    task limited to one at once: "cancel_in_progress" — a newer run's step cancels the run
    holding the place (its executor is to be told to stop: the leaser takes it) and
    takes the place, and the cancelled attempt's late result frees nothing; "cancel_newest"
    — the newer run is cancelled and the holder goes on. Nothing waits under either."""

    def limited(loser: str, key: str) -> QueuedStep:
        s = few_at_once("a", 1, key)
        return QueuedStep(s.step_id, s.deps, s.dependents, {**s.fields, "conc_strategy": loser})

    async def scenario(q: RunQueue) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        await submit(q, "p0", [limited("oldest", "default/latest_only")])
        [p0] = await q.dispatch("e1", ["q"], 8, 10_000)
        q.clock.advance(0.01)  # type: ignore[attr-defined]
        await submit(q, "p1", [limited("oldest", "default/latest_only")])
        seen["in_progress"] = [x.run_id for x in await q.dispatch("e2", ["q"], 8, 10_000)]
        seen["heard"] = q.take_cancelled()  # the leaser's to stop and report, as a cancel
        seen["p0"] = await q.redis.hmget(keys.run("p0"), "state", "error")
        late = Completion("p0:a", 1, "SUCCEEDED", "{}", lease=p0.step["lease"])
        seen["late"] = (await q.complete_many([late]))[0].verdict
        seen["holders"] = await q.redis.hkeys(keys.places("default/latest_only"))
        await submit(q, "n0", [limited("newest", "default/first_only")])
        await q.dispatch("e1", ["q"], 8, 10_000)
        q.clock.advance(0.01)  # type: ignore[attr-defined]
        await submit(q, "n1", [limited("newest", "default/first_only")])
        seen["newest"] = await q.dispatch("e2", ["q"], 8, 10_000)
        seen["n1"] = await q.redis.hmget(keys.run("n1"), "state", "error")
        seen["n0"] = await q.redis.hget(keys.run("n0"), "state")
        seen["waiting"] = await q.delayed_count()
        seen["heard_after"] = [r for r, _ in q.take_cancelled()]
        # A run does not compete with itself: its second step waits for its first's place.
        twins = [limited("oldest", "default/twins"), limited("oldest", "default/twins")]
        twins[1] = QueuedStep("b", [], [], twins[1].fields)
        await submit(q, "s0", twins)
        seen["twins"] = [x.step_id for x in await q.dispatch("e1", ["q"], 8, 10_000)]
        seen["s0"] = await q.redis.hget(keys.run("s0"), "state")
        return seen

    seen = on_valkey(scenario)
    assert seen["in_progress"] == ["p1"]
    assert seen["heard"] == [("p0", [("p0:a", "e1")])]
    assert seen["p0"][0] == b"CANCELLED"
    assert seen["p0"][1].decode() == (
        "superseded by a newer run: its task runs at most 1 at once "
        "(concurrency_strategy cancel_in_progress)"
    )
    assert seen["late"] == "stale" and seen["holders"] == [b"p1:a"]  # fenced: frees nothing
    assert seen["newest"] == [] and seen["n0"] == b"RUNNING"
    assert seen["n1"][0] == b"CANCELLED" and b"cancel_newest" in seen["n1"][1]
    assert seen["waiting"] == 0 and seen["heard_after"] == ["n1"]
    assert seen["twins"] == ["a"] and seen["s0"] == b"RUNNING"


def test_a_concurrency_limited_step_goes_to_a_slot_never_to_an_executors_prefetch(
    on_valkey,
) -> None:  # noqa: ANN001
    """Two places, an executor asking only for its prefetch room (its slot is busy): an
    unlimited step is held ahead as before, but the limited task's step stays queued — a
    place spent waiting in it would idle another executor's free slot — and so does what is
    behind it (a backlog of them is not churned each round); asked for a slot, it is leased."""

    async def scenario(q: RunQueue) -> tuple[Any, ...]:
        for run_id, s in (
            ("plain", step("a")),
            ("limited", few_at_once("a", 2)),
            ("later", step("a")),
        ):
            await submit(q, run_id, [s])
            q.clock.advance(0.001)  # type: ignore[attr-defined]
        [ahead] = await q.dispatch_many([Want("e1", ["q"], 4, False, held=True)], 10_000)
        queued = [m.decode() for m in await q.redis.zrange(keys.queue("q"), 0, -1)]
        [slot] = await q.dispatch_many([Want("e2", ["q"], 1)], 10_000)
        return [x.run_id for x in ahead], queued, [x.run_id for x in slot]

    ahead, queued, slot = on_valkey(scenario)
    assert ahead == ["plain"] and queued == ["limited:a", "later:a"] and slot == ["limited"]
