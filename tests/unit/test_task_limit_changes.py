"""What an operator's SetTaskLimits sets, checked before anything is read or written: each
wrong value is refused naming its field."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgument
from services.scheduler.task_limits import checked_change


def test_what_is_given_is_set_and_what_is_not_is_left() -> None:
    assert checked_change("10/s", None, []) == {"rate_limit": "10/s"}
    assert checked_change("", 0, []) == {"rate_limit": "", "concurrency_limit": 0}  # no limit
    assert checked_change(None, None, ["rate_limit"]) == {}  # only a reset


@pytest.mark.parametrize(
    ("rate", "concurrency", "reset", "burst", "field"),
    [
        (None, None, [], None, "rate_limit"),  # nothing to change
        (None, None, ["speed"], None, "reset_fields"),
        ("10/s", None, ["rate_limit"], None, "rate_limit"),  # set and reset at once
        ("ten a second", None, [], None, "rate_limit"),
        (None, -1, [], None, "concurrency_limit"),
        (None, None, [], -1, "rate_burst"),
    ],
)
def test_a_wrong_change_is_refused_naming_its_field(
    rate: str | None, concurrency: int | None, reset: list[str], burst: int | None, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        checked_change(rate, concurrency, reset, burst)
    assert refused.value.field == field
