"""input_mapping expressions: parsing and evaluation."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgument
from services.common.mapping import (
    MAX_SEGMENTS,
    MAX_WILDCARDS,
    MissingValue,
    evaluate,
    is_expression,
    parse,
)

DOC = {
    "faces": [{"bbox": [1, 2, 3, 4], "score": 0.9}, {"bbox": [5, 6, 7, 8], "score": 0.7}],
    "size": {"w": 640},
}


def test_a_first_name_that_is_a_step_reads_that_steps_output() -> None:
    path = parse("$.detection.faces[*].bbox", {"detection"}, "f")
    assert path.source == "detection"
    assert evaluate(path, DOC) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert path.field_path == "faces[*].bbox"


def test_any_other_name_reads_the_run_input() -> None:
    path = parse("$.size.w", {"detection"}, "f")
    assert (path.source, evaluate(path, DOC)) == ("", 640)


def test_indexes_pick_one_element() -> None:
    assert evaluate(parse("$.faces[1].score", set(), "f"), DOC) == 0.7


@pytest.mark.parametrize("text", ["image_path", "$", "$.", "$.faces[x]", "$..faces", "$.a b"])
def test_malformed_expressions_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^steps\[0\]\.input_mapping\.x:"):
        parse(text, set(), "steps[0].input_mapping.x")


@pytest.mark.parametrize("text", ["$.nothing", "$.faces[5]", "$.size[*]"])
def test_missing_values_say_what_is_missing(text: str) -> None:
    with pytest.raises(MissingValue, match="^\\$"):
        evaluate(parse(text, set(), "f"), DOC)


def test_the_longest_expressions_allowed_parse_and_one_segment_more_does_not() -> None:
    longest = "$" + ".a" * MAX_SEGMENTS
    assert len(parse(longest, set(), "f").segments) == MAX_SEGMENTS
    with pytest.raises(InvalidArgument, match="at most 32 and 4"):
        parse(longest + ".a", set(), "f")
    wildcards = "$.a" + "[*]" * MAX_WILDCARDS
    assert parse(wildcards, set(), "f").segments.count(None) == MAX_WILDCARDS
    with pytest.raises(InvalidArgument, match="5 \\[\\*\\]"):
        parse(wildcards + "[*]", set(), "f")


def test_the_last_element_is_read_and_the_one_after_it_is_missing() -> None:
    assert evaluate(parse("$.faces[1]", set(), "f"), DOC) == DOC["faces"][1]
    with pytest.raises(MissingValue, match="no element \\[2\\]"):
        evaluate(parse("$.faces[2]", set(), "f"), DOC)
    with pytest.raises(MissingValue, match="no element \\[0\\]"):
        evaluate(parse("$.size[0]", set(), "f"), DOC)  # an object is not a list


def test_only_a_string_starting_with_dollar_is_an_expression() -> None:
    assert is_expression("$.a") and is_expression("$")
    assert not any(map(is_expression, ["a.$", "", 5, None, ["$.a"], {"$": 1}]))
