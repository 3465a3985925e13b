"""A finished run's events told again from its history, once Redis has let its live events
go: a watch of a run two minutes old (the dashboard's Events panel, `wtm run watch`) gave
one line, the run's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.scheduler.models import Run, StepRun
from services.scheduler.run_events import FROM_HISTORY, event_cursor, history_events

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def detect(
    state: str, attempt: int, error: str, executor: str, queued: int, started: int, ended: int
) -> StepRun:
    """An attempt of the face pipeline's first step, its moments in ms from T0."""
    return StepRun(
        "detect", "face_detection", "2.0.0", state, attempt, error=error, executor_id=executor,
        queued_at=at(queued), started_at=at(started), ended_at=at(ended),
    )  # fmt: skip


def failed_pipeline() -> tuple[Run, list[StepRun]]:
    """detect ran twice (its first attempt failed and was retried) and then failed for good;
    the step after it never ran, and was cancelled with the run."""
    first = detect("FAILED", 1, "OSError: busy", "executor-1", 0, 2, 9)
    second = detect("FAILED", 2, "FatalError: no file", "executor-2", 509, 510, 515)
    late = StepRun(
        "detect",
        "face_detection",
        "2.0.0",
        "COMPLETED",
        1,
        superseded=True,
        started_at=at(2),
        ended_at=at(900),
    )
    never = StepRun("merge", "face_merge", "1.2.0", "CANCELLED", 0, error="run FAILED")
    run = Run(
        "r1",
        "FAILED",
        "{}",
        5,
        pipeline_id="faces",
        error="step detect FAILED: ...",
        steps=[second, never],
        created_at=at(0),
        started_at=at(2),
        ended_at=at(515),
    )
    cancelled = StepRun(
        "merge", "face_merge", "1.2.0", "CANCELLED", 0, error="run FAILED", ended_at=at(515)
    )
    return run, [cancelled, first, late, second]  # by attempt, as the history lists them


def test_a_finished_runs_life_is_told_in_order_from_its_records() -> None:
    run, attempts = failed_pipeline()
    told = [
        (e.step_id, e.attempt, e.state, e.kind, e.message) for e in history_events(run, attempts)
    ]
    assert told == [
        ("", 0, "QUEUED", "STATE", FROM_HISTORY),
        ("detect", 0, "QUEUED", "STATE", ""),
        ("", 0, "RUNNING", "STATE", ""),
        ("detect", 1, "RUNNING", "STATE", "executor-1"),
        ("detect", 1, "QUEUED", "RETRYING", "retrying after: OSError: busy"),
        ("detect", 2, "RUNNING", "STATE", "executor-2"),
        ("detect", 2, "FAILED", "STATE", "FatalError: no file"),
        ("merge", 0, "CANCELLED", "STATE", "run FAILED"),
        ("", 0, "FAILED", "STATE", "step detect FAILED: ..."),
    ]  # the superseded attempt's late result did not count, and is not told
    assert history_events(run, attempts)[-1].ends_run


def test_a_watch_resumed_from_a_told_event_goes_on_after_it() -> None:
    run, attempts = failed_pipeline()
    events = history_events(run, attempts)
    ids = [e.event_id for e in events]
    assert len(set(ids)) == len(ids) and ids[0] == f"{int(T0.timestamp() * 1000)}-0"
    rest = history_events(run, attempts, event_cursor(ids[3]))
    assert [e.event_id for e in rest] == ids[4:]
    assert history_events(run, attempts, event_cursor(ids[-1])) == []


def test_a_cached_step_and_a_run_without_attempt_records() -> None:
    hit = StepRun(
        "s",
        "t",
        "1.0.0",
        "COMPLETED",
        1,
        cached_from="r0/output_001",
        queued_at=at(0),
        ended_at=at(1),
    )
    run = Run(
        "r2", "COMPLETED", "{}", 5, task_id="t", steps=[hit], created_at=at(0), ended_at=at(1)
    )
    told = [(e.step_id, e.state, e.message) for e in history_events(run, [hit])]
    assert ("s", "COMPLETED", "cached from r0/output_001") in told
    assert told[-1] == ("", "COMPLETED", "")
    # Its record not written yet (the history is written behind): the step as the run has it.
    told = [(e.step_id, e.state) for e in history_events(run, [])]
    assert told == [("", "QUEUED"), ("s", "COMPLETED"), ("", "COMPLETED")]


def test_a_skipped_step_is_told_skipped_when_its_run_was_submitted() -> None:
    """A step its skip_if skipped has a record of attempt 0 (written at the run's end): it is
    told SKIPPED, with its condition, at the moment the run was submitted."""
    skipped = StepRun(
        "faces", "face_attribute", "2.0.1", "SKIPPED", 0, error="skip_if $.fast == true",
        ended_at=at(0),
    )  # fmt: skip
    ran = StepRun(
        "detect", "face_detection", "2.0.0", "COMPLETED", 1, executor_id="executor-1",
        queued_at=at(0), started_at=at(3), ended_at=at(8),
    )  # fmt: skip
    run = Run(
        "r2", "COMPLETED", "{}", 5, pipeline_id="faces", steps=[ran, skipped],
        created_at=at(0), started_at=at(3), ended_at=at(8),
    )  # fmt: skip
    told = [(e.step_id, e.state, e.message) for e in history_events(run, [skipped, ran])]
    assert ("faces", "SKIPPED", "skip_if $.fast == true") in told
    assert told.index(("faces", "SKIPPED", "skip_if $.fast == true")) < told.index(
        ("detect", "RUNNING", "executor-1")
    )
