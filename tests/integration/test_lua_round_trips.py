"""Round trips of the scheduler's Lua scripts on a real valkey-server: results and the next
leases in one, scripts loaded again after Redis lost them, and the wake messages that
tell other replicas what to ask."""

from __future__ import annotations

import asyncio
from typing import Any

from services.scheduler import keys
from services.scheduler.queue_records import Completion, Submission, Want
from services.scheduler.run_queue import RunQueue
from services.scheduler.script_connection import SCRIPT_CONNECTION_NAME
from tests.integration.lua_scenarios import step, submit


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
