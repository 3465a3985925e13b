"""``Timing``: when a schedule is due — a cron expression in a time zone, an interval, or
once at a given time.

Pure: every answer is a function of the timing and the millisecond asked about, so the
firing rules (``schedules.py``) are tested without waiting. Cron expressions are read by
cronsim (five fields as crontab(5), plus L, W and #; day-of-month and day-of-week OR-ed as
cron does; a local time that a daylight-saving change skips is run at the change, one that
repeats runs once). An interval counts from the schedule's creation, so its times do not
drift with how late each run started. A one-off (``at_ms``) has that one time, and none
after it. Bounds (``start_ms``, ``end_ms``; Temporal's start and end time) keep the times a
cron expression or an interval gives between them, both included: none before the start,
and after the end none at all (the schedule is then done, as a one-off after its time).
A jitter (Temporal's) starts each run of a cron expression or an interval up to that much
after its time, by an offset that is a function of the schedule and the time alone, so that
every replica, and a retried firing, gives the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from itertools import dropwhile, islice, pairwise, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from common.errors import InvalidArgument

MIN_EVERY_SECONDS = 1.0
MAX_EVERY_SECONDS = 366 * 86400.0
MAX_CRON_CHARS = 200
AT_PAST_GRACE_MS = 60_000  # a one-off "now" computed by a client a moment ago still goes
MAX_COUNTED = 100_000  # missed cron times counted one by one (~2.4 µs each), at most
MAX_JITTER_SECONDS = 86400.0
GAPS_SEEN = 400  # a cron's next times looked at for its shortest gap (a jitter is shorter)


@dataclass(frozen=True)
class Timing:
    """A cron expression (with its time zone, "" for UTC), an interval from ``anchor_ms``, or
    one time, ``at_ms``."""

    cron: str = ""
    timezone: str = ""
    every_seconds: float = 0.0
    anchor_ms: int = 0
    at_ms: int = 0
    start_ms: int = 0  # no time before it (0: none)
    end_ms: int = 0  # no time after it (0: none)
    jitter_seconds: float = 0.0  # each run starts up to this long after its time

    def check(self, prefix: str = "schedule.") -> None:
        """INVALID_ARGUMENT naming the field, unless this is a timing a schedule can have
        (``anchor_ms``: now, when it is being created)."""
        if sum(map(bool, (self.cron, self.every_seconds, self.at_ms))) != 1:
            raise InvalidArgument("set exactly one of cron, every and at", field=f"{prefix}cron")
        self._check_bounds(prefix)
        self._check_jitter(prefix)
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
        if self.jitter_seconds:
            gap = min(
                (b - a for a, b in pairwise(islice(self._cron_times(self.anchor_ms), GAPS_SEEN))),
                default=0,
            )
            if gap and self.jitter_seconds * 1000 >= gap:
                raise InvalidArgument(
                    f"must be shorter than the shortest time between two of the cron's times "
                    f"({_span(gap / 1000)}), got {_span(self.jitter_seconds)}: a run would "
                    "start after the next one's time",
                    field=f"{prefix}jitter",
                )

    def _check_bounds(self, prefix: str) -> None:
        if self.at_ms and (self.start_ms or self.end_ms):
            field = f"{prefix}{'start_time' if self.start_ms else 'end_time'}"
            raise InvalidArgument("applies to cron and every only (at is one time)", field=field)
        if self.end_ms and self.end_ms <= self.anchor_ms:
            raise InvalidArgument("is in the past", field=f"{prefix}end_time")
        if self.end_ms and self.end_ms <= self.start_ms:
            raise InvalidArgument("must be after start_time", field=f"{prefix}end_time")

    def _check_jitter(self, prefix: str) -> None:
        if not self.jitter_seconds:
            return
        field = f"{prefix}jitter"
        if self.at_ms:
            raise InvalidArgument("applies to cron and every only (at is one time)", field=field)
        if not 0 < self.jitter_seconds <= MAX_JITTER_SECONDS:
            raise InvalidArgument(
                f"must be from 0 to 1 day, got {self.jitter_seconds:g}s", field=field
            )
        if self.every_seconds and self.jitter_seconds >= self.every_seconds:
            raise InvalidArgument(
                f"must be shorter than every ({self.every_seconds:g}s), got "
                f"{self.jitter_seconds:g}s: a run would start after the next one's time",
                field=field,
            )

    def delay_of(self, schedule: str, due_ms: int) -> float:
        """How long after its time ``due_ms`` the run of ``schedule`` (its full id) starts:
        0 without a jitter, else from 0 up to the jitter, to the millisecond, the same for
        the same schedule and time (blake2b of both: spread evenly, and no replica's or
        retry's chance)."""
        if not self.jitter_seconds:
            return 0.0
        digest = hashlib.blake2b(f"{schedule}@{due_ms}".encode(), digest_size=8).digest()
        fraction = int.from_bytes(digest, "big") / 2**64
        return int(fraction * self.jitter_seconds * 1000) / 1000

    def first(self, created_ms: int) -> int:
        """The first time of a schedule created at ``created_ms`` (a one-off's time even if
        it has just passed)."""
        return self.at_ms or self.next_after(created_ms)

    def next_after(self, after_ms: int) -> int:
        """The first time this timing gives that is strictly after ``after_ms`` (0: none, a
        one-off's time having passed)."""
        if self.at_ms:
            return self.at_ms if after_ms < self.at_ms else 0
        after_ms = max(after_ms, self.start_ms - 1)  # the start is a time it may give
        if self.every_seconds:
            step = int(self.every_seconds * 1000)
            if after_ms < self.anchor_ms:
                found = self.anchor_ms + step
            else:
                found = self.anchor_ms + ((after_ms - self.anchor_ms) // step + 1) * step
        else:
            found = next(self._cron_times(after_ms))
        return 0 if self.end_ms and found > self.end_ms else found

    def latest_until(self, first_ms: int, now_ms: int) -> tuple[int, int]:
        """Of the times from ``first_ms`` (a time this timing gives, at or before ``now_ms``)
        up to ``now_ms``: the latest, and how many came before it — times that passed while
        no replica was running (cron times are counted one by one, up to ``MAX_COUNTED``)."""
        if self.at_ms:
            return first_ms, 0
        if self.end_ms:  # none after the end (``first_ms`` is at or before it)
            now_ms = min(now_ms, self.end_ms)
        if self.every_seconds:
            step = int(self.every_seconds * 1000)
            passed = max(0, (now_ms - first_ms) // step)
            return first_ms + passed * step, passed
        latest = max(first_ms, next(self._cron_times(now_ms + 1000, reverse=True)))
        after_first = islice(self._cron_times(first_ms), MAX_COUNTED)
        return latest, sum(1 for _ in takewhile(lambda t: t <= latest, after_first))

    def times_between(self, start_ms: int, end_ms: int, most: int) -> list[int]:
        """The times this timing gives from ``start_ms`` to ``end_ms`` (both included), in
        order, at most ``most`` of them: a backfill's. An interval's series runs back before
        its creation too (the same phase); the schedule's own bounds still hold. A one-off
        gives its time if it is in the range."""
        start_ms = max(start_ms, self.start_ms)
        if self.end_ms:
            end_ms = min(end_ms, self.end_ms)
        if self.at_ms:
            return [self.at_ms] if start_ms <= self.at_ms <= end_ms else []
        if self.every_seconds:
            step = int(self.every_seconds * 1000)
            first = self.anchor_ms - ((self.anchor_ms - start_ms) // step) * step
            return list(islice(range(first, end_ms + 1, step), most))
        times = dropwhile(lambda t: t < start_ms, self._cron_times(start_ms - 1000))
        return list(islice(takewhile(lambda t: t <= end_ms, times), most))

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
            return f"every {_span(self.every_seconds)}{self._bounds()}"
        try:
            text = str(CronSim(self.cron, datetime.now(UTC)).explain())
        except Exception:  # explain() does not read every expression it runs
            text = f"cron {self.cron}"
        return f"{text} ({self.timezone or 'UTC'}){self._bounds()}"

    def _bounds(self) -> str:
        def utc(ms: int) -> str:
            return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M:%S} UTC"

        return (
            (f", from {utc(self.start_ms)}" if self.start_ms else "")
            + (f", until {utc(self.end_ms)}" if self.end_ms else "")
            + (f", each run up to {_span(self.jitter_seconds)} late" if self.jitter_seconds else "")
        )


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
