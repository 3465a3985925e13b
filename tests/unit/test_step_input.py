"""What a leased step receives (``assignments.step_input``): the run input as it is for a step
with neither a mapping nor run parameters, the run input and its parents' outputs for a later
one, its mapping resolved with lineage and where each field came from, and the run
parameters its task accepts; and how many slots leases take (``slots_of``)."""

from __future__ import annotations

import json

import pytest

from services.common.mapping import MissingValue
from services.scheduler.assignments import step_input
from services.scheduler.leasing import slots_of
from services.scheduler.queue_records import Leased

RUN_INPUT = '{"image_path":  "a.jpg", "min_face_size": 40}'  # spacing kept for a first step


def leased(
    step: dict[str, str] | None = None,
    dep_outputs: dict[str, str] | None = None,
    member: str = "r1:s",
    call: str = "",
    run_input: str = RUN_INPUT,
) -> Leased:
    fields = {"input_id": "input_002", **(step or {})}
    return Leased(member, "r1", "s", 1, fields, run_input, dep_outputs or {}, call=call)


def test_a_step_with_no_mapping_and_no_parameters_gets_the_run_input_as_it_is() -> None:
    assert step_input(leased()) == (RUN_INPUT, [], {})
    assert step_input(leased({"mapping": "{}", "accepts": "[]"}))[0] == RUN_INPUT


def test_a_later_step_without_a_mapping_also_gets_its_parents_outputs_by_step_id() -> None:
    text, edges, sources = step_input(leased(dep_outputs={"detect": '{"faces": [1]}'}))
    assert json.loads(text) == {
        "image_path": "a.jpg",
        "min_face_size": 40,
        "detect": {"faces": [1]},
    }
    assert (edges, sources) == ([], {})


def test_the_run_parameters_a_task_accepts_are_added_with_their_lineage() -> None:
    step = {"accepts": json.dumps(["threshold", "min_face_size"])}
    run_input = '{"image_path": "a.jpg", "parameters": {"threshold": 0.5, "other": 1}}'
    text, edges, _ = step_input(leased(step, {"detect": '{"n": 1}'}, run_input=run_input))
    assert json.loads(text) == {
        "image_path": "a.jpg",
        "parameters": {"threshold": 0.5, "other": 1},
        "detect": {"n": 1},
        "threshold": 0.5,  # accepted, and given in the run's parameters; min_face_size is not
    }
    assert edges == [("run_input_parameters.threshold_number", "input_002_threshold_number")]


def test_a_mapping_is_resolved_with_the_output_id_of_each_field_it_reads() -> None:
    step = {
        "mapping": json.dumps(
            {"faces": "$.detect.faces", "path": "$.image_path", "size": 128, "note": "$.note"}
        ),
        "read_output_ids": json.dumps({"detect": "output_001"}),
        "optional": json.dumps(["note"]),
        "accepts": json.dumps(["min_face_size", "faces"]),
    }
    text, edges, sources = step_input(leased(step, {"detect": '{"faces": [[1, 2]]}'}))
    assert json.loads(text) == {
        "faces": [[1, 2]],
        "path": "a.jpg",
        "size": 128,
        "min_face_size": 40,  # a run parameter the task accepts; its mapping set "faces"
    }  # "note": optional, and this run has none
    assert edges == [
        ("output_001_faces_array", "input_002_faces_array"),
        ("run_input_image_path_string", "input_002_path_string"),
        ("run_input_min_face_size_number", "input_002_min_face_size_number"),
    ]
    assert sources == {"faces": "output_001"}


def test_a_mapping_that_finds_nothing_raises_missing_value() -> None:
    step = {
        "mapping": json.dumps({"faces": "$.detect.faces"}),
        "read_output_ids": json.dumps({"detect": "output_001"}),
    }
    with pytest.raises(MissingValue, match="no field 'faces'"):
        step_input(leased(step, {"detect": '{"boxes": []}'}))


def test_a_dynamic_batchs_steps_take_one_slot_between_them() -> None:
    batch = [leased(member=f"r{i}:s", call="tok.1") for i in range(3)]
    alone = [leased(member="r9:s"), leased(member="r8:s")]
    assert (slots_of(batch), slots_of(alone), slots_of(batch + alone), slots_of([])) == (1, 2, 3, 0)
