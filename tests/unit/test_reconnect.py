"""How long an executor waits between attempts to reconnect to a scheduler."""

from __future__ import annotations

import pytest

from services.executor.executor import RECONNECT_MAX_SECONDS, reconnect_cap
from services.executor.lease_fence import LeaseFence


@pytest.mark.parametrize("lease", [2.0, 10.0, 30.0, 300.0])
def test_the_wait_between_attempts_stays_within_a_quarter_of_the_lease(lease: float) -> None:
    """Exponential backoff alone grew to 10 s: after an outage of the scheduler, an executor
    could come back later than the leases of the steps it ran (the durability tests' 10 s),
    and those lapses counted as attempts. Now a quarter of the lease at most (0.5 s to 10 s),
    so it is back with most of each lease left."""
    cap = reconnect_cap(lease)
    assert 0.5 <= cap <= RECONNECT_MAX_SECONDS
    assert cap <= max(0.5, lease / 4)


def test_before_any_welcome_the_default_lease_sets_the_cap() -> None:
    assert reconnect_cap(LeaseFence().lease_seconds) == 7.5  # 30 s: a quarter
