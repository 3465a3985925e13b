"""A step's ``for_each`` (``services/common/fan_out.py``): checked at registration, and run
by the scheduler's scripts — one instance per item of the list an upstream step returned,
each leased, retried and recorded as a step of its own, their outputs gathered in order —
against the scheduler's core on a real valkey (``scheduler_core``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common import refs
from common.errors import InvalidArgument
from services.common import fan_out
from services.scheduler import keys
from services.scheduler.fleet import ExecutorProfile
from services.scheduler.history import fold_instances
from services.scheduler.queue_records import Submission
from tests.unit.scheduler_core import Core, assignments, scenario, sent, state_of, step

IDS = {"a", "m", "c"}


@pytest.mark.parametrize(
    ("doc", "mapped", "said"),
    [
        ({"x": "$.a.items", "y": "$.a.more"}, set(), "must be one field"),
        ({"x y": "$.a.items"}, set(), "is not an input field name"),
        ({"x": "$.a.items"}, {"x"}, "also in input_mapping"),
        ({"x": "items"}, set(), "must be an expression"),
        ({"x": "$.c.items"}, set(), "which is not upstream of this one; add it to depends_on"),
        ({"x": "$.a.items[*].id"}, set(), "not [*]"),
        ([], set(), "must be one field"),
    ],
)
def test_a_for_each_is_refused_naming_its_field(doc: Any, mapped: set[str], said: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        fan_out.parse(doc, IDS, {"a"}, mapped, "p.steps[1].for_each")
    assert said in refused.value.message and refused.value.field.startswith("p.steps[1].for_each")


def test_a_for_each_reads_a_list_upstream_and_names_its_instances() -> None:
    each = fan_out.parse({"x": "$.a.items"}, IDS, {"a"}, {"y"}, "s")
    assert (each.field, each.path.source, each.path.segments) == ("x", "a", ("items",))
    assert fan_out.of_json(each.to_json(), frozenset(IDS)) == each
    assert fan_out.instance_id("m", 12) == "m[12]"
    assert fan_out.instance_of("m[12]") == ("m", 12) and fan_out.instance_of("m") is None
    document: dict[str, Any] = {"y": 1}
    spec = json.loads(each.lua_fields())
    assert fan_out.item_input(document, spec, {"a": {"items": [5, 6]}}, 1) == 6
    assert document == {"y": 1, "x": 6}


# Runs against the scheduler's core ---------------------------------------------------------


def fanned(run_id: str, path: str = "$.a.items", retries: int = 0) -> Submission:
    """a -> m (for each item of what a returned) -> c."""
    a, m, c = step("a", 0), step("m", retries), step("c", 0)
    a.dependents.append("m")
    m.deps.append("a")
    m.dependents.append("c")
    c.deps.append("m")
    each = fan_out.parse({"x": path}, IDS, {"a"}, set(), "s")
    m.fields.update(
        {
            "for_each": each.lua_fields(),
            "reads": '["a"]',
            "read_output_ids": '{"a": "output_a"}',
            "mapping": json.dumps({"k": "constant"}),
        }
    )
    c.fields.update(
        {
            "reads": '["m"]',
            "read_output_ids": '{"m": "output_m"}',
            "mapping": json.dumps({"all": "$.m[*].y"}),
        }
    )
    fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": '["c"]'}
    return Submission(run_id, fields, [a, m, c])


async def start(c: Core, run: Submission, items: Any, slots: int = 4) -> Any:
    e1 = c.executor("e1", slots=slots)
    await c.core.submit([run])
    [a] = assignments(e1)
    await c.report(e1, a, "SUCCEEDED", json.dumps({"items": items}))
    await c.lease_round()
    return e1


def test_each_item_runs_as_an_instance_and_the_step_gathers_their_outputs_in_order(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = await start(c, fanned("r1"), [10, 20, 30])
        leased = sorted(assignments(e1), key=lambda a: a.step_id)
        assert [a.step_id for a in leased] == ["m[0]", "m[1]", "m[2]"]
        assert [json.loads(a.input_json) for a in leased] == [
            {"k": "constant", "x": 10},
            {"k": "constant", "x": 20},
            {"k": "constant", "x": 30},
        ]
        assert [(a.input_id, a.output_id) for a in leased][1] == (
            "input_m_0001",
            "output_m_0001",
        )
        assert leased[1].input_sources == {"x": "output_a"}
        assert await state_of(c, "r1", "m") == ("RUNNING", "")
        for a in reversed(leased):  # ending out of order: the output keeps the items' order
            await c.report(e1, a, "SUCCEEDED", json.dumps({"y": json.loads(a.input_json)["x"]}))
        assert await state_of(c, "r1", "m") == ("COMPLETED", "")
        gathered = await c.queue.redis.hget(keys.outputs("r1"), "m")
        assert json.loads(gathered) == [{"y": 10}, {"y": 20}, {"y": 30}]
        await c.lease_round()
        [last] = assignments(e1)
        assert (last.step_id, json.loads(last.input_json)) == ("c", {"all": [10, 20, 30]})
        await c.report(e1, last, "SUCCEEDED")
        assert await state_of(c, "r1") == ("COMPLETED", "")
        steps = json.loads(await c.queue.redis.hget(keys.run("r1"), "steps"))
        assert steps == ["a", "m", "m[0]", "m[1]", "m[2]", "c"]
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]

    scenario(valkey_url, body)


def test_an_empty_list_completes_the_step_at_once_and_a_skipped_source_skips_it(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = await start(c, fanned("r1"), [])
        assert await state_of(c, "r1", "m") == ("COMPLETED", "")
        assert await c.queue.redis.hget(keys.outputs("r1"), "m") == b"[]"
        [last] = assignments(e1)
        assert json.loads(last.input_json) == {"all": []}
        await c.report(e1, last, "SUCCEEDED")
        assert await state_of(c, "r1") == ("COMPLETED", "")

        run = fanned("r2")
        run.steps[0].fields["skip"] = "skip_if $.fast == true"  # a: skipped on the run input
        [(created, _)] = await c.core.submit([run])
        assert created
        assert await state_of(c, "r2", "m") == (
            "SKIPPED",
            "for_each $.a.items: step a was skipped",
        )
        [last] = assignments(e1)
        assert last.step_id == "c" and json.loads(last.input_json) == {}

    scenario(valkey_url, body)


def test_an_instance_that_fails_for_good_fails_the_run_and_cancels_the_others(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = await start(c, fanned("r1", retries=1), [1, 2, 3])
        first, *others = sorted(assignments(e1), key=lambda a: a.step_id)
        await c.report(e1, first, "FAILED")  # retried: a retry is the instance's own
        assert (await state_of(c, "r1", "m[0]"))[0] == "QUEUED"
        assert (await state_of(c, "r1", "m"))[0] == "RUNNING"
        await c.report(e1, others[0], "FATAL")
        state, error = await state_of(c, "r1")
        assert state == "FAILED" and error.startswith("step m[1] FAILED")
        assert [await state_of(c, "r1", s) for s in ("m", "m[0]", "m[2]", "c")] == [
            ("CANCELLED", "run FAILED")
        ] * 4
        cancels = [m for m in sent(e1) if not hasattr(m, "input_json")]
        assert [(x.step_id, x.attempt) for x in cancels] == [("m[2]", 1)]

    scenario(valkey_url, body)


@pytest.mark.parametrize(
    ("items", "path", "said"),
    [
        ({"not": "a list"}, "$.a.items", "step a returned no list there"),
        ([1], "$.a.missing", "step a returned no such field"),
        (list(range(1025)), "$.a.items", "1025 items, over the 1024 a step may run"),
    ],
)
def test_a_list_that_cannot_be_run_fails_the_run_saying_why(
    valkey_url: str, items: Any, path: str, said: str
) -> None:
    async def body(c: Core) -> None:
        e1 = await start(c, fanned("r1", path), items)
        state, error = await state_of(c, "r1")
        assert state == "FAILED" and error == f"step m FAILED: for_each {path}: {said}"
        assert assignments(e1) == []

    scenario(valkey_url, body)


def test_a_first_step_fans_out_over_a_list_in_the_runs_input_at_its_submit(
    valkey_url: str,
) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=4)
        m = step("m", 0)
        each = fan_out.parse({"x": "$.items"}, {"m"}, set(), set(), "s")
        m.fields.update({"for_each": each.lua_fields(), "mapping": json.dumps({"k": 1})})
        fields = {"run_id": "r1", "input_json": '{"items": ["p", "q"]}', "priority": "5",
                  "sinks": '["m"]'}  # fmt: skip
        [(created, _)] = await c.core.submit([Submission("r1", fields, [m])])
        assert created
        leased = sorted(assignments(e1), key=lambda a: a.step_id)
        assert [json.loads(a.input_json) for a in leased] == [
            {"k": 1, "x": "p"},
            {"k": 1, "x": "q"},
        ]
        assert leased[0].input_sources == {}  # (the run's input has no output id)
        for a in leased:
            await c.report(e1, a, "SUCCEEDED", json.dumps({"got": json.loads(a.input_json)["x"]}))
        assert await state_of(c, "r1") == ("COMPLETED", "")
        assert json.loads(await c.queue.redis.hget(keys.outputs("r1"), "m")) == [
            {"got": "p"},
            {"got": "q"},
        ]

    scenario(valkey_url, body)


def test_a_list_in_the_input_is_checked_at_submit_naming_the_step() -> None:
    each = fan_out.parse({"x": "$.job.items"}, {"m"}, set(), set(), "s")
    assert fan_out.check_input(each, {"job": {"items": [1]}}, "m") == [1]
    for doc, said in [
        ({"job": {}}, "step 'm': for_each $.job.items: no field 'items'"),
        ({"job": {"items": "x"}}, "step 'm': for_each $.job.items must be a list, got str"),
        ({"job": {"items": [0] * 1025}}, "has 1025 items, over the 1024 a step may run"),
    ]:
        with pytest.raises(InvalidArgument) as refused:
            fan_out.check_input(each, doc, "m")
        assert said in refused.value.message and refused.value.field == "input_json"


def test_an_instances_output_by_reference_fails_the_step_saying_why(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = await start(c, fanned("r1"), [1, 2])
        big = refs.make_ref("artifact://sha256/" + "0" * 64 + "/output_m_0001.json", 9_000_000)
        for a in sorted(assignments(e1), key=lambda a: a.step_id):
            await c.report(e1, a, "SUCCEEDED", big if a.step_id == "m[1]" else "{}")
        state, error = await state_of(c, "r1")
        assert state == "FAILED"
        assert error.startswith("step m FAILED: for_each: m[1]'s output is stored by reference")

    scenario(valkey_url, body)


def test_a_rebuilt_run_fans_out_from_the_output_it_is_given(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=4)
        run = fanned("r1")
        rebuilt = Submission("r1", run.run_fields, run.steps, done={"a": '{"items": [7, 8]}'})
        await c.core.submit([rebuilt])
        assert sorted(a.step_id for a in assignments(e1)) == ["m[0]", "m[1]"]

    scenario(valkey_url, body)


def rebuilt(run_id: str, records: dict[str, str]) -> Submission:
    """``fanned`` as the history rebuilds it from these completed steps' records."""
    run = fanned(run_id)
    done = dict(records)
    shown = {k: {"executor": "gone", "ended_ms": "1"} for k in done}
    attempts = {k: 1 for k in done}
    fold_instances(done, shown, attempts)
    return Submission(run_id, run.run_fields, run.steps, done=done, done_fields=shown)


