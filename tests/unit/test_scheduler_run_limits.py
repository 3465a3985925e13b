"""Runs in the scheduler's core against a real valkey (``scheduler_core.py``): a run's
max_parallel_tasks, a cancelled run's held steps, cached outputs (and the size the cache keeps),
a finished run's keys."""

from __future__ import annotations

import json

from services.scheduler.queue_records import QueuedStep, Submission
from tests.unit.scheduler_core import Core, assignments, scenario, step


def fan_out(run_id: str, width: int, max_parallel: int) -> Submission:
    """A run of one first step, then ``width`` steps that depend on it only."""
    limit = {"max_parallel": str(max_parallel)}
    names = [f"b{i}" for i in range(width)]
    first = step("a", 0)
    first = QueuedStep("a", [], names, {**first.fields, **limit})
    rest = [QueuedStep(n, ["a"], [], {**step(n, 0).fields, **limit}) for n in names]
    fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": json.dumps(names),
              **limit}  # fmt: skip
    return Submission(run_id, fields, [first, *rest])


def test_max_parallel_tasks_keeps_a_runs_steps_in_flight_at_the_limit(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=10)
        [(created, _)] = await c.core.submit([fan_out("r1", 5, 2)])
        assert created
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        in_flight = assignments(e1)
        assert len(in_flight) == 2  # five are ready, ten slots are free: the limit holds
        held = await c.queue.redis.zrange("wtm:h:r1", 0, -1)
        assert [m.decode() for m in held] == ["r1:b2", "r1:b3", "r1:b4"]  # in pipeline order
        done = []
        while in_flight:
            finished = in_flight.pop(0)
            await c.report(e1, finished, "SUCCEEDED")
            done.append(finished.step_id)
            in_flight += assignments(e1)  # the step it let go, in the result's own round trip
            assert len(in_flight) <= 2
        assert sorted(done) == [f"b{i}" for i in range(5)]
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]

    scenario(valkey_url, body)


def test_a_cancelled_run_leaves_no_held_steps(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=10)
        await c.core.submit([fan_out("r1", 4, 1)])
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        assert len(assignments(e1)) == 1
        assert await c.queue.redis.zcard("wtm:h:r1") == 3
        await c.core.cancel_run("r1", "enough")
        assert not await c.queue.redis.exists("wtm:h:r1")
        steps = [await c.queue.redis.hget(f"wtm:s:r1:b{i}", "state") for i in range(4)]
        assert {s.decode() for s in steps} == {"CANCELLED"}

    scenario(valkey_url, body)


def cached_run(run_id: str, text: str) -> Submission:
    a = step("a", 0)
    fields = {"run_id": run_id, "input_json": json.dumps({"text": text}), "priority": "5",
              "sinks": '["a"]'}  # fmt: skip
    return Submission(run_id, fields, [QueuedStep("a", [], [], {**a.fields, "cache": "1"})])


def test_a_cached_output_completes_the_step_without_an_executor_running_it(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.core.submit([cached_run("r1", "hello")])
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED", '{"n": 1}')
        await c.core.submit([cached_run("r2", "hello"), cached_run("r3", "other")])
        assert c.core.leaser.work_queued.is_set()  # r2's slot is free again: lease again
        await c.lease_round()
        [ran] = assignments(e1)  # r2 never reached the executor; r3's input is new
        assert ran.run_id == "r3" and e1.free_slots == 0
        assert c.heard.of("run_ended") == [("r1", "COMPLETED"), ("r2", "COMPLETED")]
        hit = await c.queue.redis.hgetall("wtm:s:r2:a")
        assert hit[b"cached_from"] == b"r1/output_a" and hit[b"executor"] == b""
        assert await c.queue.redis.hget("wtm:o:r2", "a") == b'{"n": 1}'
        assert json.loads(hit[b"lineage"]) == [["r1/output_a", "output_a"]]
        # Only the executed attempt's output was stored: the hit did not store itself again.
        assert len(await c.queue.redis.keys("wtm:cache:*")) == 1

    scenario(valkey_url, body)


def test_retain_shortens_a_finished_runs_keys_in_one_call(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1")
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        r = c.queue.redis
        names = ["wtm:r:r1", "wtm:s:r1:a", "wtm:o:r1", "wtm:e:r1"]
        assert await r.ttl("wtm:r:r1") > 5  # the finished-run TTL (60 s here)
        await c.queue.retain(["r1", "no-such-run"], 5)
        ttls = [await r.ttl(k) for k in names]
        assert all(0 < t <= 5 for t in ttls), ttls

    scenario(valkey_url, body)


def test_an_output_up_to_the_caches_size_limit_is_stored_and_a_larger_one_is_not(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        assert c.core.leaser.cache is not None
        c.core.leaser.cache.max_bytes = 8
        e1 = c.executor("e1")
        await c.core.submit([cached_run("r1", "fits")])
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED", '{"n":12}')  # 8 bytes: stored
        await c.core.submit([cached_run("r2", "too big")])
        [b] = assignments(e1)
        await c.report(e1, b, "SUCCEEDED", '{"n":123}')  # 9 bytes: not
        stored = [
            json.loads(await c.queue.redis.get(k)) for k in await c.queue.redis.keys("wtm:cache:*")
        ]
        assert stored == [{"output": '{"n":12}', "from": "r1/output_a"}]

    scenario(valkey_url, body)
