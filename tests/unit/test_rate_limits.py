"""A task's rate limit as Celery writes it ("N/s", "N/m", "N/h") and its burst: each at its
limits kept, one past refused."""

from __future__ import annotations

import pytest

from common.rate_limits import MAX_BURST, MAX_COUNT, burst, interval_ms, normalized


def test_a_rate_limit_and_its_burst_at_their_limits_are_kept() -> None:
    assert [normalized(v) for v in ("1/s", f"{MAX_COUNT}/h", "0010/m")] == [
        "1/s",
        f"{MAX_COUNT}/h",
        "10/m",
    ]
    for bad in ("0/s", f"{MAX_COUNT + 1}/s", "-1/s", "1/d", "1", 1):
        with pytest.raises(ValueError):
            normalized(bad)
    assert (burst(1), burst(MAX_BURST)) == (1, MAX_BURST)
    for bad_burst in (0, MAX_BURST + 1, True, 2.0, "2"):
        with pytest.raises(ValueError):
            burst(bad_burst)
    assert interval_ms("4/s") == 250.0 and interval_ms("") == 0.0
