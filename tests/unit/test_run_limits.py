"""``RunLimits``: a namespace's runs queued or running, held to its limit without a round trip."""

from __future__ import annotations

import pytest

from common.errors import ResourceExhausted
from services.scheduler.run_limits import RunLimits, limits_problem, parse_limits


def test_a_namespace_is_held_to_its_own_limit_or_the_default() -> None:
    limits = RunLimits(lambda ns: {"big": 100, "free": 0}.get(ns, 10))
    limits.seen({"team-a": 9, "big": 99, "free": 10**6})
    limits.admit("team-a", 1)
    with pytest.raises(ResourceExhausted, match="'team-a' has 10 runs .* limit of 10") as err:
        limits.admit("team-a", 1)
    assert err.value.field == "namespace"
    limits.admit("big", 1)
    limits.admit("free", 1000)  # 0: no limit
    with pytest.raises(ResourceExhausted, match="11 more would pass its limit of 10"):
        limits.admit("new-team", 5 + 6)  # a batch is refused whole
    limits.admit("new-team", 10)


def test_what_was_admitted_counts_until_the_next_reading_replaces_it() -> None:
    limits = RunLimits(lambda _ns: 3)
    for _ in range(3):
        limits.admit("team-a", 1)
    with pytest.raises(ResourceExhausted):
        limits.admit("team-a", 1)
    limits.seen({"team-a": 1})  # two of them ended meanwhile
    limits.admit("team-a", 2)


def test_the_setting_reads_namespace_equals_limit() -> None:
    assert parse_limits(["team-a=1000", " team-b = 5"]) == {"team-a": 1000, "team-b": 5}
    assert limits_problem(["team-a=1000"]) is None
    assert "is not NAMESPACE=LIMIT" in (limits_problem(["team-a"]) or "")
    assert "is not NAMESPACE=LIMIT" in (limits_problem(["*=5"]) or "")
    assert "whole number" in (limits_problem(["team-a=lots"]) or "")
