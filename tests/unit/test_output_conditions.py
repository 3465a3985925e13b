"""A pipeline step's skip_if on an upstream step's output, decided by the scheduler's scripts
where the step becomes ready (``lib.lua``'s ``skip_on_reason``): the same semantics as the
Python that decides conditions on the run's input (``conditions.holds``), checked case by
case through a real valkey; then runs against the scheduler's core (``scheduler_core.py``):
a step skipped or queued by what its dependency returned, a skip that makes the steps after
it ready or skips them too and ends the run, a run that ends in its submit, an output that
went by reference, and a rebuilt run that decides again."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from common import refs
from services.common.conditions import Condition, holds, lua_fields, output_paths, parse, view
from services.scheduler import keys
from services.scheduler.models import StepRun
from services.scheduler.queue_records import QueuedStep, Submission, ready_queues
from services.scheduler.run_queue import LUA_DIR
from tests.unit.scheduler_core import Core, assignments, scenario, state_of, step
from tests.unit.test_conditions import CASES, INPUT

HOLDS = (
    (LUA_DIR / "lib.lua").read_text()
    + """
local c = cjson.decode(ARGV[1])[1]
if ARGV[2] == '' then return condition_holds(c, false) and 1 or 0 end
return condition_holds(c, cjson.decode(ARGV[2])) and 1 or 0
"""
)


@pytest.fixture(scope="module")
def valkey(valkey_url: str) -> Any:
    client = redis.Redis.from_url(valkey_url)
    yield client.register_script(HOLDS)
    client.close()


@pytest.mark.parametrize(("path", "op", "value", "expected"), CASES)
def test_each_operator_holds_in_the_scripts_as_in_python(
    valkey: Any, path: str, op: str, value: Any, expected: bool
) -> None:
    condition = Condition(path, op, value)
    assert holds(condition, INPUT) is expected  # the Python, as test_conditions checks it
    assert valkey(args=[lua_fields((condition,)), json.dumps(INPUT)]) == int(expected)


@pytest.mark.parametrize(
    ("output", "op", "value", "expected"),
    [
        ([], "==", [], True),  # a task that found nothing
        ([1], "==", [], False),
        ({"n": None}, "==", None, False),  # a different path: the document itself
        (None, "==", None, True),
        ("text", "==", "text", True),
        (7, ">", 5, True),
    ],
)
def test_a_condition_on_a_whole_output_reads_the_document_itself(
    valkey: Any, output: Any, op: str, value: Any, expected: bool
) -> None:
    [condition] = parse({"path": "$.a", "op": op, "value": value}, {"a"}, "s", {"a"})
    assert condition.source == "a" and condition.parsed.segments == ()
    assert holds(condition, output) is expected
    assert valkey(args=[lua_fields((condition,)), json.dumps(output)]) == int(expected)


def test_a_source_without_output_has_no_field_but_for_not_exists(valkey: Any) -> None:
    """A skipped step has no output: as a missing field, only not_exists holds on it."""
    for op, value, expected in [("not_exists", None, 1), ("exists", None, 0), ("==", None, 0)]:
        doc = {"path": "$.a.x", "op": op, **({} if "exists" in op else {"value": value})}
        assert valkey(args=[lua_fields(parse(doc, {"a"}, "s", {"a"})), ""]) == expected


# An output stored by reference is read through its view (conditions.view) -----------------


@pytest.mark.parametrize(("path", "op", "value", "expected"), CASES)
def test_each_condition_holds_on_the_view_of_its_paths_as_on_the_document(
    valkey: Any, path: str, op: str, value: Any, expected: bool
) -> None:
    """The view keeps what the conditions read (here the case's own path and two others)."""
    condition = Condition(path, op, value)
    others = (Condition("$.tags[0]", "exists"), Condition("$.options", "exists"))
    seen = view(INPUT, output_paths([c.parsed for c in (condition, *others)], ""))
    assert "mode" not in seen or path == "$.mode"  # the rest is left out
    assert holds(condition, seen) is expected
    assert valkey(args=[lua_fields((condition,)), json.dumps(seen)]) == int(expected)


def test_a_view_pads_a_list_up_to_the_index_read_and_keeps_a_whole_value_read() -> None:
    doc = {"faces": [{"s": 1, "box": [1, 2]}, {"s": 2, "x": 3}], "n": 0, "big": "x" * 100}
    found = parse(
        [
            {"path": "$.a.faces[1].s", "op": "==", "value": 2},
            {"path": "$.a.n", "op": "exists"},
            {"path": "$.a.faces[0].missing", "op": "not_exists"},
            {"path": "$.a.n", "op": ">", "value": 1},  # a path read twice is sent once
        ],
        {"a"},
        "s",
        {"a"},
    )
    paths = output_paths([c.parsed for c in found], "a")
    assert paths == ("$.faces[1].s", "$.n", "$.faces[0].missing")
    assert view(doc, paths) == {"faces": [None, {"s": 2}], "n": 0}
    assert view(doc, ("$.faces", "$.faces[1].s")) == {"faces": doc["faces"]}
    assert view(doc, ("$.faces[1].s", "$.faces")) == {"faces": doc["faces"]}
    assert view(doc, ("$.nothing",)) == {}
    assert view([5, 6], ("$[1]",)) == [None, 6]
    assert view(doc, ("$",)) is None  # a condition on the whole output: no view would do
    assert output_paths([c.parsed for c in found], "b") == ()


# Runs against the scheduler's core --------------------------------------------------------


def after(step_id: str, deps: list[str], skip_if: dict[str, Any] | None = None) -> QueuedStep:
    s = step(step_id, 0)
    s.deps.extend(deps)
    if skip_if is not None:
        s.fields["skip_on"] = lua_fields(parse(skip_if, {"a", "b", "c"}, "s", set(deps)))
    return s


def run_of(run_id: str, *steps: QueuedStep, sink: str = "c") -> Submission:
    for s in steps:
        for d in s.deps:
            next(x for x in steps if x.step_id == d).dependents.append(s.step_id)
    fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": json.dumps([sink])}
    return Submission(run_id, fields, list(steps))


def none_found() -> dict[str, Any]:
    return {"path": "$.a.count", "op": "==", "value": 0}


async def stream(c: Core, run_id: str) -> list[tuple[str, str, str]]:
    found = await c.queue.redis.xrange(keys.events(run_id))
    return [(f[b"step"].decode(), f[b"state"].decode(), f[b"msg"].decode()) for _, f in found]


def test_a_step_is_skipped_or_queued_by_what_its_dependency_returned(valkey_url: str) -> None:
    """a -> b (skipped when a found none) -> c: c runs after a skipped b, and the run
    completes with c; with a count of 2, b runs."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        for run_id, count, b_runs in [("r1", 0, False), ("r2", 2, True)]:
            await c.core.submit(
                [run_of(run_id, step("a", 0), after("b", ["a"], none_found()), after("c", ["b"]))]
            )
            [a] = assignments(e1)
            await c.report(e1, a, "SUCCEEDED", json.dumps({"count": count}))
            await c.lease_round()
            [nxt] = assignments(e1)
            assert nxt.step_id == ("b" if b_runs else "c")
            if b_runs:
                assert await state_of(c, run_id, "b") == ("RUNNING", "")
                await c.report(e1, nxt, "SUCCEEDED")
                await c.lease_round()
                [nxt] = assignments(e1)
            else:
                assert await state_of(c, run_id, "b") == ("SKIPPED", "skip_if $.a.count == 0")
                assert ("b", "SKIPPED", "skip_if $.a.count == 0") in await stream(c, run_id)
            await c.report(e1, nxt, "SUCCEEDED")
            assert await state_of(c, run_id) == ("COMPLETED", "")
        assert c.heard.of("run_ended") == [("r1", "COMPLETED"), ("r2", "COMPLETED")]

    scenario(valkey_url, body)


def test_a_skip_can_skip_the_steps_after_it_and_end_the_run(valkey_url: str) -> None:
    """b is skipped on a's output; c, whose skip_if holds once b has no output, is skipped
    in the same script, and a's result ends the run."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        c_skip = {"path": "$.b.faces", "op": "not_exists"}
        await c.core.submit(
            [run_of("r1", step("a", 0), after("b", ["a"], none_found()), after("c", ["b"], c_skip))]
        )
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED", json.dumps({"count": 0}))
        assert await state_of(c, "r1", "c") == ("SKIPPED", "skip_if $.b.faces not exists")
        assert await state_of(c, "r1") == ("COMPLETED", "")
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]
        await c.lease_round()
        assert assignments(e1) == []

    scenario(valkey_url, body)


