"""Namespaces' fair turns through the scheduler's Lua scripts on a real valkey-server: a
backlog holds no other namespace back, weights, order kept, unfinished runs counted."""

from __future__ import annotations

from services.scheduler import keys
from services.scheduler.fair_shares import FairShares
from services.scheduler.queue_records import QueuedStep
from services.scheduler.run_queue import RunQueue
from tests.integration.lua_scenarios import step, submit

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
        seen = [await q.reader.unfinished_counts()]
        leased = {x.member: x for x in await q.dispatch("e1", [queue, "q"], 10, 30_000)}

        async def end(member: str, outcome: str = "SUCCEEDED") -> None:
            await q.complete(member, leased[member].attempt, outcome, "{}", "it broke", 0)

        await end("done:a")
        await end("two:a")  # two:b is queued: the run goes on
        seen.append(await q.reader.unfinished_counts())
        leased.update({x.member: x for x in await q.dispatch("e1", [queue], 1, 30_000)})
        await end("two:b")
        await end("broken:a", "FATAL")
        await end("plain:a")
        await q.cancel_run("dropped", "no longer wanted")
        await q.cancel_run("done", "already over: not counted twice")
        seen.append(await q.reader.unfinished_counts())
        return seen

    assert on_valkey(scenario) == [
        {"team-a": 4, "default": 1},
        {"team-a": 3, "default": 1},
        {"team-a": 0, "default": 0},
    ]
