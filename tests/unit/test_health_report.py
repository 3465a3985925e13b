"""clients/health.py: what a service's dependency report becomes in ``wtm health``."""

from __future__ import annotations

from clients.health import FAIL, OK, WARN, assess_service
from clients.types import DependencyInfo


def redis(offset: float | None, ok: bool = True) -> DependencyInfo:
    return DependencyInfo("scheduler", "redis", ok, "answered PING", 0.002, offset)


def test_a_scheduler_whose_clock_is_off_by_over_a_second_from_redis_warns() -> None:
    [_, line] = assess_service("scheduler", [redis(12.34)])
    assert line.status == WARN and line.component == "scheduler/redis"
    assert "this replica's clock is 12.3 s ahead of Redis's" in line.detail
    [_, line] = assess_service("scheduler", [redis(-1.5)])
    assert line.status == WARN and "1.5 s behind Redis's" in line.detail


def test_a_clock_within_a_second_or_not_reported_is_no_concern() -> None:
    for offset in (0.0004, -0.9, None):
        [service, line] = assess_service("scheduler", [redis(offset)])
        assert (service.status, line.status) == (OK, OK)
        assert line.detail == "answered PING (2 ms)"
    [_, down] = assess_service("scheduler", [redis(30.0, ok=False)])
    assert down.status == FAIL  # down is down, whatever the clock