def test_a_rebuilt_run_runs_only_the_instances_that_had_not_completed(valkey_url: str) -> None:
    """After Redis lost its data, the instances whose records say they completed are taken
    as they were (their output, attempt and executor): the step runs the others, and gathers
    all; with none left to run, it completes at once."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=4)
        items = '{"items": [7, 8, 9]}'
        await c.core.submit([rebuilt("r1", {"a": items, "m[1]": '{"y": 8}'})])
        leased = sorted(assignments(e1), key=lambda a: a.step_id)
        assert [a.step_id for a in leased] == ["m[0]", "m[2]"]
        h = await c.queue.redis.hgetall(keys.step("r1", "m[1]"))
        assert (h[b"state"], h[b"attempt"], h[b"executor"]) == (b"COMPLETED", b"1", b"gone")
        for a in leased:
            await c.report(e1, a, "SUCCEEDED", json.dumps({"y": json.loads(a.input_json)["x"]}))
        gathered = await c.queue.redis.hget(keys.outputs("r1"), "m")
        assert json.loads(gathered) == [{"y": 7}, {"y": 8}, {"y": 9}]

        done = {"a": items, **{f"m[{i}]": f'{{"y":{i}}}' for i in range(3)}}
        await c.core.submit([rebuilt("r2", done)])
        assert await state_of(c, "r2", "m") == ("COMPLETED", "")
        assert await c.queue.redis.hget(keys.outputs("r2"), "m") == b'[{"y":0},{"y":1},{"y":2}]'
        await c.lease_round()
        assert sorted((a.run_id, a.step_id) for a in assignments(e1)) == [("r1", "c"), ("r2", "c")]

    scenario(valkey_url, body)


def test_instances_are_folded_onto_their_step_unless_it_had_gathered_them() -> None:
    done = {"a": "A", "m[0]": "0", "m[2]": "2", "n": "N", "n[0]": "x"}
    shown = {"m[0]": {"executor": "e"}, "n": {"executor": ""}}
    fold_instances(done, shown, {"m[0]": 2})
    assert done == {"a": "A", "n": "N"}
    assert json.loads(shown["m"]["done_items"]) == {
        "0": {"output": "0", "fields": {"executor": "e", "attempt": "2"}},
        "2": {"output": "2", "fields": {"attempt": "0"}},
    }
    assert "done_items" not in shown["n"] and "m[0]" not in shown


def test_the_instances_of_a_batching_task_are_leased_as_one_call(valkey_url: str) -> None:
    """task.json's batching: the instances, ready together, go to one process_batch call."""

    async def body(c: Core) -> None:
        run = fanned("r1")
        run.steps[1].fields.update({"batch": "8", "batch_wait": "0"})
        e1 = c.core.open_session(ExecutorProfile("e1", ["q"], 1, {}, batching=True))
        await c.core.submit([run])
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED", json.dumps({"items": [1, 2, 3]}))
        await c.lease_round()
        leased = assignments(e1)
        assert sorted(a.step_id for a in leased) == ["m[0]", "m[1]", "m[2]"]
        assert len({a.call_id for a in leased}) == 1 and leased[0].call_size == 3

    scenario(valkey_url, body)
