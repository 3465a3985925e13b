"""When a schedule is due: cron times strictly after a moment, in a time zone and across its
daylight-saving changes; intervals counted from creation; the latest of the times missed and
how many came before it; bad timings refused naming the field."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from common.errors import InvalidArgument
from services.scheduler.schedule_times import (
    AT_PAST_GRACE_MS,
    MAX_COUNTED,
    MAX_CRON_CHARS,
    MAX_EVERY_SECONDS,
    MAX_JITTER_SECONDS,
    MIN_EVERY_SECONDS,
    Timing,
)

BERLIN = ZoneInfo("Europe/Berlin")


def ms(*args: int, tz: object = UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[arg-type,misc]


def test_a_cron_time_is_strictly_after_the_moment_asked_about() -> None:
    t = Timing(cron="*/5 * * * *")
    assert t.next_after(ms(2026, 1, 1, 0, 4, 59)) == ms(2026, 1, 1, 0, 5)
    assert t.next_after(ms(2026, 1, 1, 0, 5)) == ms(2026, 1, 1, 0, 10)
    assert t.next_after(ms(2026, 1, 1, 0, 5) + 500) == ms(2026, 1, 1, 0, 10)


def test_a_cron_expression_is_read_in_its_time_zone_across_daylight_saving() -> None:
    t = Timing(cron="30 2 * * *", timezone="Europe/Berlin")
    # 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day
    day_before = t.next_after(ms(2026, 3, 28, 0, 0, tz=BERLIN))
    assert day_before == ms(2026, 3, 28, 2, 30, tz=BERLIN)
    skipped_day = t.next_after(day_before)
    assert datetime.fromtimestamp(skipped_day / 1000, BERLIN).date().isoformat() == "2026-03-29"
    after = t.next_after(skipped_day)
    assert after == ms(2026, 3, 30, 2, 30, tz=BERLIN)
    assert after - day_before == 2 * 86_400_000 - 3_600_000  # the day had 23 hours


def test_an_interval_counts_from_creation_not_from_when_runs_started() -> None:
    t = Timing(every_seconds=60, anchor_ms=1_000)
    assert t.next_after(0) == 61_000
    assert t.next_after(61_000) == 121_000
    assert t.next_after(61_001) == 121_000
    assert t.next_after(3_600_000 + 999) == 3_601_000


def test_missed_times_give_the_latest_and_how_many_came_before_it() -> None:
    every = Timing(every_seconds=10, anchor_ms=0)
    assert every.latest_until(10_000, 10_000) == (10_000, 0)
    assert every.latest_until(10_000, 19_999) == (10_000, 0)
    assert every.latest_until(10_000, 55_000) == (50_000, 4)
    cron = Timing(cron="0 * * * *")
    first = ms(2026, 1, 1, 1, 0)
    assert cron.latest_until(first, first + 59 * 60_000) == (first, 0)
    assert cron.latest_until(first, ms(2026, 1, 1, 5, 30)) == (ms(2026, 1, 1, 5, 0), 4)


def test_more_missed_cron_times_than_are_counted_still_give_the_latest() -> None:
    t = Timing(cron="* * * * *")
    first = ms(2026, 1, 1, 0, 0)
    now = first + (MAX_COUNTED + 500) * 60_000 + 30_000
    latest, missed = t.latest_until(first, now)
    assert latest == now - 30_000
    assert missed == MAX_COUNTED


@pytest.mark.parametrize(
    ("timing", "field"),
    [
        (Timing(), "schedule.cron"),
        (Timing(cron="* * * * *", every_seconds=60), "schedule.cron"),
        (Timing(cron="61 * * * *"), "schedule.cron"),
        (Timing(cron="* * *"), "schedule.cron"),
        (Timing(cron="* * * * *\n"), "schedule.cron"),
        (Timing(cron="0 3 * * *", timezone="Mars/Olympus"), "schedule.timezone"),
        (Timing(cron="0 3 * * *", timezone="../../etc/passwd"), "schedule.timezone"),
        (Timing(every_seconds=0.5), "schedule.every"),
        (Timing(every_seconds=367 * 86400), "schedule.every"),
        (Timing(every_seconds=60, timezone="Europe/Berlin"), "schedule.timezone"),
        (Timing(every_seconds=60, at_ms=5), "schedule.cron"),
        (Timing(at_ms=1_000, anchor_ms=100_000), "schedule.at"),  # over a minute past
        (Timing(at_ms=200_000, anchor_ms=100_000, timezone="UTC"), "schedule.timezone"),
        (Timing(at_ms=200_000, anchor_ms=100_000, end_ms=300_000), "schedule.end_time"),
        (Timing(at_ms=200_000, anchor_ms=100_000, start_ms=300_000), "schedule.start_time"),
        (Timing(every_seconds=60, anchor_ms=100_000, end_ms=50_000), "schedule.end_time"),
        (
            Timing(every_seconds=60, anchor_ms=100, start_ms=500_000, end_ms=400_000),
            "schedule.end_time",
        ),
        (Timing(at_ms=200_000, anchor_ms=100_000, jitter_seconds=5), "schedule.jitter"),
        (Timing(every_seconds=60, jitter_seconds=60), "schedule.jitter"),  # not shorter
        (Timing(every_seconds=60, jitter_seconds=-1), "schedule.jitter"),
        (Timing(cron="0 2 * * *", jitter_seconds=86401), "schedule.jitter"),
        (Timing(cron="*/5 * * * *", jitter_seconds=300), "schedule.jitter"),  # not shorter
        (Timing(cron="0 9,10 * * *", jitter_seconds=3600), "schedule.jitter"),  # 9 to 10
    ],
)
def test_a_bad_timing_is_refused_naming_the_field(timing: Timing, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        timing.check()
    assert refused.value.field == field


def test_a_jitter_shorter_than_every_gap_of_a_cron_is_accepted() -> None:
    Timing(cron="*/5 * * * *", jitter_seconds=299).check()
    Timing(cron="0 9,10 * * *", jitter_seconds=3599).check()  # its shortest gap: 9 to 10
    Timing(cron="0 2 * * *", jitter_seconds=86399).check()  # under a day, for a daily time
    with pytest.raises(InvalidArgument) as refused:
        Timing(cron="*/5 * * * *", jitter_seconds=600).check()
    assert "shortest time between two of the cron's times (5 minutes), got 10 minutes" in (
        refused.value.message
    )


def test_a_one_off_has_its_one_time_and_none_after() -> None:
    t = Timing(at_ms=500_000, anchor_ms=100_000)
    t.check()
    assert t.first(100_000) == 500_000 and t.next_after(499_999) == 500_000
    assert t.next_after(500_000) == 0 and t.latest_until(500_000, 10**12) == (500_000, 0)
    just_passed = Timing(at_ms=90_000, anchor_ms=100_000)  # a client's "now", a moment late
    just_passed.check()
    assert just_passed.first(100_000) == 90_000  # due at once
    assert Timing(at_ms=ms(2026, 12, 24, 17)).describe() == "once, at 2026-12-24 17:00:00 UTC"


def test_timings_describe_themselves() -> None:
    assert Timing(every_seconds=300).describe() == "every 5 minutes"
    assert Timing(every_seconds=1).describe() == "every second"
    assert Timing(every_seconds=90).describe() == "every 90 seconds"
    assert Timing(every_seconds=86400).describe() == "every day"
    assert Timing(cron="0 2 * * *", timezone="Europe/Berlin").describe() == (
        "At 02:00 every day (Europe/Berlin)"
    )


def test_bounds_keep_the_times_between_them_and_after_the_end_there_are_none() -> None:
    cron = Timing(cron="0 * * * *", start_ms=ms(2026, 1, 1, 5, 0), end_ms=ms(2026, 1, 1, 8, 0))
    assert cron.first(ms(2026, 1, 1, 0, 10)) == ms(2026, 1, 1, 5, 0)  # the start itself
    assert cron.next_after(ms(2026, 1, 1, 5, 0)) == ms(2026, 1, 1, 6, 0)
    assert cron.next_after(ms(2026, 1, 1, 7, 0)) == ms(2026, 1, 1, 8, 0)  # the end too
    assert cron.next_after(ms(2026, 1, 1, 8, 0)) == 0  # then it is done
    # Times missed while no replica ran stop at the end.
    assert cron.latest_until(ms(2026, 1, 1, 6, 0), ms(2026, 1, 2, 0, 0)) == (ms(2026, 1, 1, 8), 2)
    # An interval keeps its phase from creation; the start only leaves out earlier times.
    every = Timing(every_seconds=60, anchor_ms=1_000, start_ms=200_000, end_ms=400_000)
    every.check()
    assert every.first(1_000) == 241_000
    assert every.next_after(361_000) == 0  # 421 s would pass the end
    assert every.latest_until(241_000, 10**9) == (361_000, 2)
    assert every.describe() == (
        "every minute, from 1970-01-01 00:03:20 UTC, until 1970-01-01 00:06:40 UTC"
    )


def test_a_backfill_range_gives_every_time_in_it_both_ends_included() -> None:
    cron = Timing(cron="0 2 * * *", timezone="Europe/Berlin")
    days = cron.times_between(ms(2026, 3, 27, 2, 0, tz=BERLIN), ms(2026, 3, 31, tz=BERLIN), 100)
    assert [datetime.fromtimestamp(t / 1000, BERLIN).day for t in days] == [27, 28, 29, 30]
    assert days[0] == ms(2026, 3, 27, 2, 0, tz=BERLIN)  # the start itself is a time
    # 2026-03-29 has no 02:00 in Berlin: cron runs it at the change, as it fires
    assert cron.times_between(ms(2026, 3, 27, 2, 0, 0, tz=BERLIN) + 1, days[1], 100) == [days[1]]
    assert len(cron.times_between(0, ms(2026, 1, 1), 7)) == 7  # at most ``most``
    # An interval's series runs back before its creation, in its phase.
    every = Timing(every_seconds=60, anchor_ms=1_000_000)
    assert every.times_between(820_000, 1_001_000, 100) == [
        820_000, 880_000, 940_000, 1_000_000
    ]  # fmt: skip
    assert every.times_between(880_001, 939_999, 100) == []
    # The schedule's own bounds still hold; a one-off gives its time when it is in range.
    bounded = Timing(every_seconds=60, anchor_ms=0, start_ms=120_000, end_ms=240_000)
    assert bounded.times_between(0, 10**9, 100) == [120_000, 180_000, 240_000]
    assert Timing(at_ms=5_000).times_between(0, 5_000, 100) == [5_000]
    assert Timing(at_ms=5_000).times_between(5_001, 9_000, 100) == []


def test_a_jitter_delays_each_time_by_its_own_offset_the_same_on_every_asking() -> None:
    """Up to the jitter, to the millisecond; a function of the schedule and the time (every
    replica, and a retried firing, start the run at the same moment); spread over the whole
    range, so schedules sharing a time start apart; none without a jitter."""
    t = Timing(cron="0 2 * * *", jitter_seconds=300)
    t.check()
    day = ms(2026, 12, 5, 2)
    delays = [t.delay_of(f"team-{i}/nightly", day) for i in range(1000)]
    assert all(0 <= d < 300 and d == round(d, 3) for d in delays)
    assert delays[7] == Timing(cron="0 2 * * *", jitter_seconds=300).delay_of("team-7/nightly", day)
    assert t.delay_of("team-7/nightly", day + 86_400_000) != delays[7]  # the next night: anew
    assert len(set(delays)) > 990  # not a few shared values
    assert 135 < sum(delays) / len(delays) < 165  # even over the range
    assert max(delays) > 290 and min(delays) < 10
    assert Timing(cron="0 2 * * *").delay_of("team-7/nightly", day) == 0.0
    assert Timing(every_seconds=600, jitter_seconds=300).describe() == (
        "every 10 minutes, each run up to 5 minutes late"
    )


def refused_field(timing: Timing) -> str | None:
    try:
        timing.check()
    except InvalidArgument as exc:
        return exc.field
    return None


def test_each_limit_is_a_time_or_value_allowed_and_the_next_one_past_it_is_not() -> None:
    now = 10_000_000
    grace = now - AT_PAST_GRACE_MS
    assert refused_field(Timing(at_ms=grace, anchor_ms=now)) is None
    assert refused_field(Timing(at_ms=grace - 1, anchor_ms=now)) == "schedule.at"
    for every in (MIN_EVERY_SECONDS, MAX_EVERY_SECONDS):
        assert refused_field(Timing(every_seconds=every)) is None
    assert refused_field(Timing(every_seconds=MAX_EVERY_SECONDS + 0.001)) == "schedule.every"
    # The end must be after now and after the start; one millisecond is enough.
    every = Timing(every_seconds=60.0, anchor_ms=now)
    assert refused_field(replace(every, end_ms=now)) == "schedule.end_time"
    assert refused_field(replace(every, end_ms=now + 1)) is None
    starts = replace(every, start_ms=now + 5_000)
    assert refused_field(replace(starts, end_ms=now + 5_000)) == "schedule.end_time"
    assert refused_field(replace(starts, end_ms=now + 5_001)) is None
    # A jitter is over 0 and at most a day (and shorter than the gaps: a weekly cron's are 7 days).
    weekly = "0 2 * * 1"
    assert refused_field(Timing(cron=weekly, jitter_seconds=MAX_JITTER_SECONDS)) is None
    assert refused_field(Timing(cron=weekly, jitter_seconds=0.001)) is None
    over = Timing(cron=weekly, jitter_seconds=MAX_JITTER_SECONDS + 0.001)
    assert refused_field(over) == "schedule.jitter"
    # A cron expression of the longest length allowed parses; one character more does not.
    longest = "0" + " " * (MAX_CRON_CHARS - 8) + "* * * *"
    assert len(longest) == MAX_CRON_CHARS and refused_field(Timing(cron=longest)) is None
    assert refused_field(Timing(cron=longest + " ")) == "schedule.cron"


def test_a_one_off_in_a_backfill_range_is_given_at_either_end() -> None:
    at = Timing(at_ms=5_000)
    assert at.times_between(5_000, 9_000, 10) == [5_000] == at.times_between(1_000, 5_000, 10)
    assert at.times_between(1_000, 4_999, 10) == []
