"""A namespace's calls a second to one replica (``CallLimits``): a burst passes, then one
call per 1/rate seconds; each namespace has its own; the refusal names the namespace and
when the next call passes; no limit when unset."""

from __future__ import annotations

import pytest

from common.errors import ResourceExhausted
from services.common.call_limits import CallLimits
from services.common.grpc_server import pushback
from tests.integration.test_history_retention import CountingMeters, counts


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_namespace_gets_its_burst_then_its_rate_and_no_more() -> None:
    clock = Clock()
    limits = CallLimits(10, clock=clock, service="scheduler")  # a burst of 20
    for _ in range(20):
        limits.take("team-a")
    with pytest.raises(ResourceExhausted) as refused:
        limits.take("team-a")
    assert refused.value.field == "namespace"
    assert refused.value.message.startswith(
        "namespace: 'team-a' is making more than 10 calls a second to this scheduler"
    )
    assert "the next call passes in 0.10s" in refused.value.message
    limits.take("team-b")  # another team is not held back
    clock.now += 0.05  # half a token: the next call passes in the other half
    with pytest.raises(ResourceExhausted) as refused:
        limits.take("team-a")
    assert "the next call passes in 0.05s" in refused.value.message
    assert refused.value.retry_after == pytest.approx(0.05)
    clock.now += 0.05  # one more token
    limits.take("team-a")
    with pytest.raises(ResourceExhausted):
        limits.take("team-a")
    clock.now += 60  # idle a while: back to a burst, not more
    for _ in range(20):
        limits.take("team-a")
    with pytest.raises(ResourceExhausted):
        limits.take("team-a")


def test_refused_calls_do_not_dig_the_hole_deeper_and_zero_is_no_limit() -> None:
    clock, meters = Clock(), CountingMeters()
    limits = CallLimits(2, burst=1, clock=clock, meter=meters.get_meter("t"))
    limits.take("n")
    for _ in range(50):  # a client that keeps trying while refused
        with pytest.raises(ResourceExhausted):
            limits.take("n")
    assert counts(meters, "wtm_calls_refused") == {(("namespace", "n"),): 50}  # the alert's
    clock.now += 0.5
    limits.take("n")  # its rate again, not later
    free = CallLimits(0)
    for _ in range(10_000):
        free.take("n")


def test_a_refusal_tells_the_caller_when_to_try_again_in_grpcs_trailer() -> None:
    clock = Clock()
    limits = CallLimits(4, burst=1, clock=clock)
    limits.take("n")
    with pytest.raises(ResourceExhausted) as refused:
        limits.take("n")
    assert pushback(refused.value) == (("grpc-retry-pushback-ms", "250"),)
    assert pushback(ResourceExhausted("run limit", field="namespace")) == ()  # not run-limit's


def test_a_namespaces_own_figure_overrides_the_installations_while_it_is_set() -> None:
    clock = Clock()
    rates: dict[str, float] = {"slow": 1.0, "free": 0.0}
    limits = CallLimits(10, clock=clock, service="registry", rates=rates)
    limits.take("slow")
    limits.take("slow")  # a burst of 2
    with pytest.raises(ResourceExhausted) as refused:
        limits.take("slow")
    assert "more than 1 calls a second to this registry (its own: wtm namespace set)" in (
        refused.value.message
    )
    for _ in range(100):
        limits.take("free")  # its own is none
    for _ in range(20):
        limits.take("other")  # the installation's burst
    with pytest.raises(ResourceExhausted):
        limits.take("other")
    del rates["slow"]  # reset: the installation's again, from a full burst of its own
    clock.now += 2
    for _ in range(20):
        limits.take("slow")
    unset = CallLimits(0, clock=clock, rates={"only": 1.0})  # none for the others
    for _ in range(50):
        unset.take("anyone")
    unset.take("only")
    unset.take("only")
    with pytest.raises(ResourceExhausted):
        unset.take("only")
