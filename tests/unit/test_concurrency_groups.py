"""Which group of a per-input-value concurrency limit each step of a run belongs to
(task.json "concurrency_key"), decided at submit from the run's input."""

from __future__ import annotations

from typing import Any

import pytest

from common.errors import FailedPrecondition, InvalidArgument
from services.scheduler.concurrency_groups import MAX_VALUE_CHARS, group, of_run
from services.scheduler.planning import PlannedStep
from services.scheduler.task_catalog import ResolvedTask


def task(task_id: str, key: str = "", limit: int = 1, props: tuple[str, ...] = ()) -> ResolvedTask:
    schema: dict[str, Any] = {"properties": {p: {} for p in props}} if props else {}
    return ResolvedTask(
        task_id, "1.0.0", "d" * 64, "task.Task", "q", 5, 30, 0, schema,
        concurrency_limit=limit, concurrency_key=key,
    )  # fmt: skip


def step(step_id: str, t: ResolvedTask, deps: list[str], mapping: dict[str, Any]) -> PlannedStep:
    return PlannedStep(step_id, t, deps, [], 30, 0, mapping, 1, frozenset({"a", "b"}))


def test_a_one_step_run_is_grouped_by_its_inputs_value() -> None:
    one = [step("a", task("ocr", "doc"), [], {})]
    assert of_run(one, {"doc": "d-17", "page": 2}) == {"a": 'doc="d-17"'}
    assert of_run(one, {"doc": 17}) == {"a": "doc=17"}  # 17 and "17" are two groups
    assert of_run([step("a", task("ocr"), [], {})], {"doc": "x"}) == {}  # one limit for all


def test_a_run_parameter_the_task_accepts_gives_the_value() -> None:
    one = [step("a", task("ocr", "doc", props=("doc",)), [], {})]
    assert of_run(one, {"parameters": {"doc": "p"}}) == {"a": 'doc="p"'}


def test_a_pipeline_step_is_grouped_by_what_its_mapping_reads_from_the_run_input() -> None:
    steps = [
        step("a", task("fetch"), [], {}),
        step("b", task("ocr", "doc"), ["a"], {"doc": "$.document", "pages": "$.a.pages"}),
    ]
    assert of_run(steps, {"document": "d1"}) == {"b": 'doc="d1"'}
    constant = [steps[0], step("b", task("ocr", "doc"), ["a"], {"doc": "all"})]
    assert of_run(constant, {}) == {"b": 'doc="all"'}


def test_a_value_only_an_upstream_step_knows_is_refused_naming_the_mapping() -> None:
    steps = [
        step("a", task("fetch"), [], {}),
        step("b", task("ocr", "doc"), ["a"], {"doc": "$.a.document_id"}),
    ]
    with pytest.raises(FailedPrecondition) as err:
        of_run(steps, {"document": "d1"})
    assert "steps.b.input_mapping.doc" in str(err.value)


@pytest.mark.parametrize("doc", [{}, {"doc": None}, {"doc": ["a"]}, {"doc": {"id": 1}}])
def test_a_missing_or_compound_value_is_refused_naming_the_field(doc: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument) as err:
        of_run([step("a", task("ocr", "doc"), [], {})], doc)
    assert "input_json.doc" in str(err.value) and "at most 1 at once" in str(err.value)


def test_a_long_value_is_named_by_its_hash() -> None:
    name = group("doc", "x" * 500)
    assert name.startswith("doc=sha256:") and len(name) < 60
    assert name == group("doc", "x" * 500) != group("doc", "x" * 499)


def test_a_value_is_named_as_itself_up_to_the_limit_and_by_its_hash_past_it() -> None:
    at_limit = "x" * (MAX_VALUE_CHARS - 2)  # with its quotes, MAX_VALUE_CHARS of JSON
    assert group("doc", at_limit) == f'doc="{at_limit}"'
    past = group("doc", at_limit + "x")
    assert past.startswith("doc=sha256:") and len(past) == len("doc=sha256:") + 32
    assert group("n", 7) == "n=7" != group("n", "7")  # a number and a string: two groups
    assert group("name", "Zoë") == 'name="Zoë"'
