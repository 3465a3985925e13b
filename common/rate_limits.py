"""A task's ``rate_limit`` (task.json), as Celery writes it: "N/s", "N/m" or "N/h" — at most N
steps of the task start per second, minute or hour, one every period/N. The registry checks
it; the scheduler turns it into the time between two starts. A ``rate_burst`` of B lets up to
B steps start at once after a quiet spell, the next ones at the rate (a token bucket of B;
1, the default, spaces every start). (And the largest ``concurrency_limit``, which the
registry, the scheduler and the CLI check alike.)"""

from __future__ import annotations

PERIODS = {"s": 1, "m": 60, "h": 3600}
MAX_CONCURRENCY = 1000  # the largest "concurrency_limit", task.json's or an operator's
MAX_COUNT = 10_000  # per period
MAX_BURST = MAX_COUNT  # the largest "rate_burst"
HOW = "must be 'N/s', 'N/m' or 'N/h' with N a whole number from 1 to 10000"


def normalized(value: object) -> str:
    """``value`` as a rate limit ("010/s" -> "10/s"); ValueError(HOW) if it is not one."""
    if not isinstance(value, str):
        raise ValueError(HOW)
    count, _, period = value.partition("/")
    if not (count.isascii() and count.isdigit()) or period not in PERIODS:
        raise ValueError(HOW)
    if not 1 <= int(count) <= MAX_COUNT:
        raise ValueError(HOW)
    return f"{int(count)}/{period}"


def interval_ms(rate_limit: str) -> float:
    """The time between two starts that a rate limit allows, in ms (0.0 for none, "")."""
    if not rate_limit:
        return 0.0
    count, _, period = normalized(rate_limit).partition("/")
    return PERIODS[period] * 1000 / int(count)


def burst(value: object) -> int:
    """``value`` as a rate limit's burst (a whole number from 1 to MAX_BURST); ValueError
    saying so if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BURST:
        raise ValueError(f"must be a whole number from 1 to {MAX_BURST}")
    return value
