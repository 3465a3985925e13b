"""Task inputs and outputs against their JSON Schemas (the jsonschema library), as a worker
and ``wtm task test`` run them: the path of what is wrong, fatal (no retry helps)."""

from __future__ import annotations

from typing import Any

from tasks.base.runtime import run_once
from tasks.base.schema import problems, schema_problems
from tasks.base.task_base import SimpleTask, TaskContext

MANIFEST = {
    "input_schema": {
        "type": "object",
        "properties": {
            "image_path": {"type": "string"},
            "options": {
                "type": "object",
                "properties": {"max_faces": {"type": "integer", "minimum": 1}},
            },
        },
        "required": ["image_path"],
    },
    "output_schema": {
        "type": "object",
        "properties": {
            "faces": {
                "type": "array",
                "items": {"type": "object", "required": ["bbox"]},
            }
        },
        "required": ["faces"],
    },
}


class Echo(SimpleTask):
    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        return dict(input_data["returns"]) if "returns" in input_data else {"faces": []}


def task() -> Echo:
    return Echo(TaskContext(manifest=MANIFEST))


def test_a_fitting_input_and_output_pass() -> None:
    assert run_once(task(), '{"image_path": "a.jpg", "options": {"max_faces": 2}}') == (
        "ok",
        '{"faces": []}',
    )


def test_nested_input_problems_are_fatal_and_name_their_path() -> None:
    verdict, error = run_once(task(), '{"image_path": "a.jpg", "options": {"max_faces": 0}}')
    assert verdict == "fatal" and "$.options.max_faces: 0 is less than the minimum of 1" in error


def test_an_output_that_does_not_fit_fails_its_step_as_fatal() -> None:
    verdict, error = run_once(task(), '{"image_path": "a.jpg", "returns": {"faces": "not a list"}}')
    assert verdict == "fatal" and "output does not fit output_schema" in error
    assert "$.faces: 'not a list' is not of type 'array'" in error
    verdict, error = run_once(task(), '{"image_path": "a.jpg", "returns": {"faces": [{}]}}')
    assert verdict == "fatal" and "$.faces[0]: 'bbox' is a required property" in error


def test_schemas_are_checked_as_schemas() -> None:
    assert schema_problems(MANIFEST["input_schema"]) == []
    assert schema_problems({"type": "object", "properties": {"a": {"type": "nope"}}}) != []
    assert problems({}, {"anything": 1}) == []  # no schema, nothing to check


def test_an_output_holding_a_lone_surrogate_fails_its_step_as_fatal() -> None:
    """Not Unicode text: no reader that writes UTF-8 could pass it on (a pair is fine)."""
    verdict, error = run_once(
        task(), '{"image_path": "a.jpg", "returns": {"faces": [], "n": "\\udc00"}}'
    )
    assert verdict == "fatal" and "lone surrogate ('\\udc00')" in error
    ok = run_once(
        task(), '{"image_path": "a.jpg", "returns": {"faces": [], "n": "\\ud83d\\ude00"}}'
    )
    assert ok[0] == "ok"
