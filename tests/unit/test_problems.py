"""``common.problems``: a document's problems raised as one error."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgument
from common.problems import MAX_LISTED, Problems, unknown_key


def _refuse(field: str) -> None:
    raise InvalidArgument("is wrong", field=field)


def test_nothing_found_raises_nothing_and_one_problem_is_raised_as_it_was() -> None:
    problems = Problems()
    problems.raise_any()
    problems.check(_refuse, "a.b")
    with pytest.raises(InvalidArgument) as err:
        problems.raise_any()
    assert err.value.message == "a.b: is wrong" and err.value.field == "a.b"


def test_take_returns_the_checks_value_or_its_fallback() -> None:
    problems = Problems()
    assert problems.take(int, "7", fallback=0) == 7
    assert problems.take(_refuse, "x", fallback=-1) == -1
    assert len(problems) == 1 and not problems.ok_since(0) and problems.ok_since(1)


def test_problems_are_ordered_by_path_with_numbers_as_numbers() -> None:
    problems = Problems()
    for field in ("steps[10].a", "steps[2].b", "global", "steps[2].a"):
        problems.check(_refuse, field)
    with pytest.raises(InvalidArgument) as err:
        problems.raise_any()
    assert err.value.field == "global"
    assert err.value.message.splitlines()[2:] == [
        "- steps[2].a: is wrong",
        "- steps[2].b: is wrong",
        "- steps[10].a: is wrong",
    ]


def test_the_same_problem_is_named_once_and_a_long_list_is_cut_and_counted() -> None:
    problems = Problems()
    for i in range(MAX_LISTED + 5):
        problems.check(_refuse, f"f{i:03}")
        problems.check(_refuse, f"f{i:03}")
    with pytest.raises(InvalidArgument) as err:
        problems.raise_any()
    lines = err.value.message.splitlines()
    assert lines[1] == f"{MAX_LISTED + 4} more problems:"
    assert len(lines) == 2 + MAX_LISTED + 1 and lines[-1] == "- and 4 more"


def test_an_unknown_key_is_told_the_key_it_likely_misspells_else_every_known_one() -> None:
    known = {"max_retries", "timeout", "queue"}
    assert (
        unknown_key("max_retires", known)
        == "unknown key 'max_retires'; did you mean 'max_retries'?"
    )
    assert unknown_key("colour", known, "it may hold") == (
        "unknown key 'colour'; it may hold: max_retries, queue, timeout"
    )
