"""Retry backoff: exponential, capped, jittered within bounds."""

from __future__ import annotations

import random

from services.scheduler.retry_policy import RetryPolicy


def test_backoff_doubles_per_attempt_without_jitter() -> None:
    policy = RetryPolicy(initial_seconds=1, maximum_seconds=60, jitter=False)
    assert [policy.delay_seconds(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(initial_seconds=1, maximum_seconds=5, jitter=False)
    assert policy.delay_seconds(10) == 5


def test_jitter_stays_between_half_and_the_full_delay() -> None:
    policy = RetryPolicy(initial_seconds=2, maximum_seconds=60)
    rng = random.Random(7)
    delays = [policy.delay_seconds(3, rng) for _ in range(200)]
    assert all(4 <= d <= 8 for d in delays)
    assert max(delays) - min(delays) > 2  # it does vary
