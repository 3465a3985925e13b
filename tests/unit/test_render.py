"""How the CLI shows a run's output (whole when small, cut when large) and its tables in a
terminal of 80 columns."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

from rich.console import Console

from clients.render import (
    SHOWN_OUTPUT_LINES,
    age,
    artifacts_table,
    batch_table,
    event_line,
    executors_table,
    keys_table,
    output_brief,
    queues_table,
    run_summary,
    runs_table,
    shown_output,
    tasks_table,
)
from clients.types import (
    ApiKeyInfo,
    ArtifactInfo,
    ExecutorInfo,
    QueueInfo,
    RunEventInfo,
    RunInfo,
    State,
    StepInfo,
    TaskInfo,
)


def test_a_small_output_is_shown_whole_however_many_lines_it_takes() -> None:
    output = {"descriptor": [0.125] * 128, "count": 1}  # a face's features: 133 lines
    assert shown_output(output) == json.dumps(output, indent=2)


def test_a_large_output_is_cut_and_says_how_to_get_all_of_it() -> None:
    output = {"values": list(range(10_000))}  # over SHOWN_OUTPUT_BYTES
    lines = shown_output(output).split("\n")  # {, "values": [, 10000 values, ], }
    assert len(lines) == SHOWN_OUTPUT_LINES + 1
    assert lines[-1].startswith(f"… {10_004 - SHOWN_OUTPUT_LINES} more lines")
    assert f"({len(json.dumps(output))} bytes as JSON)" in lines[-1]
    assert "--json" in lines[-1]


def printed(table: object, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_in_80_columns_run_and_executor_ids_are_whole_and_the_extra_columns_go() -> None:
    at = datetime(2026, 12, 3, 17, 6, 20, tzinfo=UTC)
    run = RunInfo(
        "000661bdc74ac2a1c1dea1bd365bf239", State.FAILED, "text_sentiment", "", {}, None,
        "step text_sentiment FAILED: input: $.text: 5 is not of type 'string'", 5,
        created_at=at, ended_at=at,
    )  # fmt: skip
    executor = ExecutorInfo(
        "executor-gpu-17", "CONNECTED", ["default"], 4, 0, {"gpu": "a100"}, "1.0", "3.11",
        at, at, "scheduler-replica-2",
    )  # fmt: skip
    narrow = printed(runs_table([run], 80, now=at + timedelta(hours=3, minutes=5)), 80)
    assert run.run_id in narrow and " 3h " in narrow and "took" not in narrow  # its age
    assert "2026-12-03 17:06:20" in printed(runs_table([run], 160), 160)
    narrow = printed(executors_table([executor], 80), 80)
    assert "executor-gpu-17" in narrow and "CONNECTED" in narrow
    assert "scheduler" not in narrow and "labels" not in narrow
    wide = printed(executors_table([dataclasses.replace(executor, disk_bytes=3 * 2**29)], 160), 160)
    assert "scheduler-replica-2" in wide and "gpu=a100" in wide and "1.5 GiB" in wide
    assert "?" in wide  # an executor too old to say how it confines task code
    limited = dataclasses.replace(executor, sandbox="limits")
    assert "limits only" in printed(executors_table([limited], 160), 160)
    assert all(len(line) <= 80 for line in narrow.splitlines())
    now = datetime.now(UTC).replace(tzinfo=None)
    resting = dataclasses.replace(executor, resting_until=now + timedelta(seconds=42))
    assert re.search(r"RESTING 4[12]s", printed(executors_table([resting], 160), 160))
    narrow = printed(executors_table([resting], 80), 80)
    assert "RESTING" in narrow and "CONNECTED" not in narrow
    assert all(len(line) <= 80 for line in narrow.splitlines())
    over = dataclasses.replace(executor, resting_until=now - timedelta(seconds=1))
    assert "RESTING" not in printed(executors_table([over], 160), 160)


def test_in_80_columns_task_ids_and_a_batchs_run_ids_are_whole() -> None:
    tags = ["audio", "speech", "example", "batching"]
    task = TaskInfo("speech_activity", "1.0.0", "Speech", "", "audio", tags, "q", "a" * 64, 1, {})
    assert "speech_activity" in printed(tasks_table([task], 80), 80)
    assert "aaaaaaaaaaaa" not in printed(tasks_table([task], 80), 80)  # the tags have its room
    assert "aaaaaaaaaaaa" in printed(tasks_table([task], 160), 160)
    row = {
        "image": "photos/group_of_five_people.jpg",
        "state": "COMPLETED",
        "counts": {"face_count": 5},
        "wall_ms": 246,
        "run_id": "000661bdc74ac2a1c1dea1bd365bf239",
        "error": "",
    }
    assert row["run_id"] in printed(batch_table("b-1", [row]), 80)
    line = {**{k: v for k, v in row.items() if k not in ("image", "counts")}, "input": "line 3"}
    line["output"] = {"sentiment": "positive", "score": 1.5, "words": ["a", "b"], "ok": True}
    shown = printed(batch_table("b-2", [line], "input", 160), 160)
    assert "line 3" in shown and "sentiment=positive score=1.5 ok=True" in shown
    assert "words" not in shown  # a list is not a few words
    assert output_brief({"text": "x" * 100}).endswith("…") and output_brief([1]) == ""


def test_in_80_columns_an_artifacts_digest_is_whole() -> None:
    at = datetime(2026, 12, 4, 21, 12, 26, tzinfo=UTC)
    artifact = ArtifactInfo("5891b5b5" * 8, "team-a", 123_456, at)
    narrow = printed(artifacts_table([artifact], 80), 80)
    assert artifact.digest in narrow and "123,456" in narrow and "team-a" not in narrow
    wide = printed(artifacts_table([artifact], 160), 160)
    assert "team-a" in wide and "2026-12-04 21:12:26" in wide and artifact.digest in wide


def test_in_80_columns_a_schedules_id_and_next_time_are_whole_and_its_panel_says_why_not() -> None:
    from clients.cli.schedules import schedule_panel, schedules_table
    from clients.schedules import ScheduleInfo

    s = ScheduleInfo(
        schedule_id="nightly-face-refresh",
        namespace="team-a",
        description="At 02:30 every day (Europe/Berlin)",
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        every_seconds=0.0,
        task="face_detection",
        pipeline="",
        input={"image_path": "artifact://sha256/" + "a" * 64 + "/p.jpg"},
        priority=0,
        overlap="skip",
        paused=False,
        next_run_at=datetime(2026, 12, 5, 1, 30, tzinfo=UTC),
        last_run_at=datetime(2026, 12, 4, 1, 30, tzinfo=UTC),
        last_run_id="0" * 32,
        runs_started=3,
        times_skipped=1,
        last_error="task: face_detection@1.0.0 is deprecated",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        created_by="k" * 16,
    )
    narrow = printed(schedules_table([s], width=80), 80)
    assert "nightly-face-refresh" in narrow and "12-05 01:30" in narrow
    assert "0" * 32 not in narrow  # the last run: in a wide console, and in the panel
    wide = printed(schedules_table([s], width=160), 160)
    assert "0" * 32 in wide and "2026-12-05 01:30:00" in wide and "face_detection" in wide
    other = dataclasses.replace(s, namespace="team-b", schedule_id="hourly")
    both = printed(schedules_table([s, other], width=80), 80)  # listed with -n '*'
    assert "team-a/nightly-face-refresh" in both and "team-b/hourly" in both
    panel = schedule_panel(s)
    assert "last run " + "0" * 32 in panel and "is deprecated" in panel
    assert "next 2026-12-05 01:30:00 UTC" in panel and "by key " + "k" * 16 in panel


def test_a_tasks_panel_says_its_rate_limit_when_it_has_one() -> None:
    from clients.render import task_panel

    manifest = {"rate_limit": "10/s", "timeout": 30}
    task = TaskInfo("api_call", "1.0.0", "API", "", "nlp", [], "q", "a" * 64, 1, manifest)
    assert "rate limit 10/s (in each namespace, over every executor)" in task_panel(task)
    plain = dataclasses.replace(task, manifest={"timeout": 30})
    assert "rate limit" not in task_panel(plain)
    bursty = dataclasses.replace(task, manifest={"rate_limit": "60/m", "rate_burst": 10})
    assert "rate limit 60/m, bursts of 10 (in each namespace" in task_panel(bursty)
    few = dataclasses.replace(task, manifest={"concurrency_limit": 3})
    assert "at most 3 running at once (in each namespace, over every executor)" in task_panel(few)
    assert "running at once" not in task_panel(plain)
    keyed = dataclasses.replace(task, manifest={"concurrency_limit": 1, "concurrency_key": "doc"})
    assert "at most 1 running at once per value of doc (in each" in task_panel(keyed)
    newest = dataclasses.replace(
        task, manifest={"concurrency_limit": 1, "concurrency_strategy": "cancel_newest"}
    )
    assert "over every executor); when full: cancel_newest" in task_panel(newest)


def test_a_run_waiting_for_its_start_time_says_when_it_starts_in_the_list() -> None:
    """A run submitted with a delay is QUEUED until then; the list said only that, which
    reads as stuck."""
    at = datetime(2026, 12, 3, 17, 6, 20, tzinfo=UTC)
    later = RunInfo(
        "000661bdc74ac2a1c1dea1bd365bf240", State.QUEUED, "text_sentiment", "", {}, None, "", 5,
        created_at=at, scheduled_at=at + timedelta(minutes=10),
    )  # fmt: skip
    assert "starts 12-03 17:16" in printed(runs_table([later], 160), 160)
    begun = dataclasses.replace(later, state=State.RUNNING, started_at=at)
    assert "starts" not in printed(runs_table([begun], 160), 160)


def test_an_empty_listing_says_so_under_its_headings() -> None:
    """Headings over nothing read as a listing that failed halfway; each says what it found."""
    assert "No runs match." in printed(runs_table([], 160), 160)
    assert "No executor has connected." in printed(executors_table([], 160), 160)
    at = datetime(2026, 12, 3, 17, 6, 20, tzinfo=UTC)
    run = RunInfo(
        "000661bdc74ac2a1c1dea1bd365bf241", State.COMPLETED, "text_sentiment", "", {}, None, "", 5,
        created_at=at,
    )  # fmt: skip
    assert "No runs match." not in printed(runs_table([run], 160), 160)


def test_a_task_run_is_listed_with_its_version_and_an_older_record_without() -> None:
    run = RunInfo("r" * 32, State.COMPLETED, "word_count", "", {}, None, "", 5)
    versioned = dataclasses.replace(run, task_version="1.2.0")
    assert "word_count@1.2.0" in printed(runs_table([versioned], 160), 160)
    assert "word_count@" not in printed(runs_table([run], 160), 160)  # recorded before
    piped = dataclasses.replace(run, task_id="", pipeline_id="face", pipeline_version="2.0.0")
    assert "face@2.0.0" in printed(runs_table([piped], 160), 160)


def test_in_80_columns_a_run_is_a_line_with_its_version_and_its_error_under_its_id() -> None:
    """The error's column and the creation time left the task's name and version a column
    six wide, folded over four lines; and the error folded a word a line beside it."""
    done = RunInfo("r" * 32, State.COMPLETED, "text_sentiment", "", {}, None, "", 5)
    at = datetime(2026, 12, 6, 23, 57, tzinfo=UTC)
    done = dataclasses.replace(done, task_version="1.0.0", created_at=at, ended_at=at)
    failed = dataclasses.replace(
        done,
        run_id="f" * 32,
        state=State.FAILED,
        error="step text_sentiment FAILED: FatalError: image: cannot read '/x.jpg'",
    )
    now = at + timedelta(seconds=42)
    narrow = printed(runs_table([done, failed], 80, now=now), 80)
    assert "error" not in narrow.split("\n")[2]  # no column of its own
    rows = [line for line in narrow.splitlines() if line.startswith("│")]
    assert len(rows) == 3  # one line a run, and the failed one's error under its id
    assert "text_sentiment@1.0.0" in rows[0] and " 42s " in rows[0]
    assert "f" * 32 in rows[1] and "text_sentiment@1.0.0" in rows[1]
    assert "step text_sentiment FAILED: Fat…" in rows[2]
    assert all(len(line) <= 80 for line in narrow.splitlines())
    piped = dataclasses.replace(failed, task_id="", pipeline_id="face_processing_pipeline")
    piped = dataclasses.replace(piped, pipeline_version="1.0.0")
    narrow = printed(runs_table([piped], 80, now=now), 80)
    assert "f" * 32 in narrow and "step text_sentiment FAILED: Fat…" in narrow  # whole, cut
    assert all(len(line) <= 80 for line in narrow.splitlines())
    wide = printed(runs_table([done, failed], 160, now=now), 160)
    assert "error" in wide.split("\n")[2] and "FAILED: FatalError: image: can" in wide
    assert len([line for line in wide.splitlines() if line.startswith("│")]) == 2
    assert "error" not in printed(runs_table([done], 160, now=now), 160).split("\n")[2]
    # 120 columns leave an error's column too little room: it goes under the id there too
    middle = printed(runs_table([piped, done], 120, now=now), 120)
    rows = [line for line in middle.splitlines() if line.startswith("│")]
    assert len(rows) == 3 and "face_processing_pipeline@1.0.0" in rows[0]
    assert "step text_sentiment FAILED: Fat…" in rows[1] and "2026-12-06 23:57:00" in rows[0]


def test_a_runs_age_is_in_its_largest_unit() -> None:
    at = datetime(2026, 12, 6, 23, 57, tzinfo=UTC)
    ages = [age(at, at + timedelta(seconds=s)) for s in (0, 59, 60, 3599, 3600, 86400 * 3)]
    assert ages == ["0s", "59s", "1m", "59m", "1h", "3d"]
    assert age(at.replace(tzinfo=None), at + timedelta(minutes=5)) == "5m"  # naive: UTC
    assert age(at, at - timedelta(seconds=3)) == "0s"  # a clock behind the server's


def test_in_80_columns_a_batch_is_a_line_a_run_with_its_id_whole_and_its_error_in_brief() -> None:
    """Each output's words stood a line each in a column of five, and the error column
    took its own five."""
    done = {
        "input": "line 12", "state": "COMPLETED", "wall_ms": 9, "error": "",
        "run_id": "000661ffe5d78be299e26622a0b1c2d3",
        "output": {"sentiment": "positive", "score": 1.5, "confidence": 0.286, "words": 7},
    }  # fmt: skip
    failed = {**done, "state": "FAILED", "output": None, "error": "step t FAILED: no text"}
    shown = printed(batch_table("b-3", [done, failed], "input", 80), 80)
    rows = [line for line in shown.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and all(done["run_id"] in row for row in rows)
    assert "line 12" in rows[0] and "sentiment=positive" in rows[0]
    assert "step t FAILED" in rows[1] and "output / error" in shown
    assert all(len(line) <= 80 for line in shown.splitlines())


def test_the_queues_title_counts_one_step_held_back_as_one() -> None:
    queues = [QueueInfo("default", "default", 0, 0.0, 1, 2)]
    assert "(1 step held back: retries" in printed(queues_table(queues, 1), 160)
    assert "(3 steps held back" in printed(queues_table(queues, 3), 160)


def test_a_runs_summary_says_when_it_was_made_where_with_which_labels_on_what_input() -> None:
    """`wtm run get` named neither the input nor the labels (a schedule's run said nothing
    of its schedule)."""
    at = datetime(2026, 12, 7, 0, 1, 16, tzinfo=UTC)
    run = RunInfo(
        "r" * 32, State.COMPLETED, "text_sentiment", "", {"text": "[y]" * 100}, None, "", 5,
        created_at=at, namespace="nlp", labels={"wtm.schedule": "often", "team": "nlp"},
        batch_id="batch-1",
    )  # fmt: skip
    lines = printed(run_summary(run), 400).split("\n")
    assert lines[1].rstrip() == (
        "  created 2026-12-07 00:01:16 UTC · priority 5 · namespace nlp · batch batch-1"
    )
    assert lines[2].rstrip() == "  labels team=nlp, wtm.schedule=often"
    said = lines[3].rstrip()
    assert said.startswith('  input {"text": "[y][y]') and said.endswith("…")  # markup escaped
    assert len(said) == len("  input ") + 200  # cut: --json has it whole


def test_a_step_that_has_not_started_says_so_instead_of_attempt_0() -> None:
    at = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    queued = RunEventInfo("1-0", "r", "detect", 0, State.QUEUED, "", at)
    assert "step detect " in event_line(queued) and "attempt" not in event_line(queued)
    running = dataclasses.replace(queued, attempt=2, state=State.RUNNING)
    assert "step detect (attempt 2)" in event_line(running)
    waiting = StepInfo("merge", "face_merge", "1.2.0", State.PENDING, 0, None, "", "", None, None)
    ran = StepInfo("detect", "face_detection", "2.0.0", State.COMPLETED, 1, {}, "", "ex-1", at, at)
    run = RunInfo("r" * 32, State.RUNNING, "", "face", {}, None, "", 5, steps=[ran, waiting])
    shown = printed(run_summary(run), 200)
    assert "step merge (face_merge@1.2.0) PENDING not started" in shown
    assert "step detect (face_detection@2.0.0) COMPLETED attempt 1 on ex-1" in shown


def test_in_80_columns_a_keys_id_is_whole_and_an_empty_list_says_where_it_looked() -> None:
    """The ids `wtm auth revoke` takes were cut to eight characters, the dates folded."""
    at = datetime(2026, 12, 7, 1, 56, tzinfo=UTC)
    key = ApiKeyInfo("7af885eb7c9d3ae7", "local executor", "executor", "*", at, None, None, "me")
    narrow = printed(keys_table([key], 80), 80)
    assert "7af885eb7c9d3ae7" in narrow and "12-07 01:56" in narrow and "never" in narrow
    assert "revoked" not in narrow and all(len(line) <= 80 for line in narrow.splitlines())
    gone = dataclasses.replace(key, key_id="0123456789abcdef", revoked_at=at)
    assert "revoked" in printed(keys_table([key, gone], 80), 80)
    assert "2026-12-07 01:56" in printed(keys_table([key], 160), 160)
    assert "-n '*'" in printed(keys_table([], 80), 80)
    assert "-n '*'" not in printed(keys_table([], 80, everywhere=True), 80)


def test_a_tasks_panel_says_its_own_retry_backoff_when_it_has_one() -> None:
    from clients.render import task_panel

    task = TaskInfo("api_call", "1.0.0", "API", "", "nlp", [], "q", "a" * 64, 1, {"timeout": 30})
    assert "backoff" not in task_panel(task)  # the scheduler's policy
    own = dataclasses.replace(task, manifest={"retry_backoff": 5})
    assert "retries wait 5s doubling to 600s (its own backoff)" in task_panel(own)
