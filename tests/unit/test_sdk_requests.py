"""The SDK's request builders (clients.requests): a number no int32 field can hold is refused
by name, as the services would refuse it, instead of protobuf's bare ValueError."""

from __future__ import annotations

import pytest

from clients import requests
from clients.sdk import Client
from common.errors import InvalidArgument
from wtm.v1 import run_pb2


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


def test_the_int32_range_is_kept_to_the_last_number_either_way() -> None:
    assert requests.submit("noop", "", {}, priority=2**31 - 1).priority == 2**31 - 1
    assert requests.submit("noop", "", {}, priority=-(2**31)).priority == -(2**31)
    with pytest.raises(InvalidArgument):
        requests.submit("noop", "", {}, priority=2**31)
    with pytest.raises(InvalidArgument):
        requests.submit("noop", "", {}, priority=-(2**31) - 1)


def test_a_state_to_list_is_one_of_the_states_by_name() -> None:
    assert requests.list_runs(state="FAILED").state == run_pb2.STATE_FAILED
    assert requests.list_runs().state == run_pb2.STATE_UNSPECIFIED
    with pytest.raises(InvalidArgument) as err:
        requests.list_runs(state="failed")
    assert err.value.field == "state" and "COMPLETED" in err.value.message


def test_a_namespace_update_sets_only_what_it_is_given_zero_included() -> None:
    nothing = requests.update_namespace()
    assert not any(
        nothing.HasField(f)
        for f in ("run_limit", "weight", "history_retention_days", "calls_per_second")
    )
    zeros = requests.update_namespace(0, 0.0, 0.0, calls_per_second=0.0)
    assert all(
        zeros.HasField(f)
        for f in ("run_limit", "weight", "history_retention_days", "calls_per_second")
    )
    some = requests.update_namespace(weight=2.5, reset=["run_limit"])
    assert (some.weight, list(some.reset_fields), some.HasField("run_limit")) == (
        2.5,
        ["run_limit"],
        False,
    )


def test_a_client_shows_where_it_calls_and_never_its_key() -> None:
    """``print(client)`` in a notebook: the addresses and the namespace, not the secret."""
    key = "wtm_0123456789abcdef.s3cr3t-value"
    with Client("127.0.0.1:1", "127.0.0.1:2", api_key=key, namespace="team-a") as client:
        shown = repr(client)
        assert shown == (
            "Client(registry='127.0.0.1:1', scheduler='127.0.0.1:2', namespace='team-a')"
        )
        assert "s3cr3t" not in repr(client.acting_as(key)) and "0123456789abcdef" not in shown
