"""clients/health.py: what a service's dependency report becomes in ``wtm health``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clients.health import FAIL, OK, WARN, assess_fleet, assess_schedules, assess_service
from clients.schedules import ScheduleInfo
from clients.types import (
    DependencyInfo,
    ExecutorInfo,
    ExecutorPauseInfo,
    QueueInfo,
    QueuePauseInfo,
)


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


def test_a_schedule_that_could_not_start_its_run_warns_saying_why() -> None:
    def schedule(schedule_id: str, last_error: str, paused: bool = False) -> ScheduleInfo:
        return ScheduleInfo(
            schedule_id, "team-a", "every hour", "", "", 3600.0, "tick", "", {}, 0, "skip",
            paused, None, None, "", 0, 0, last_error, None, "",
        )  # fmt: skip

    checks = assess_schedules(
        [
            schedule("fine", ""),
            schedule("stuck", "task: tick@1.0.0 is deprecated"),
            schedule("paused-one", "task: gone", paused=True),  # paused on purpose: no alarm
        ]
    )
    assert [(c.component, c.status) for c in checks] == [("schedule stuck", WARN)]
    assert "tick@1.0.0 is deprecated" in checks[0].detail


def test_a_paused_queue_warns_with_who_why_and_how_to_resume_not_as_stranded() -> None:
    pause = QueuePauseInfo("team-a/vision", "team-a", "new model", "k1", None)
    paused = QueueInfo("team-a/vision", "team-a", 3, 40.0, 0, 0, pause)
    stranded = QueueInfo("ocr", "default", 2, 5.0, 0, 0)
    checks = {c.component: c for c in assess_fleet([], ([paused, stranded], 0))}
    held = checks["queue team-a/vision"]
    assert held.status == WARN and held.detail == (
        "paused by k1 (new model): 3 step(s) wait until `wtm queue resume team-a/vision`"
    )
    assert "no connected executor" in checks["queue ocr"].detail


def test_a_paused_executor_warns_with_who_why_and_how_to_resume() -> None:
    pause = ExecutorPauseInfo("gpu-3", "driver update", "k2", None)
    paused = ExecutorInfo(
        "gpu-3", "CONNECTED", ["vision"], 2, 0, {}, "", "", None, None, "", pause=pause
    )
    checks = {c.component: c for c in assess_fleet([paused], ([], 0))}
    assert checks["executors"].status == OK  # connected: it still counts
    assert checks["executor gpu-3"].status == WARN and checks["executor gpu-3"].detail == (
        "paused by k2 (driver update): given no new step until `wtm executor resume gpu-3`"
    )


def test_a_resting_executor_warns_until_when_and_why_and_one_rested_only_of_its_errors() -> None:
    now = datetime.now(UTC).replace(tzinfo=None)

    def executor(resting_until: datetime | None, state: str = "CONNECTED") -> ExecutorInfo:
        return ExecutorInfo(
            "cpu-1", state, ["default"], 2, 0, {}, "", "", None, None, "", slot_errors=3,
            last_slot_error="executor error: OSError: No space left on device",
            resting_until=resting_until,
        )  # fmt: skip

    until = now + timedelta(seconds=30)
    line = {c.component: c for c in assess_fleet([executor(until)], ([], 0))}["executor cpu-1"]
    assert line.status == WARN and line.detail.startswith(f"resting until {until:%H:%M:%S} UTC")
    assert "No space left on device" in line.detail
    assert line.detail.endswith("`wtm executor resume cpu-1` ends it")
    over = assess_fleet([executor(now - timedelta(seconds=1))], ([], 0))  # the rest is over
    line = {c.component: c for c in over}["executor cpu-1"]
    assert line.detail.startswith("3 step(s) failed in the executor itself")
    assert not executor(until, state="LOST").resting()