def test_a_run_whose_steps_are_all_skipped_at_its_submit_ends_there(valkey_url: str) -> None:
    """a is skipped on the run's input (its 'skip', decided in Python); b reads a's output,
    which it does not have, and is skipped by the submit's script: the run ends there, and
    the listeners hear it as they would after a last result."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        a = step("a", 0)
        a.fields["skip"] = "skip_if $.fast == true"
        b = after("b", ["a"], {"path": "$.a.faces", "op": "not_exists"})
        [(created, _)] = await c.core.submit([run_of("r1", a, b, sink="b")])
        assert created and await state_of(c, "r1") == ("COMPLETED", "")
        assert await state_of(c, "r1", "b") == ("SKIPPED", "skip_if $.a.faces not exists")
        assert c.heard.of("run_ended") == [("r1", "")]
        assert assignments(e1) == []

    scenario(valkey_url, body)


def test_a_condition_on_an_output_that_went_by_reference_fails_the_run_saying_why(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.core.submit(
            [run_of("r1", step("a", 0), after("b", ["a"], none_found()), after("c", ["b"]))]
        )
        [a] = assignments(e1)
        big = refs.make_ref("artifact://sha256/" + "0" * 64 + "/output_a.json", 10_000_000)
        await c.report(e1, a, "SUCCEEDED", big)
        state, error = await state_of(c, "r1")
        assert state == "FAILED" and "step b FAILED" in error and "stored by reference" in error
        assert (await state_of(c, "r1", "c"))[0] == "CANCELLED"
        assert c.heard.of("run_ended") == [("r1", "FAILED")]

    scenario(valkey_url, body)


def test_a_condition_on_an_output_by_reference_is_decided_on_the_view_sent_with_it(
    valkey_url: str,
) -> None:
    """The executor sends what the conditions read of an output too large to go inline; the
    script decides on it, and the step after runs with the reference as its input."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        for run_id, count, nxt in [("r1", 0, "c"), ("r2", 4, "b")]:
            await c.core.submit(
                [run_of(run_id, step("a", 0), after("b", ["a"], none_found()), after("c", ["b"]))]
            )
            [a] = assignments(e1)
            big = refs.make_ref("artifact://sha256/" + "0" * 64 + "/output_a.json", 10_000_000)
            seen = json.dumps(view({"count": count, "rest": "..."}, ["$.count"]))
            await c.report(e1, a, "SUCCEEDED", big, condition_view=seen)
            await c.lease_round()
            [leased] = assignments(e1)
            assert leased.step_id == nxt and (await state_of(c, run_id))[0] == "RUNNING"
            if nxt == "c":
                assert await state_of(c, run_id, "b") == ("SKIPPED", "skip_if $.a.count == 0")
            await c.report(e1, leased, "FAILED")  # (the run's end is not what is tested)

    scenario(valkey_url, body)


