"""Time, passed in: the scheduler's parts ask a ``Clock`` rather than the system, so tests
move time forward (lease expiry, retry due times, silent executors) instead of sleeping.
The Lua scripts already take "now" as an argument; the clock is where it comes from."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (what Redis scores and stamps hold)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...


class SystemClock:
    """The real time."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now_ms(self) -> int:
        return int(self._now * 1000)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


SYSTEM = SystemClock()
