"""The SDK's request builders (clients.requests): a number no int32 field can hold is refused
by name, as the services would refuse it, instead of protobuf's bare ValueError."""

from __future__ import annotations

import pytest

from clients import requests
from common.errors import InvalidArgument


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: requests.submit("noop", "", {}, priority=2**70), "priority"),
        (lambda: requests.submit_many([{}], "noop", "", priority=-(2**40)), "priority"),
        (lambda: requests.list_runs(page_size=2**40), "page_size"),
        (lambda: requests.list_audit_events(10**12), "page_size"),
        (lambda: requests.set_task_limits("t", None, 2**40, ()), "concurrency_limit"),
        (lambda: requests.set_task_limits("t", None, None, (), 2**31), "rate_burst"),
    ],
)
def test_a_number_past_int32_is_invalid_argument_by_name(build: object, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        build()  # type: ignore[operator]
    assert err.value.field == field and "got " in err.value.message


def test_numbers_in_range_pass_through_for_the_services_to_judge() -> None:
    assert requests.submit("noop", "", {}, priority=11).priority == 11
    assert requests.list_runs(page_size=5000).page_size == 5000
    assert requests.set_task_limits("t", None, 5000, ()).concurrency_limit == 5000
    assert not requests.set_task_limits("t", "", None, ()).HasField("concurrency_limit")
    assert requests.set_task_limits("t", None, None, (), 0).rate_burst == 0  # theirs to refuse
    assert not requests.set_task_limits("t", "", None, ()).HasField("rate_burst")
