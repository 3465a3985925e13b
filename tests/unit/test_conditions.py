"""A step's ``skip_if``: conditions on the run's input, checked when a pipeline is
registered and evaluated when a run is submitted (those on an upstream output, decided by
the scheduler's scripts: ``test_output_conditions``)."""

from __future__ import annotations

from typing import Any

import pytest

from common.errors import InvalidArgument
from services.common.conditions import Condition, holds, parse, skip_reason

INPUT: dict[str, Any] = {
    "mode": "fast",
    "size": 3,
    "ratio": 0.5,
    "debug": False,
    "tags": ["a", "b"],
    "options": {"faces": True},
}


CASES: list[tuple[str, str, Any, bool]] = [
    ("$.mode", "==", "fast", True),
    ("$.mode", "!=", "fast", False),
    ("$.size", "==", 3.0, True),  # 3 is 3.0
    ("$.debug", "==", 0, False),  # false is not 0
    ("$.debug", "==", False, True),
    ("$.size", "==", True, False),
    ("$.tags", "==", ["a", "b"], True),
    ("$.size", ">", 2, True),
    ("$.size", "<=", 2, False),
    ("$.ratio", ">=", 0.5, True),
    ("$.mode", "<", "slow", True),  # strings compare as strings
    ("$.mode", "<", "Z", False),  # by code point, whatever the locale ("Z" is 90, "f" 102)
    ("$.mode", ">=", "fast", True),
    ("$.mode", "<=", "fas", False),
    ("$.mode", ">", 1, False),  # a string and a number: no order, does not hold
    ("$.mode", "in", ["fast", "faster"], True),
    ("$.size", "not_in", [1, 2], True),
    ("$.debug", "in", [0, 1], False),
    ("$.options.faces", "==", True, True),
    ("$.tags[1]", "==", "b", True),
    ("$.debug", "exists", None, True),
    ("$.missing", "exists", None, False),
    ("$.missing", "not_exists", None, True),
    ("$.missing", "!=", "x", False),  # a missing field is no reason to skip
    ("$.options.missing", "==", None, False),
]  # also decided by the scheduler's scripts: test_output_conditions


@pytest.mark.parametrize(("path", "op", "value", "expected"), CASES)
def test_each_operator_on_the_run_input(path: str, op: str, value: Any, expected: bool) -> None:
    assert holds(Condition(path, op, value), INPUT) is expected


def test_the_reason_names_the_first_condition_that_holds_and_none_holding_runs_the_step() -> None:
    conditions = parse(
        [
            {"path": "$.size", "op": ">", "value": 5},
            {"path": "$.mode", "op": "==", "value": "fast"},
        ],
        set(),
        "skip_if",
    )
    assert skip_reason(conditions, INPUT) == 'skip_if $.mode == "fast"'
    assert skip_reason(conditions[:1], INPUT) == ""
    assert (
        skip_reason(parse({"path": "$.debug", "op": "exists"}, set(), "s"), INPUT)
        == "skip_if $.debug exists"
    )


@pytest.mark.parametrize(
    ("doc", "field", "says"),
    [
        ("x", "s", "must be an object"),
        ([], "s", "must hold 1 to 16 conditions"),
        ({"path": "mode", "op": "=="}, "s.path", "must be an expression"),
        ({"path": "$.detect.count", "op": "==", "value": 0}, "s.path", "reads step 'detect'"),
        ({"path": "$.tags[*]", "op": "==", "value": 0}, "s.path", "not [*]"),
        ({"path": "$.mode", "op": "=~", "value": 0}, "s.op", "must be one of ==, !="),
        ({"path": "$.mode", "op": "=="}, "s.value", "== needs a value"),
        ({"path": "$.mode", "op": "exists", "value": 1}, "s.value", "exists takes no value"),
        ({"path": "$.mode", "op": "in", "value": "fast"}, "s.value", "in needs a list"),
        ({"path": "$.size", "op": "<", "value": [1]}, "s.value", "needs a number or a string"),
        ({"path": "$.size", "op": "<", "value": True}, "s.value", "needs a number or a string"),
        ({"path": "$.size", "op": "==", "value": 1, "when": 2}, "s.when", "unknown key 'when'"),
        (
            [{"path": "$.a", "op": "exists"}, {"path": "$.b", "op": "?"}],
            "s[1].op",
            "must be one of",
        ),
    ],
)
def test_a_condition_that_is_not_one_is_refused_naming_its_field(
    doc: Any, field: str, says: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse(doc, {"detect"}, "s")
    assert err.value.field == field and says in err.value.message, err.value.message
