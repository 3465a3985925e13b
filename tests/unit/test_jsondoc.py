"""How deep a JSON text nests, counted without parsing it: brackets inside strings do not
count, escaped quotes do not end a string, and the limit itself is allowed
(``test_hostile_parsers.py`` throws random and hostile texts at the same functions)."""

from __future__ import annotations

import json

import pytest

from common.errors import InvalidArgument
from common.jsondoc import MAX_DEPTH, NotJson, depth_of, dumps, loads, text_safe, within_depth


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("17", 0),
        ("{}", 1),
        ("[[]]", 2),
        ('[1, [2], [[3]], {"a": {"b": []}}]', 4),
        ('{"a": "[[[[{{{{"}', 1),
        ('{"a": "quote \\" [[[[", "b": []}', 2),
        ('{"a": "backslash \\\\", "b": [[]]}', 3),
        ("[[], [], [], []]", 2),
    ],
)
def test_depth_counts_brackets_outside_strings_only(text: str, depth: int) -> None:
    assert depth_of(text) == depth


def test_the_limit_itself_is_allowed_even_among_more_brackets_than_it() -> None:
    """More brackets than the limit in all, but never deeper than it: the character scan
    decides, not the count."""
    at_limit = "[" + "[]," * MAX_DEPTH + nested(MAX_DEPTH - 1) + "]"
    assert at_limit.count("[") > MAX_DEPTH and depth_of(at_limit) == MAX_DEPTH
    assert within_depth(at_limit) and loads(at_limit, field="x")[-1] is not None
    over = "[" + "[]," * MAX_DEPTH + nested(MAX_DEPTH) + "]"
    assert not within_depth(over)
    with pytest.raises(InvalidArgument) as err:
        loads(over, field="input_json")
    assert err.value.field == "input_json" and f"deeper than {MAX_DEPTH}" in err.value.message
    assert within_depth(nested(3), max_depth=3) and not within_depth(nested(4), max_depth=3)


def test_what_is_not_json_is_refused_naming_the_field() -> None:
    for text in (b"\xff\xfe", "{'a': 1}", '{"a": NaN}', "[Infinity]", '{"a": 1'):
        with pytest.raises(InvalidArgument) as err:
            loads(text, field="input_json")
        assert err.value.field == "input_json"
    assert loads(b'{"a": "\xc3\xbc"}', field="x") == {"a": "ü"}


def test_an_output_is_written_within_the_limit_or_refused_as_the_tasks_fault() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(MAX_DEPTH - 1):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    assert json.loads(dumps(deep)) == deep
    inner.append([])
    with pytest.raises(NotJson, match=f"deeper than {MAX_DEPTH}"):
        dumps(deep)
    with pytest.raises(NotJson, match=r"inf at \$\.a\.b\[0\]"):
        dumps({"a": {"b": [float("inf")]}})


def test_a_lone_surrogate_is_refused_with_its_path_and_a_pair_is_one_character() -> None:
    """`{"text": "\\ud800"}` was accepted, and the gateway's runs list, which must write it as
    UTF-8, answered a 500 to everyone in its namespace from then on."""
    for text, where in (
        ('{"text": "x\\ud800"}', "$.text"),
        ('{"a": [1, {"b": "\\uDBFF"}]}', "$.a[1].b"),
        ('{"\\udfff": 1}', "$ (a key)"),
        ('{"a": "\\ude00\\ud83d"}', "$.a"),  # the halves the wrong way round
    ):
        with pytest.raises(InvalidArgument) as err:
            loads(text, field="input_json")
        assert err.value.field == "input_json"
        assert "holds a lone surrogate" in err.value.message and f"at {where}," in err.value.message
    assert loads('{"a": "\\ud83d\\ude00"}', field="x") == {"a": "😀"}  # a pair: one character
    assert loads('{"a": "\\\\ud800"}', field="x") == {"a": "\\ud800"}  # an escaped backslash


def test_a_lone_surrogate_is_not_written_either() -> None:
    with pytest.raises(NotJson, match=r"lone surrogate \('\\udc00'\) at \$\.a\[1\]"):
        dumps({"a": ["ok", "x\udc00"]})
    assert loads(dumps({"a": "😀"}), field="x") == {"a": "😀"}


def test_a_recorded_document_with_a_lone_surrogate_can_still_be_written_as_utf8() -> None:
    clean = {"a": ["ü", "😀"]}
    assert text_safe(clean) is clean  # untouched: no copy
    mended = text_safe({"a": ["x\ud800y"], "\udfff": 1})
    json.dumps(mended, ensure_ascii=False).encode()  # no UnicodeEncodeError
    assert mended["a"][0].startswith("x\ufffd") and mended["a"][0].endswith("y")
