"""How run parameters reach a step (``step_inputs.with_parameters``): only the fields its
task accepts, never over what its mapping set, ``step_parameters`` before ``parameters``
before the run input's own fields, each added field with its lineage edge."""

from __future__ import annotations

from services.scheduler.step_inputs import accepted_fields, resolve, with_parameters

ACCEPTS = accepted_fields(
    {"properties": {"image_path": {}, "min_face_size": {}, "confidence_threshold": {}}}
)


def test_only_accepted_fields_are_added_and_the_mapping_wins() -> None:
    run_input = {"image_path": "run.jpg", "min_face_size": 50, "other": 1}
    document, edges = with_parameters(
        {"image_path": "mapped.jpg"}, run_input, "detect", ACCEPTS, "input_001"
    )
    assert document == {"image_path": "mapped.jpg", "min_face_size": 50}
    assert edges == [("run_input_min_face_size_number", "input_001_min_face_size_number")]


def test_step_parameters_then_parameters_then_the_top_level() -> None:
    run_input = {
        "min_face_size": 10,
        "confidence_threshold": 0.1,
        "parameters": {"min_face_size": 20, "confidence_threshold": 0.2},
        "step_parameters": {"detect": {"min_face_size": 30}, "other": {"confidence_threshold": 1}},
    }
    document, _ = with_parameters({}, run_input, "detect", ACCEPTS, "input_001")
    assert document == {"min_face_size": 30, "confidence_threshold": 0.2}


def test_a_task_that_declares_parameters_gets_the_whole_object() -> None:
    run_input = {"parameters": {"max_results": 3}}
    document, _ = with_parameters({}, run_input, "s", ["parameters"], "input_001")
    assert document == {"parameters": {"max_results": 3}}


def test_a_task_without_a_schema_gets_nothing_added() -> None:
    assert accepted_fields({}) == [] and accepted_fields({"properties": "nonsense"}) == []
    assert with_parameters({"a": 1}, {"b": 2}, "s", [], "input_001") == ({"a": 1}, [])


def test_an_optional_run_input_field_is_left_out_when_absent() -> None:
    import pytest

    from services.common.mapping import MissingValue
    from services.scheduler.step_inputs import resolve

    spec = {"t": "$.text", "l": "$.lower"}
    document, edges, _ = resolve(
        spec, set(), {"text": "Hi"}, {}, {}, "input_001", frozenset({"lower"})
    )
    assert document == {"t": "Hi"} and len(edges) == 1
    with pytest.raises(MissingValue):
        resolve(spec, set(), {"text": "Hi"}, {}, {}, "input_001")


def test_a_whole_upstream_output_is_never_an_absent_optional_field() -> None:
    from services.common.mapping import parse
    from services.scheduler.step_inputs import absent_optional

    whole = parse("$.detect", {"detect"}, "detection")  # no segments after the step id
    assert not absent_optional(whole, frozenset({"detect"}), {})
    assert absent_optional(parse("$.lower", set(), "l"), frozenset({"lower"}), {})


def test_lineage_names_keep_the_path_a_field_came_from() -> None:
    outputs = {"A": {"tokens": [{"text": "a"}, {"text": "b"}], "n": 2}}
    document, edges, sources = resolve(
        {"texts": "$.A.tokens[*].text", "whole": "$.A", "first": "$.A.tokens[0]", "p": "$.meta.id"},
        {"A"},
        {"meta": {"id": "x"}},
        outputs,
        {"A": "output_001"},
        "input_002",
    )
    assert document["texts"] == ["a", "b"] and document["whole"] == outputs["A"]
    assert edges == [
        ("output_001_tokens[*].text_array", "input_002_texts_array"),
        ("output_001_object", "input_002_whole_object"),
        ("output_001_tokens[0]_object", "input_002_first_object"),
        ("run_input_meta.id_string", "input_002_p_string"),
    ]
    assert sources == {"texts": "output_001", "whole": "output_001", "first": "output_001"}
    _, added = with_parameters({}, {"parameters": {"min_face_size": 5}}, "d", ACCEPTS, "input_001")
    assert added == [
        ("run_input_parameters.min_face_size_number", "input_001_min_face_size_number")
    ]