def test_a_rebuilt_run_decides_again_from_the_outputs_it_is_given(valkey_url: str) -> None:
    """A run rebuilt from MongoDB comes with its completed steps' outputs: b, ready at
    once, is decided by the submit's script as it was when a's result came."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=2)
        for run_id, count in [("r1", 0), ("r2", 3)]:
            a = step("a", 0)
            sub = run_of(run_id, a, after("b", ["a"], none_found()), after("c", ["b"]))
            rebuilt = Submission(
                run_id, sub.run_fields, sub.steps, done={"a": json.dumps({"count": count})}
            )
            await c.core.submit([rebuilt])
        await c.lease_round()
        assert sorted((x.run_id, x.step_id) for x in assignments(e1)) == [("r1", "c"), ("r2", "b")]
        assert await state_of(c, "r1", "b") == ("SKIPPED", "skip_if $.a.count == 0")
        assert c.heard.of("run_ended") == []

    scenario(valkey_url, body)


def test_a_rebuilt_run_keeps_the_view_of_an_output_by_reference(valkey_url: str) -> None:
    """The step record keeps the view its executor sent (``StepRun.condition_view``), and a
    run rebuilt from it decides b on the view; without it, b cannot be decided."""

    async def body(c: Core) -> None:
        big = refs.make_ref("artifact://sha256/" + "0" * 64 + "/output_a.json", 10_000_000)
        seen = json.dumps(view({"count": 0, "rest": "..."}, ["$.count"]))
        record = StepRun("a", "a", "1.0.0", "COMPLETED", 1, output_json=big, condition_view=seen)
        kept = StepRun.from_doc(record.to_doc("r1"))
        for run_id, shown in [("r1", kept.ended_fields()), ("r2", {})]:
            sub = run_of(run_id, step("a", 0), after("b", ["a"], none_found()), after("c", ["b"]))
            rebuilt = Submission(
                run_id, sub.run_fields, sub.steps, done={"a": big}, done_fields={"a": shown}
            )
            await c.core.submit([rebuilt])
        assert await state_of(c, "r1", "b") == ("SKIPPED", "skip_if $.a.count == 0")
        state, error = await state_of(c, "r2")
        assert state == "FAILED" and "no view of the fields" in error

    scenario(valkey_url, body)


def test_a_new_runs_ready_steps_are_named_for_the_lease_in_its_submit() -> None:
    """The queues a submit's lease asks for: each step with no dependency, or whose every
    dependency its skip_if skipped (before, such a step waited for the next round: up to a
    second); a skipped step itself asks for nothing."""

    def chain(run_id: str, skip_a: bool) -> Submission:
        a, b, c = step("a", 0), after("b", ["a"]), after("c", ["b"])
        for s, queue in [(a, "qa"), (b, "qb"), (c, "qc")]:
            s.fields["queue"] = queue
        if skip_a:
            a.fields["skip"] = "skip_if $.fast == true"
        return run_of(run_id, a, b, c)

    assert ready_queues([chain("r1", skip_a=False)]) == {"qa": 1}
    assert ready_queues([chain("r2", skip_a=True)]) == {"qb": 1}
