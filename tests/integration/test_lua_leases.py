"""Leases through the scheduler's Lua scripts on a real valkey-server: run deadlines,
heartbeats, request ids, released attempts, which lease of an attempt counts, and the
scheduler's Redis user."""

from __future__ import annotations

from typing import Any

import pytest

from services.localstack import Cluster
from services.scheduler import keys
from services.scheduler.clock import FakeClock
from services.scheduler.run_queue import RunQueue
from tests.integration.lua_scenarios import step, submit


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
        seen["unfinished"] = await q.reader.unfinished_counts()
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


def test_a_run_still_queued_at_its_deadline_times_out_and_its_steps_leave_the_queue(
    on_valkey,
) -> None:  # noqa: ANN001
    """No executor took it in time (none free, or none serving its queue): it ends all the
    same, with nothing running to stop, and its queued step is never leased after."""

    async def scenario(q: RunQueue) -> dict[str, Any]:
        clock: FakeClock = q.clock  # type: ignore[assignment]
        deadline = {"deadline_ms": str(clock.now_ms() + 5_000)}
        await submit(
            q, "waiting", [step("a", dependents=["b"]), step("b", deps=["a"])], also=deadline
        )
        clock.advance(5.001)
        seen: dict[str, Any] = {"due": await q.time_out_runs()}
        run, steps, _ = await q.reader.read_run("waiting")
        seen["run"] = (run["state"], run["error"])
        seen["steps"] = sorted((s["step_id"], s["state"]) for s in steps)
        seen["leased"] = await q.dispatch("ex1", ["q"], 5, 60_000)
        seen["unfinished"] = await q.reader.unfinished_counts()
        return seen

    seen = on_valkey(scenario)
    assert seen["due"] == (["waiting"], [])
    assert seen["run"] == ("TIMED_OUT", "run_timeout: the run had not finished by its deadline")
    assert seen["steps"] == [("a", "CANCELLED"), ("b", "CANCELLED")]
    assert seen["leased"] == [] and seen["unfinished"] == {"default": 0}


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
