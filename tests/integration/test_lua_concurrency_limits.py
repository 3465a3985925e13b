"""Concurrency limits through the scheduler's Lua scripts on a real valkey-server: places,
limits per input value, strategies, operators' limits."""

from __future__ import annotations

import json
from typing import Any

from services.scheduler import keys
from services.scheduler.queue_records import Completion, QueuedStep, Want
from services.scheduler.run_queue import RunQueue
from tests.integration.lua_scenarios import limited_step, step, submit


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
        seen["held_back"] = await q.reader.delayed_count()  # what ListQueues counts as held back
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
        seen["waiting"] = await q.reader.delayed_count()
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


def test_of_several_runs_holding_places_the_oldest_one_gives_its_place_up(on_valkey) -> None:  # noqa: ANN001
    """cancel_in_progress with a limit of two: the run cancelled is the oldest holder (run
    ids sort by creation), whatever order the places were taken in — here the newer holder
    took its place first (a higher priority); under cancel_newest, the newcomer."""

    def limited(loser: str, key: str) -> QueuedStep:
        s = few_at_once("a", 2, key)
        return QueuedStep(s.step_id, s.deps, s.dependents, {**s.fields, "conc_strategy": loser})

    async def scenario(q: RunQueue) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for strategy, key in (("oldest", "default/two_latest"), ("newest", "default/two_first")):
            r0, r1, r2 = (f"{strategy}{i}" for i in range(3))
            await submit(q, r0, [limited(strategy, key)], priority=1)
            q.clock.advance(0.01)  # type: ignore[attr-defined]
            await submit(q, r1, [limited(strategy, key)], priority=9)
            [first] = await q.dispatch("e1", ["q"], 1, 10_000)
            [second] = await q.dispatch("e1", ["q"], 1, 10_000)
            q.clock.advance(0.01)  # type: ignore[attr-defined]
            await submit(q, r2, [limited(strategy, key)], priority=1)
            leased = await q.dispatch("e2", ["q"], 8, 10_000)
            seen[strategy] = {
                "order": [first.run_id, second.run_id],
                "leased": [x.run_id for x in leased],
                "cancelled": [r for r, _ in q.take_cancelled()],
                "states": [(await q.redis.hget(keys.run(r), "state")) for r in (r0, r1, r2)],
            }
        return seen

    seen = on_valkey(scenario)
    assert seen["oldest"] == {
        "order": ["oldest1", "oldest0"],  # the newer run took its place first
        "leased": ["oldest2"],
        "cancelled": ["oldest0"],
        "states": [b"CANCELLED", b"RUNNING", b"RUNNING"],
    }
    assert seen["newest"] == {
        "order": ["newest1", "newest0"],
        "leased": [],
        "cancelled": ["newest2"],
        "states": [b"RUNNING", b"RUNNING", b"CANCELLED"],
    }


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
