"""Dynamic batching's pure parts: one ``process_batch`` call's verdicts per input (the worker
side), and how a dynamic batch counts against an executor's slots (the scheduler side)."""

from __future__ import annotations

import json
from typing import Any

from services.scheduler.fleet import ExecutorProfile, ExecutorSession
from tasks.base.runtime import run_batch, run_once
from tasks.base.task_base import FatalError, SimpleTask, TaskContext


class Doubler(SimpleTask):
    """Doubles ``x``; an item with ``bad`` comes back as an exception."""

    calls: list[list[dict[str, Any]]]

    def process_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        self.calls.append(inputs)
        if any(d.get("boom") for d in inputs):
            raise RuntimeError("boom")
        return [FatalError("bad") if d.get("bad") else {"y": 2 * d["x"]} for d in inputs]


def doubler(**manifest: Any) -> Doubler:
    task = Doubler(TaskContext(manifest=manifest))
    task.calls = []
    return task


def test_one_call_gives_each_input_its_own_verdict_in_order() -> None:
    task = doubler()
    verdicts = run_batch(task, [json.dumps({"x": 1}), json.dumps({"x": 2, "bad": True}), "{"])
    assert verdicts[0] == ("ok", '{"y": 2}')
    assert verdicts[1] == ("fatal", "FatalError: bad")
    assert verdicts[2][0] == "failed" and "JSONDecodeError" in verdicts[2][1]
    assert task.calls == [[{"x": 1}, {"x": 2, "bad": True}]]  # the unparsable one left out


def test_an_input_that_breaks_the_schema_fails_alone_before_the_call() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    task = doubler(input_schema=schema)
    verdicts = run_batch(task, ['{"x": 3}', '{"x": "three"}'])
    assert verdicts[0] == ("ok", '{"y": 6}')
    assert verdicts[1][0] == "fatal" and "x" in verdicts[1][1]
    assert task.calls == [[{"x": 3}]]


def test_a_call_that_raises_fails_every_input_it_was_given() -> None:
    verdicts = run_batch(doubler(), ['{"x": 1}', '{"x": 2, "boom": true}'])
    assert [v for v, _ in verdicts] == ["failed", "failed"]
    assert all("RuntimeError: boom" in e for _, e in verdicts)


def test_a_call_that_returns_the_wrong_number_of_items_fails_them_all() -> None:
    class Short(SimpleTask):
        def process_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
            return [{"ok": True}]

    verdicts = run_batch(Short(), ["{}", "{}"])
    assert [v for v, _ in verdicts] == ["fatal", "fatal"]
    assert "must return a list of 2 items" in verdicts[0][1]


def test_the_default_process_batch_runs_process_per_input_with_its_own_ids() -> None:
    class Echo(SimpleTask):
        def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
            if input_data.get("fail"):
                raise ValueError("no")
            return {"output_id": self.context.output_id}

    task = Echo()
    task.context.begin_batch([{"output_id": "o1"}, {"output_id": "o2"}, {"output_id": "o3"}])
    verdicts = run_batch(task, ["{}", '{"fail": true}', "{}"])
    assert verdicts[0] == ("ok", '{"output_id": "o1"}')
    assert verdicts[1][0] == "failed" and "ValueError: no" in verdicts[1][1]
    assert verdicts[2] == ("ok", '{"output_id": "o3"}')


def test_a_task_with_only_process_batch_runs_a_lone_step_as_a_batch_of_one() -> None:
    task = doubler()
    task.context.begin({"input_id": "i1", "output_id": "o1", "artifacts": {"a://x": "/x"}})
    seen: list[list[dict[str, Any]]] = []
    task.calls = []
    original = task.process_batch

    def spying(inputs: list[dict[str, Any]]) -> list[Any]:
        seen.append(list(task.context.batch))
        return original(inputs)

    task.process_batch = spying  # type: ignore[method-assign]
    assert run_once(task, '{"x": 4}') == ("ok", '{"y": 8}')
    assert seen[0][0]["output_id"] == "o1" and seen[0][0]["artifacts"] == {"a://x": "/x"}
    assert task.context.batch == [] and task.context.output_id == "o1"  # as it was
    assert run_once(task, '{"x": 1, "bad": true}') == ("fatal", "FatalError: bad")
    verdict, error = run_once(task, '{"x": 1, "boom": true}')
    assert verdict == "failed" and error.startswith("RuntimeError: boom")


def test_a_lone_step_whose_process_batch_returns_other_than_one_item_fails() -> None:
    class Empty(SimpleTask):
        def process_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
            return []

    verdict, error = run_once(Empty(), "{}")
    assert verdict == "fatal" and "must return a list of 1 item" in error


def test_a_task_with_neither_method_says_process_is_missing_not_recursing() -> None:
    class Nothing(SimpleTask):
        pass

    verdict, error = run_once(Nothing(), "{}")
    assert verdict == "failed" and "NotImplementedError: Nothing.process" in error
    [(verdict, error)] = run_batch(Nothing(), ["{}"])
    assert "NotImplementedError: Nothing.process" in error


def test_a_dynamic_batch_takes_one_slot_until_its_last_step_ends() -> None:
    s = ExecutorSession(ExecutorProfile("ex", ["q"], 2, {}, batching=True), 0.0, 0.0)
    for member in ("r1:a", "r2:a", "r3:a"):
        s.leased(member, 1, call="c1")
    s.leased("r4:a", 1)
    assert (s.slots_taken, s.free_slots, len(s.in_flight)) == (2, 0, 4)
    assert s.take("r1:a") == 1 and s.take("r2:a") == 1  # the call's slot is still taken
    assert s.slots_taken == 2
    assert s.take("r3:a") == 1 and (s.slots_taken, s.free_slots) == (1, 1)
    assert s.take("r3:a") is None and s.slots_taken == 1  # told twice: counted once
    assert s.take("r4:a") == 1 and (s.slots_taken, s.calls, s.riders) == (0, {}, 0)
