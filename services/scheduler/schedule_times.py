"""``Timing``: when a schedule is due — a cron expression in a time zone, an interval, or
once at a given time.

Pure: every answer is a function of the timing and the millisecond asked about, so the
firing rules (``schedules.py``) are tested without waiting. Cron expressions are read by
cronsim (five fields as crontab(5), plus L, W and #; day-of-month and day-of-week OR-ed as
cron does; a local time that a daylight-saving change skips is run at the change, one that
repeats runs once). An interval counts from the schedule's creation, so its times do not
drift with how late each run started. A one-off (``at_ms``) has that one time, and none
after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from itertools import islice, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from common.errors import InvalidArgument

MIN_EVERY_SECONDS = 1.0
MAX_EVERY_SECONDS = 366 * 86400.0
MAX_CRON_CHARS = 200
AT_PAST_GRACE_MS = 60_000  # a one-off "now" computed by a client a moment ago still goes
MAX_COUNTED = 100_000  # missed cron times counted one by one (~2.4 µs each), at most


@dataclass(frozen=True)
class Timing:
    """A cron expression (with its time zone, "" for UTC), an interval from ``anchor_ms``, or
    one time, ``at_ms``."""

    cron: str = ""
    timezone: str = ""
    every_seconds: float = 0.0
    anchor_ms: int = 0
    at_ms: int = 0

    def check(self, prefix: str = "schedule.") -> None:
        """INVALID_ARGUMENT naming the field, unless this is a timing a schedule can have
        (``anchor_ms``: now, when it is being created)."""
        if sum(map(bool, (self.cron, self.every_seconds, self.at_ms))) != 1:
            raise InvalidArgument("set exactly one of cron, every and at", field=f"{prefix}cron")
        if self.at_ms:
            if self.timezone:
                raise InvalidArgument(
                    "applies to cron only (at is a moment)", field=f"{prefix}timezone"
                )
            if self.at_ms < self.anchor_ms - AT_PAST_GRACE_MS:
                raise InvalidArgument("is in the past", field=f"{prefix}at")
            return
        if self.every_seconds:
            if self.timezone:
                raise InvalidArgument(
                    "applies to cron only (an interval is the same in every zone)",
                    field=f"{prefix}timezone",
                )
            if not MIN_EVERY_SECONDS <= self.every_seconds <= MAX_EVERY_SECONDS:
                raise InvalidArgument(
                    f"must be from 1 second to 366 days, got {self.every_seconds:g}s",
                    field=f"{prefix}every",
                )
            return
        zone_of(self.timezone, f"{prefix}timezone")
        if len(self.cron) > MAX_CRON_CHARS or not self.cron.isprintable():
            raise InvalidArgument(
                f"must be printable and at most {MAX_CRON_CHARS} characters", field=f"{prefix}cron"
            )
        try:
            CronSim(self.cron, datetime.now(UTC))
        except CronSimError as exc:
            raise InvalidArgument(
                f"{exc} in {self.cron!r} (five fields: minute hour day-of-month month day-of-week)",
                field=f"{prefix}cron",
            ) from exc

    def first(self, created_ms: int) -> int:
        """The first time of a schedule created at ``created_ms`` (a one-off's time even if
        it has just passed)."""
        return self.at_ms or self.next_after(created_ms)

    def next_after(self, after_ms: int) -> int:
        """The first time this timing gives that is strictly after ``after_ms`` (0: none, a
        one-off's time having passed)."""
        if self.at_ms:
            return self.at_ms if after_ms < self.at_ms else 0
        if self.every_seconds:
            step = int(self.every_seconds * 1000)
            if after_ms < self.anchor_ms:
                return self.anchor_ms + step
            return self.anchor_ms + ((after_ms - self.anchor_ms) // step + 1) * step
        return next(self._cron_times(after_ms))

    def latest_until(self, first_ms: int, now_ms: int) -> tuple[int, int]:
        """Of the times from ``first_ms`` (a time this timing gives, at or before ``now_ms``)
        up to ``now_ms``: the latest, and how many came before it — times that passed while
        no replica was running (cron times are counted one by one, up to ``MAX_COUNTED``)."""
        if self.at_ms:
            return first_ms, 0
        if self.every_seconds:
            step = int(self.every_seconds * 1000)
            passed = max(0, (now_ms - first_ms) // step)
            return first_ms + passed * step, passed
        latest = max(first_ms, next(self._cron_times(now_ms + 1000, reverse=True)))
        after_first = islice(self._cron_times(first_ms), MAX_COUNTED)
        return latest, sum(1 for _ in takewhile(lambda t: t <= latest, after_first))

    def _cron_times(self, from_ms: int, reverse: bool = False) -> Iterator[int]:
        """The cron times strictly after ``from_ms`` in order (``reverse``: strictly before
        it, latest first), at the second's grain."""
        zone = zone_of(self.timezone, "schedule.timezone")
        start = datetime.fromtimestamp(from_ms // 1000, zone)
        return (int(t.timestamp() * 1000) for t in CronSim(self.cron, start, reverse=reverse))

    def describe(self) -> str:
        """A human-readable account ("every 5 minutes", "At 02:00 every day (Europe/Berlin)")."""
        if self.at_ms:
            at = datetime.fromtimestamp(self.at_ms / 1000, UTC)
            return f"once, at {at:%Y-%m-%d %H:%M:%S} UTC"
        if self.every_seconds:
            return f"every {_span(self.every_seconds)}"
        try:
            text = str(CronSim(self.cron, datetime.now(UTC)).explain())
        except Exception:  # explain() does not read every expression it runs
            text = f"cron {self.cron}"
        return f"{text} ({self.timezone or 'UTC'})"


def zone_of(name: str, field: str) -> tzinfo:
    """The time zone named (UTC for ""); INVALID_ARGUMENT naming ``field`` for an unknown one."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument(
            f"{name!r} is not an IANA time zone (such as Europe/Berlin)", field=field
        ) from exc


def _span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}s" if n != 1 else unit
    return f"{seconds:g} seconds" if seconds != 1 else "second"
