"""Pipeline runs: DAG order, input mapping, lineage, summaries, failures and retries."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pymongo
import pytest

from clients.sdk import ApiError, Client, RunInfo, StepInfo
from services.localstack import Cluster
from tests.conftest import EXAMPLES, ROOT, keyed_channel, run_cli
from tests.waiting import eventually
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    for d in sorted((FIXTURES / "tasks").iterdir()):
        client.register_task(d)
    client.register_task(EXAMPLES / "text_sentiment")
    client.register_pipelines(FIXTURES / "pipelines" / "seed_style.json")


def pipeline(client: Client, pipeline_id: str, steps: list[dict[str, Any]], **extra: Any) -> str:
    client.register_pipelines({"pipeline_id": pipeline_id, "steps": steps, **extra})
    return pipeline_id


def run(client: Client, pipeline_id: str, doc: dict[str, Any]) -> RunInfo:
    return client.wait(client.submit(pipeline=pipeline_id, input=doc).run_id, timeout=60)


def test_a_dag_runs_in_order_with_mapped_inputs_and_a_merged_output(client: Client) -> None:
    done = run(client, "text_pipeline", {"text": "what a wonderful day"})
    assert done.state == "COMPLETED", done.error
    assert done.output == {"echo": {"sentiment": "positive", "words": 4}}
    steps = {s.step_id: s for s in done.steps}
    assert steps["echo_words"].output == {"echo": {"n": 4, "first": "what"}}
    first_end = steps["word_count"].ended_at
    assert all(steps[s].started_at >= first_end for s in ("text_sentiment", "echo_words"))
    assert steps["merge"].started_at >= max(
        steps["text_sentiment"].ended_at, steps["echo_words"].ended_at
    )


def test_every_mapped_field_is_a_lineage_edge(client: Client) -> None:
    done = run(client, "text_pipeline", {"text": "fine"})
    assert done.lineage == [
        ("run_input_text_string", "input_001_text_string"),
        ("run_input_text_string", "input_002_text_string"),
        ("output_001_count_number", "input_003_n_number"),
        ("output_001_words[0]_string", "input_003_first_string"),  # the path it came from
        ("output_002_sentiment_string", "input_004_sentiment_string"),
        ("output_003_echo.n_number", "input_004_words_number"),
    ]


def test_the_summary_accounts_for_every_step(client: Client) -> None:
    done = run(client, "text_pipeline", {"text": "fine"})
    summary = done.processing_summary
    assert summary is not None
    assert [t["step_id"] for t in summary["steps"]] == [
        "word_count",
        "text_sentiment",
        "echo_words",
        "merge",
    ]
    assert summary["step_seconds_sum"] == pytest.approx(
        sum(t["run_seconds"] for t in summary["steps"]), abs=1e-5
    )
    assert summary["step_seconds_sum"] > 0 and summary["wall_seconds"] > 0
    assert summary["parallel_speedup"] > 0


def test_the_finished_pipeline_run_is_recorded_with_its_lineage(
    cluster: Cluster, client: Client
) -> None:
    done = run(client, "text_pipeline", {"text": "fine"})
    assert cluster.endpoints is not None
    with pymongo.MongoClient(cluster.endpoints.mongodb_uri) as mongo:
        deadline = time.monotonic() + 10
        doc = None
        while time.monotonic() < deadline and not doc:
            doc = mongo.wtm.runs.find_one({"run_id": done.run_id, "state": "COMPLETED"})
            time.sleep(0.05)
        assert doc is not None
        assert [tuple(e) for e in doc["lineage"]] == done.lineage
        assert doc["pipeline_id"] == "text_pipeline"
        assert mongo.wtm.step_runs.count_documents({"run_id": done.run_id}) == 4


def test_a_missing_required_field_is_refused_naming_it(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(pipeline="text_pipeline", input={"lang": "en"})
    assert (err.value.code, err.value.message.split(":")[0]) == (
        "INVALID_ARGUMENT",
        "input_json.text",
    )


def test_an_unsupported_file_format_is_refused(client: Client) -> None:
    pipeline(
        client,
        "images_only",
        [{"task_id": "echo", "input_mapping": {"image_path": "$.image_path"}}],
        input_validation={"required_fields": ["image_path"], "supported_formats": ["jpg", "png"]},
    )
    with pytest.raises(ApiError) as err:
        client.submit(pipeline="images_only", input={"image_path": "cat.gif"})
    assert (
        err.value.message.startswith("input_json.image_path:") and "'cat.gif'" in err.value.message
    )
    assert run(client, "images_only", {"image_path": "cat.PNG"}).state == "COMPLETED"


def test_the_first_steps_input_schema_is_checked_before_queueing(client: Client) -> None:
    pipeline(client, "fussy_first", [{"task_id": "fussy", "input_mapping": {"value": "$.v"}}])
    with pytest.raises(ApiError) as err:
        client.submit(pipeline="fussy_first", input={"v": "ten"})
    assert "$.value: 'ten' is not of type 'number'" in err.value.message


def test_a_fatal_error_fails_the_run_without_retries(client: Client) -> None:
    pipeline(client, "fussy_first", [{"task_id": "fussy", "input_mapping": {"value": "$.v"}}])
    done = run(client, "fussy_first", {"v": -1})
    assert done.state == "FAILED"
    assert (done.steps[0].state, done.steps[0].attempt) == ("FAILED", 1)
    assert "value must be positive" in done.error


def test_a_mapping_that_finds_nothing_fails_the_step(client: Client) -> None:
    pipeline(
        client,
        "dangling",
        [
            {"step_id": "first", "task_id": "echo"},
            {
                "step_id": "second",
                "task_id": "echo",
                "depends_on": ["first"],
                "input_mapping": {"x": "$.first.echo.nothing_here"},
            },
        ],
    )
    done = run(client, "dangling", {"a": 1})
    assert done.state == "FAILED"
    second = {s.step_id: s for s in done.steps}["second"]
    assert (
        second.state == "FAILED"
        and "input_mapping" in second.error
        and "nothing_here" in second.error
    )


def test_a_failed_step_cancels_what_can_no_longer_run(client: Client) -> None:
    pipeline(
        client,
        "doomed",
        [
            {"step_id": "bad", "task_id": "fussy", "input_mapping": {"value": "$.v"}},
            {"step_id": "slow", "task_id": "sleeper", "input_mapping": {"seconds": "$.s"}},
            {"step_id": "after", "task_id": "echo", "depends_on": ["bad", "slow"]},
        ],
    )
    done = run(client, "doomed", {"v": -1, "s": 5})
    states = {s.step_id: s.state for s in done.steps}
    assert done.state == "FAILED"
    assert states == {"bad": "FAILED", "slow": "CANCELLED", "after": "CANCELLED"}
    wall = (done.ended_at - done.created_at).total_seconds()
    assert wall < 4  # the 5 s sleeper did not hold the run up


def test_a_retryable_failure_is_retried_after_backoff(client: Client, shared_tmp: Path) -> None:
    marker = shared_tmp / "flaky-marker"  # a place the sandboxed task may write
    r = client.submit(task="flaky", input={"marker": str(marker)})
    events = list(client.watch(r.run_id, timeout=60))
    done = client.get_run(r.run_id)
    assert done.state == "COMPLETED" and done.steps[0].attempt == 2
    retrying = [e for e in events if e.kind == "RETRYING"]
    assert len(retrying) == 1 and "first attempt fails on purpose" in retrying[0].message
    failed_at = retrying[0].time
    second_start = next(e.time for e in events if e.state == "RUNNING" and e.attempt == 2)
    assert (second_start - failed_at).total_seconds() >= 0.45  # backoff: 0.5–1 s


def retry_delay(client: Client, marker: Path, **submit: str) -> float:
    """Seconds from a flaky run's first failure (``marker`` not there yet) to its retry's
    start; the run completed."""
    run_id = client.submit(input={"marker": str(marker)}, **submit).run_id
    events = list(client.watch(run_id, timeout=60))
    assert client.get_run(run_id).state == "COMPLETED"
    failed_at = next(e.time for e in events if e.kind == "RETRYING")
    second_start = next(e.time for e in events if e.state == "RUNNING" and e.attempt == 2)
    return (second_start - failed_at).total_seconds()


def test_a_task_with_its_own_backoff_retries_after_it(
    client: Client, shared_tmp: Path, tmp_path: Path
) -> None:
    """task.json's retry_backoff (Celery's name): 3 s before the first retry, so the retry
    starts 1.5-3 s after the failure, where the scheduler's own policy waits 0.5-1 s."""
    package = tmp_path / "flaky_slow"
    shutil.copytree(FIXTURES / "tasks" / "flaky", package)
    manifest = json.loads((package / "task.json").read_text())
    manifest.update(task_id="flaky_slow", retry_backoff=3, retry_backoff_max=30)
    (package / "task.json").write_text(json.dumps(manifest))
    assert client.register_task(package).manifest["retry_backoff"] == 3
    assert 1.45 <= retry_delay(client, shared_tmp / "flaky-slow-marker", task="flaky_slow") <= 4.5


def test_a_pipeline_step_with_its_own_backoff_retries_after_it(
    client: Client, shared_tmp: Path
) -> None:
    """A step's retry_backoff in the pipeline's config, over its task's (flaky has none):
    3 s before the first retry, so it starts 1.5-3 s after the failure."""
    steps = [
        {
            "task_id": "flaky", "retry_count": 1, "retry_backoff": 3, "retry_backoff_max": 30,
            "input_mapping": {"marker": "$.marker"},
        }
    ]  # fmt: skip
    pipeline(client, "flaky_step_backoff", steps)
    assert client.get_pipeline("flaky_step_backoff").steps[0].retry_backoff == (3.0, 30.0)
    marker = shared_tmp / "flaky-step-backoff-marker"
    assert 1.45 <= retry_delay(client, marker, pipeline="flaky_step_backoff") <= 4.5


def completed(
    client: Client, pipeline_id: str, doc: dict[str, Any], states: str
) -> tuple[RunInfo, dict[str, StepInfo]]:
    """A run of ``pipeline_id`` that completed, its steps (a, b, c, d) COMPLETED or SKIPPED as
    ``states`` says, letter by letter; and its steps by id."""
    done = run(client, pipeline_id, doc)
    assert done.state == "COMPLETED", done.error
    by_id = {s.step_id: s for s in done.steps}
    said = {"C": "COMPLETED", "S": "SKIPPED"}
    assert {k: s.state for k, s in by_id.items()} == {
        k: said[x] for k, x in zip("abcd", states, strict=True)
    }
    return done, by_id


def test_a_step_whose_skip_if_holds_is_skipped_and_the_run_goes_on_without_it(
    client: Client, cluster: Cluster
) -> None:
    """a -> b (skipped when $.fast) -> c, and a -> d (skipped too), c and d the sinks. With
    fast: b and d are SKIPPED, with the condition as their error and an event each; c runs
    after a with b's field left out of its input; the run's output is c's alone. Without:
    every step runs."""
    fast = {"path": "$.fast", "op": "==", "value": True}
    steps = [
        {"step_id": "a", "task_id": "echo", "input_mapping": {"text": "$.text"}},
        {"step_id": "b", "task_id": "echo", "depends_on": ["a"], "skip_if": fast,
         "input_mapping": {"from_a": "$.a.echo.text"}},
        {"step_id": "c", "task_id": "echo", "depends_on": ["a", "b"],
         "input_mapping": {"a": "$.a.echo.text", "b": "$.b.echo.from_a"}},
        {"step_id": "d", "task_id": "echo", "depends_on": ["a"], "skip_if": [fast]},
    ]  # fmt: skip
    pipeline(client, "skipping", steps)
    assert client.get_pipeline("skipping").steps[1].skip_if == [fast]
    info = run_cli(cluster, "pipeline", "info", "skipping").stdout
    assert "skipped when $.fast == true" in info, info
    done, by_id = completed(client, "skipping", {"text": "hi", "fast": True}, "CSCS")
    assert by_id["b"].error == "skip_if $.fast == true" and by_id["b"].attempt == 0
    assert by_id["c"].output == {"echo": {"a": "hi"}}
    assert done.output == {"c": {"echo": {"a": "hi"}}}
    events = list(client.watch(done.run_id, timeout=30))
    skipped = [(e.step_id, e.message) for e in events if e.state == "SKIPPED"]
    assert sorted(skipped) == [("b", "skip_if $.fast == true"), ("d", "skip_if $.fast == true")]
    shown = run_cli(cluster, "run", "get", done.run_id).stdout
    assert "SKIPPED" in shown, shown
    slow = run(client, "skipping", {"text": "hi", "fast": False})
    assert [s.state for s in slow.steps] == ["COMPLETED"] * 4
    assert slow.output["c"] == {"echo": {"a": "hi", "b": "hi"}} and set(slow.output) == {"c", "d"}


def test_a_step_whose_skip_if_reads_an_upstream_output_is_decided_when_that_output_comes(
    client: Client,
) -> None:
    """a -> b (skipped when a's output says "none": Hatchet's condition on a parent's
    output) -> c (skipped when b has no output), and d after a and b. With "none": b and c
    are SKIPPED, each with its condition as its error and an event; d runs with b's field
    left out; the run's output is d's alone. Otherwise every step runs. A condition on a
    step that is not upstream is refused at registration, naming its path."""
    none = {"path": "$.a.echo.text", "op": "==", "value": "none"}
    steps = [
        {"step_id": "a", "task_id": "echo", "input_mapping": {"text": "$.text"}},
        {"step_id": "b", "task_id": "echo", "depends_on": ["a"], "skip_if": none,
         "input_mapping": {"from_a": "$.a.echo.text"}},
        {"step_id": "c", "task_id": "echo", "depends_on": ["b"],
         "skip_if": {"path": "$.b.echo", "op": "not_exists"}, "input_mapping": {"b": "$.b"}},
        {"step_id": "d", "task_id": "echo", "depends_on": ["a", "b"],
         "input_mapping": {"a": "$.a.echo.text", "b": "$.b.echo.from_a"}},
    ]  # fmt: skip
    pipeline(client, "output_skipping", steps)
    done, by_id = completed(client, "output_skipping", {"text": "none"}, "CSSC")
    assert by_id["b"].error == 'skip_if $.a.echo.text == "none"' and by_id["b"].attempt == 0
    assert by_id["c"].error == "skip_if $.b.echo not exists"
    assert done.output == {"d": {"echo": {"a": "none"}}}
    events = list(client.watch(done.run_id, timeout=30))
    skipped = [(e.step_id, e.message) for e in events if e.state == "SKIPPED"]
    assert skipped == [("b", by_id["b"].error), ("c", by_id["c"].error)]
    ran = run(client, "output_skipping", {"text": "two faces"})
    assert [s.state for s in ran.steps] == ["COMPLETED"] * 4
    assert ran.output == {
        "c": {"echo": {"b": {"echo": {"from_a": "two faces"}}}},
        "d": {"echo": {"a": "two faces", "b": "two faces"}},
    }
    sideways = [*steps[:2], {**steps[2], "depends_on": ["a"]}]
    with pytest.raises(ApiError) as err:
        pipeline(client, "output_skipping_sideways", sideways)
    assert err.value.code == "INVALID_ARGUMENT"
    assert "steps[2].skip_if.path: '$.b.echo' reads step 'b', which is not upstream of 'c'" in str(
        err.value
    ), err.value


def test_a_for_each_step_runs_its_task_once_per_item_and_gathers_the_outputs(
    client: Client, cluster: Cluster
) -> None:
    """a returns a list; m runs echo once per word (its instances m[0], m[1], m[2]: steps of
    the run with their own attempts, lineage and events), and completes with their outputs in
    order, which c reads with [*]. An empty list completes m at once with []."""
    steps = [
        {"step_id": "a", "task_id": "echo", "input_mapping": {"words": "$.words"}},
        {"step_id": "m", "task_id": "echo", "depends_on": ["a"],
         "for_each": {"word": "$.a.echo.words"}, "input_mapping": {"tag": "$.tag"}},
        {"step_id": "c", "task_id": "echo", "depends_on": ["m"],
         "input_mapping": {"words": "$.m[*].echo.word"}},
    ]  # fmt: skip
    pipeline(client, "fanning", steps)
    assert client.get_pipeline("fanning").steps[1].for_each == {"word": "$.a.echo.words"}
    info = run_cli(cluster, "pipeline", "info", "fanning").stdout
    assert "word <- each item of $.a.echo.words" in info, info
    done = run(client, "fanning", {"words": ["x", "y", "z"], "tag": "t"})
    assert done.state == "COMPLETED", done.error
    by_id = {s.step_id: s for s in done.steps}
    assert list(by_id) == ["a", "m", "m[0]", "m[1]", "m[2]", "c"]
    assert all(s.state == "COMPLETED" and s.attempt <= 1 for s in done.steps)
    assert by_id["m[1]"].output == {"echo": {"tag": "t", "word": "y"}}
    assert by_id["m"].output == [{"echo": {"tag": "t", "word": w}} for w in "xyz"]
    assert by_id["c"].output == {"echo": {"words": ["x", "y", "z"]}}
    assert ("output_001_echo.words[1]_string", "input_002_0001_word_string") in done.lineage
    summary = done.processing_summary or {}
    took = {t["step_id"]: t["run_seconds"] for t in summary["steps"]}
    assert list(took) == list(by_id)  # m's time is its instances': summed once, as theirs
    assert summary["step_seconds_sum"] == pytest.approx(sum(took.values()) - took["m"], abs=1e-5)
    events = list(client.watch(done.run_id, timeout=30))
    assert ("m", "RUNNING", "for_each $.a.echo.words: 3 items") in [
        (e.step_id, e.state, e.message) for e in events
    ]
    assert {e.step_id for e in events if e.state == "COMPLETED"} >= {"m[0]", "m[1]", "m[2]"}
    shown = run_cli(cluster, "run", "get", done.run_id).stdout
    assert "step m (echo@1.0.0) COMPLETED for each of 3 items" in shown, shown
    assert "step m[2] (echo@1.0.0) COMPLETED attempt 1 on" in shown, shown
    empty = run(client, "fanning", {"words": [], "tag": "t"})
    assert empty.state == "COMPLETED", empty.error
    assert [s.step_id for s in empty.steps] == ["a", "m", "c"]
    assert empty.output == {"echo": {"words": []}}
    with pytest.raises(ApiError) as err:
        pipeline(client, "fanning_sideways", [steps[0], {**steps[1], "depends_on": []}])
    assert err.value.code == "INVALID_ARGUMENT"
    assert "steps[1].for_each.word: '$.a.echo.words' reads step 'a', which is not upstream" in str(
        err.value
    ), err.value
    # A first step may run once per item of a list in the run's input, checked at submit.
    pipeline(
        client, "fanning_input", [{**steps[1], "depends_on": [], "for_each": {"word": "$.words"}}]
    )
    done = run(client, "fanning_input", {"words": ["p", "q"], "tag": "t"})
    assert done.state == "COMPLETED", done.error
    assert done.output == [{"echo": {"tag": "t", "word": w}} for w in "pq"]
    assert ("run_input_words[0]_string", "input_001_0000_word_string") in done.lineage
    for doc, said in [({"tag": "t"}, "no field 'words'"), ({"words": "pq", "tag": "t"}, "list")]:
        with pytest.raises(ApiError) as err:
            client.submit(pipeline="fanning_input", input=doc)
        assert err.value.code == "INVALID_ARGUMENT" and "input_json" in str(err.value)
        assert "step 'm': for_each $.words" in str(err.value) and said in str(err.value)


def test_a_resumed_fan_out_runs_only_the_items_that_had_not_completed(
    client: Client, shared_tmp: Path
) -> None:
    """Three items, one at a time; the third fails (flaky: its marker is not there yet), and
    with it the run. Resumed, the run takes the two completed items over and runs the third
    alone, which now succeeds."""
    markers = [shared_tmp / f"fan-resume-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
    for m in markers[:2]:
        m.write_text("there")
    steps = [{"step_id": "each", "task_id": "flaky", "retry_count": 0,
              "for_each": {"marker": "$.markers"}}]  # fmt: skip
    pipeline(client, "fan_resume", steps, global_settings={"max_parallel_tasks": 1})
    first = run(client, "fan_resume", {"markers": [str(m) for m in markers]})
    assert first.state == "FAILED" and "first attempt fails on purpose" in first.error
    before = {s.step_id: s for s in first.steps}
    assert [before[f"each[{i}]"].state for i in range(3)] == ["COMPLETED", "COMPLETED", "FAILED"]
    again = client.wait(client.rerun(first.run_id, from_failure=True).run_id, 60)
    assert again.state == "COMPLETED", again.error
    s = {x.step_id: x for x in again.steps}
    for i in (0, 1):
        origin = f"{first.run_id}/{before[f'each[{i}]'].output_id}"
        assert (s[f"each[{i}]"].cached_from, s[f"each[{i}]"].attempt) == (origin, 0)
    assert s["each[2]"].attempt == 1 and s["each[2]"].executor_id  # it ran, and only it
    assert again.output == [{"recovered": True}] * 3


def test_a_run_whose_every_step_is_skipped_completes_at_its_submit(client: Client) -> None:
    pipeline(
        client, "all_skipped",
        [{"task_id": "echo", "skip_if": {"path": "$.dry_run", "op": "exists"}}],
    )  # fmt: skip
    started = time.monotonic()
    done = client.run(pipeline="all_skipped", input={"dry_run": 1}, timeout=30)
    assert time.monotonic() - started < 3  # not a poll's wait: its end is known at once
    assert done.state == "COMPLETED" and done.steps[0].state == "SKIPPED"
    assert done.output == {}
    assert eventually(
        lambda: [r.state for r in client.list_runs(pipeline_id="all_skipped")] == ["COMPLETED"]
    )


def test_a_disabled_pipeline_is_refused(client: Client) -> None:
    pipeline(client, "switched_off", [{"task_id": "echo"}], enabled=False)
    with pytest.raises(ApiError) as err:
        client.submit(pipeline="switched_off")
    assert err.value.code == "FAILED_PRECONDITION"


def test_an_unknown_pipeline_is_not_found(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(pipeline="no_such_pipeline", input={})
    assert (err.value.code, err.value.message) == (
        "NOT_FOUND",
        "pipeline: no pipeline no_such_pipeline is registered",
    )


def test_the_cli_runs_a_pipeline_and_prints_summary_and_lineage(cluster: Cluster) -> None:
    out = run_cli(cluster, "pipeline", "run", "text_pipeline", json.dumps({"text": "good"}))
    assert "parallel speedup" in out.stdout
    assert "output_001_count_number -> input_003_n_number" in out.stdout


def test_progress_reported_by_a_task_reaches_watchers_in_order(client: Client) -> None:
    r = client.submit(task="sleeper", input={"seconds": 0.4})
    events = list(client.watch(r.run_id, timeout=60))
    progress = [(e.progress, e.message) for e in events if e.kind == "PROGRESS"]
    assert progress == [
        (0.25, "slept 1/4"),
        (0.5, "slept 2/4"),
        (0.75, "slept 3/4"),
        (1.0, "slept 4/4"),
    ]
    kinds = [e.kind for e in events]
    first, last = kinds.index("PROGRESS"), len(kinds) - 1 - kinds[::-1].index("PROGRESS")
    started = next(
        i for i, e in enumerate(events) if e.step_id and e.state == "RUNNING" and e.kind == "STATE"
    )
    completed = next(i for i, e in enumerate(events) if e.step_id and e.state == "COMPLETED")
    assert started < first and last < completed


def test_an_optional_input_field_may_be_absent_at_every_step_position(client: Client) -> None:
    """A field the pipeline lists in optional_fields, mapped by a first step and by a later
    one: a run without it is accepted and runs, the field left out of both inputs; a run
    with it passes it on. A mapped field that is not optional is still refused."""
    pipeline(
        client,
        "optional_lower",
        [
            {
                "step_id": "first",
                "task_id": "echo",
                "input_mapping": {"t": "$.text", "l": "$.lower"},
            },
            {
                "step_id": "later",
                "task_id": "echo",
                "depends_on": ["first"],
                "input_mapping": {"l": "$.lower", "from_first": "$.first.echo.t"},
            },
        ],
        input_validation={"required_fields": ["text"], "optional_fields": ["lower"]},
    )
    without = run(client, "optional_lower", {"text": "Hi"})
    assert without.state == "COMPLETED", without.error
    steps = {s.step_id: s.output["echo"] for s in without.steps}
    assert steps == {"first": {"t": "Hi"}, "later": {"from_first": "Hi"}}
    given = run(client, "optional_lower", {"text": "Hi", "lower": "hi"})
    steps = {s.step_id: s.output["echo"] for s in given.steps}
    assert steps == {"first": {"t": "Hi", "l": "hi"}, "later": {"l": "hi", "from_first": "Hi"}}
    pipeline(
        client,
        "required_lower",
        [{"task_id": "echo", "input_mapping": {"l": "$.lower"}}],
    )
    with pytest.raises(ApiError) as err:
        client.submit(pipeline="required_lower", input={"text": "Hi"})
    assert err.value.code == "INVALID_ARGUMENT" and "lower" in err.value.message


def test_a_later_steps_missing_run_input_field_is_refused_at_submit(client: Client) -> None:
    pipeline(
        client,
        "later_needs_lower",
        [
            {"step_id": "first", "task_id": "echo", "input_mapping": {"t": "$.text"}},
            {
                "step_id": "later",
                "task_id": "echo",
                "depends_on": ["first"],
                "input_mapping": {"l": "$.lower"},
            },
        ],
    )
    with pytest.raises(ApiError) as err:  # not queued only to fail at the second step
        client.submit(pipeline="later_needs_lower", input={"text": "Hi"})
    assert err.value.code == "INVALID_ARGUMENT"
    assert "'later'" in err.value.message and "lower" in err.value.message


def overlapping(done: RunInfo) -> bool:
    """Whether any two steps of the run were leased at once (by their recorded times)."""
    spans = sorted((s.started_at, s.ended_at) for s in done.steps)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


def test_max_parallel_tasks_runs_at_most_that_many_steps_of_a_run_at_once(client: Client) -> None:
    steps = [
        {"step_id": f"nap{i}", "task_id": "sleeper", "input_mapping": {"seconds": "$.seconds"}}
        for i in range(3)
    ]
    pipeline(client, "naps_wide", steps)
    pipeline(client, "naps_narrow", steps, global_settings={"max_parallel_tasks": 1})
    wide = run(client, "naps_wide", {"seconds": 0.4})
    assert wide.state == "COMPLETED" and overlapping(wide)  # two slots: two at once
    narrow = run(client, "naps_narrow", {"seconds": 0.4})
    assert narrow.state == "COMPLETED" and not overlapping(narrow)


def test_a_pipelines_run_timeout_is_each_runs_time_limit_unless_the_submit_sets_one(
    client: Client,
) -> None:
    nap = [{"task_id": "sleeper", "input_mapping": {"seconds": "$.seconds"}}]
    pipeline(client, "nap_limited", nap, global_settings={"run_timeout": 1})
    assert client.get_pipeline("nap_limited").run_timeout_seconds == 1
    late = run(client, "nap_limited", {"seconds": 20})
    assert (late.state, late.error) == (
        "TIMED_OUT",
        "run_timeout: the run had not finished by its deadline",
    )
    assert late.deadline_at is not None and late.created_at is not None
    assert abs((late.deadline_at - late.created_at).total_seconds() - 1) < 0.01
    # A submit's own limit wins.
    own = client.submit(pipeline="nap_limited", input={"seconds": 1.5}, run_timeout=60)
    assert client.wait(own.run_id, timeout=60).state == "COMPLETED"


def test_log_level_sets_the_level_of_the_tasks_logger(client: Client) -> None:
    pipeline(client, "levels_all", [{"task_id": "levels"}])
    pipeline(
        client, "levels_quiet", [{"task_id": "levels"}], global_settings={"log_level": "warning"}
    )
    [loud] = run(client, "levels_all", {}).steps
    assert [line.split(" ", 1)[0] for line in loud.logs] == ["DEBUG", "INFO", "WARNING"]
    [quiet] = run(client, "levels_quiet", {}).steps
    assert [line.split(" ", 1)[0] for line in quiet.logs] == ["WARNING"]
    assert client.get_pipeline("levels_quiet").log_level == "WARNING"
    [loud_again] = run(client, "levels_all", {}).steps  # the same warm worker, set back
    assert [line.split(" ", 1)[0] for line in loud_again.logs] == ["DEBUG", "INFO", "WARNING"]


def test_enable_caching_reuses_a_steps_output_and_says_where_it_came_from(
    client: Client,
) -> None:
    pipeline(
        client,
        "cached_count",
        [
            {"task_id": "word_count", "input_mapping": {"text": "$.text"}},
            {
                "step_id": "show",
                "task_id": "echo",
                "depends_on": ["word_count"],
                "input_mapping": {"n": "$.word_count.count"},
                "cache": False,  # this step always runs
            },
        ],
        global_settings={"enable_caching": True},
    )
    text = f"cache me {uuid.uuid4().hex}"
    first = run(client, "cached_count", {"text": text})
    second = run(client, "cached_count", {"text": text})
    assert first.state == second.state == "COMPLETED"
    a, b = ({s.step_id: s for s in r.steps} for r in (first, second))
    origin = f"{first.run_id}/{a['word_count'].output_id}"
    assert a["word_count"].cached_from == "" and a["word_count"].executor_id
    assert b["word_count"].cached_from == origin
    assert b["word_count"].output == a["word_count"].output and b["word_count"].executor_id == ""
    assert b["show"].cached_from == "" and b["show"].executor_id  # cache: false: it ran
    assert b["show"].output == a["show"].output
    assert (origin, b["word_count"].output_id) in second.lineage
    assert second.processing_summary is not None and first.processing_summary is not None
    assert second.processing_summary["cache_hits"] == 1
    assert [t["cached"] for t in second.processing_summary["steps"]] == [True, False]
    assert first.processing_summary["cache_hits"] == 0
    # The run's own cache=False, and another input, both run the step.
    off = client.wait(
        client.submit(pipeline="cached_count", input={"text": text}, cache=False).run_id, 60
    )
    other = run(client, "cached_count", {"text": text + " again"})
    for r in (off, other):
        assert r.state == "COMPLETED" and not any(s.cached_from for s in r.steps)
    assert other.output != first.output
    # A rerun repeats the submit's own choice: the pipeline's caching stays off for it.
    off_again = client.wait(client.rerun(off.run_id).run_id, 60)
    assert off_again.state == "COMPLETED" and not any(s.cached_from for s in off_again.steps)


def test_a_task_run_is_cached_only_when_the_submit_asks(client: Client) -> None:
    text = f"once {uuid.uuid4().hex}"
    plain = [client.run(task="word_count", input={"text": text}, timeout=60) for _ in range(2)]
    assert not any(s.cached_from for r in plain for s in r.steps)
    asked = [
        client.run(task="word_count", input={"text": text}, cache=True, timeout=60)
        for _ in range(2)
    ]
    assert asked[0].steps[0].cached_from == ""  # plain runs stored nothing
    assert asked[1].steps[0].cached_from == f"{asked[0].run_id}/output_001"
    assert asked[1].output == asked[0].output
    # A rerun asks as its run asked (a task run's default is no caching).
    again = client.wait(client.rerun(asked[1].run_id).run_id, 60)
    assert again.steps[0].cached_from == f"{asked[0].run_id}/output_001"
    plain_again = client.wait(client.rerun(plain[1].run_id).run_id, 60)
    assert plain_again.steps[0].cached_from == "" and plain_again.steps[0].executor_id


def test_the_cli_asks_for_caching_and_shows_a_hit(cluster: Cluster) -> None:
    doc = json.dumps({"text": f"cli {uuid.uuid4().hex}"})
    first = run_cli(cluster, "run", "submit", "word_count", doc, "--cache").stdout
    assert "from the cache" not in first
    second = run_cli(cluster, "run", "submit", "word_count", doc, "--cache").stdout
    assert "from the cache (" in second and "1 from the cache" in second
    third = run_cli(cluster, "--json", "run", "submit", "word_count", doc, "--no-cache").stdout
    assert json.loads(third)["steps"][0]["cached_from"] == ""


def gate_task(where: Path, task_id: str, version: str, body: str) -> Path:
    """A task passing on the word count it is given; ``body`` is its ``process``."""
    d = where / f"{task_id}-{version}"
    d.mkdir()
    schema = {"type": "object", "properties": {"words": {"type": "integer"}}, "required": ["words"]}
    manifest = {"task_id": task_id, "version": version, "name": task_id, "queue": "default"}
    (d / "task.json").write_text(json.dumps({**manifest, "input_schema": schema}))
    (d / "task.py").write_text(
        "from tasks.base.task_base import FatalError, SimpleTask\n\n\n"
        f"class Task(SimpleTask):\n    def process(self, input_data):\n        {body}\n"
    )
    return d


def gated(gate: str, version: str) -> list[dict[str, Any]]:
    """A pipeline's steps: the words of ``$.text`` counted, then the count through ``gate``."""
    return [
        {"task_id": "word_count", "input_mapping": {"text": "$.text"}},
        {
            "step_id": "gate",
            "task_id": f"{gate}@{version}",
            "depends_on": ["word_count"],
            "input_mapping": {"words": "$.word_count.count"},
        },
    ]


def test_a_failed_run_resumes_taking_over_the_steps_it_completed(
    client: Client, cluster: Cluster, tmp_path: Path
) -> None:
    gate, pid = f"gate_{uuid.uuid4().hex[:8]}", f"resumed_{uuid.uuid4().hex[:8]}"
    client.register_task(gate_task(tmp_path, gate, "1.0.0", 'raise FatalError("closed")'))

    def steps(version: str) -> list[dict[str, Any]]:
        shown = {"step_id": "show", "task_id": "echo", "depends_on": ["gate"]}
        return [*gated(gate, version), shown]

    pipeline(client, pid, steps("1.0.0"), version="1.0.0")
    first = run(client, pid, {"text": f"one two three {uuid.uuid4().hex}"})
    assert first.state == "FAILED" and "closed" in first.error
    counted = {s.step_id: s for s in first.steps}["word_count"]
    origin = f"{first.run_id}/{counted.output_id}"

    # The same version again: the count is taken over (it did not run), the gate fails again.
    same = client.wait(client.rerun(first.run_id, from_failure=True).run_id, 60)
    s = {x.step_id: x for x in same.steps}
    assert same.state == "FAILED" and "closed" in same.error
    assert (s["word_count"].cached_from, s["word_count"].attempt) == (origin, 0)
    assert s["word_count"].executor_id == "" and s["word_count"].output == counted.output
    assert s["gate"].attempt == 1 and s["gate"].executor_id  # it ran

    # The gate fixed in a new version, and the pipeline's new version using it: resumed with
    # --latest from the CLI, the count is still taken over and the rest runs.
    client.register_task(gate_task(tmp_path, gate, "1.0.1", 'return {"n": input_data["words"]}'))
    pipeline(client, pid, steps("1.0.1"), version="1.0.1")
    time.sleep(1.1)  # what "latest" is, the scheduler keeps for a second
    shown = run_cli(cluster, "run", "rerun", first.run_id, "--latest", "--from-failure")
    assert "taken over" in shown.stdout and "COMPLETED" in shown.stdout
    reruns = client.list_runs(labels={"wtm.rerun_of": first.run_id})
    [fixed] = [r for r in reruns if r.pipeline_version == "1.0.1"]
    assert [r.run_id for r in client.list_runs(pipeline_id=f"{pid}@1.0.1")] == [fixed.run_id]
    assert len(list(client.list_runs(pipeline_id=f"{pid}@1.0.0"))) == 2  # the first, its rerun
    fixed = client.wait(fixed.run_id, 60)
    f = {x.step_id: x for x in fixed.steps}
    assert fixed.state == "COMPLETED" and fixed.pipeline_version == "1.0.1"
    assert fixed.output["echo"]["gate"] == {"n": 4} and f["gate"].task_version == "1.0.1"
    assert fixed.processing_summary is not None
    summary = fixed.processing_summary
    assert (summary["taken_over"], summary["cache_hits"]) == (1, 0)
    assert f["word_count"].cached_from == origin and f["word_count"].executor_id == ""
    assert (origin, f["word_count"].output_id) in fixed.lineage
    kept = ("run_input_text_string", f"{counted.input_id}_text_string")
    assert kept in first.lineage and kept in fixed.lineage  # where its input came from
    events = [e for e in client.watch(fixed.run_id) if e.step_id == "word_count"]
    assert [(e.state, e.message) for e in events] == [("COMPLETED", f"taken over from {origin}")]
    # The history keeps the step it took over (a run rebuilt after a Redis flush finds it).
    assert cluster.endpoints is not None
    with pymongo.MongoClient(cluster.endpoints.mongodb_uri) as mongo:
        wanted, kept = {"run_id": fixed.run_id, "step_id": "word_count"}, None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and kept is None:  # written behind
            kept = mongo.wtm.step_runs.find_one(wanted)
            time.sleep(0.05)
    assert kept is not None and (kept["state"], kept["cached_from"]) == ("COMPLETED", origin)

    # What cannot be resumed: a run that completed, one not ended, or another input.
    with pytest.raises(ApiError) as err:
        client.rerun(fixed.run_id, from_failure=True)
    assert err.value.code == "FAILED_PRECONDITION"
    assert err.value.message.startswith(f"from_failure: run {fixed.run_id} has completed")
    sleeping = client.submit(task="sleeper", input={"seconds": 30})
    with pytest.raises(ApiError) as err:
        client.rerun(sleeping.run_id, from_failure=True)
    assert err.value.code == "FAILED_PRECONDITION" and "has not ended" in err.value.message
    client.cancel(sleeping.run_id)
    with keyed_channel(cluster.scheduler_address, cluster.admin_key) as channel:
        submit = spb_grpc.SchedulerServiceStub(channel).SubmitRun
        asked = {"pipeline": pid, "reuse_from": first.run_id, "input_json": '{"text": "4 5"}'}
        with pytest.raises(grpc.RpcError) as raw:
            submit(spb.SubmitRunRequest(**asked))
        assert raw.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert raw.value.details().startswith("input_json: differs from run ")
        with pytest.raises(grpc.RpcError) as raw:
            submit(spb.SubmitRunRequest(**{**asked, "reuse_from": "no-such-run"}))
        assert raw.value.code() == grpc.StatusCode.NOT_FOUND
        assert raw.value.details() == "reuse_from: no run no-such-run"


def test_resuming_a_batch_again_resumes_the_resumes_that_failed_again(
    client: Client, tmp_path: Path
) -> None:
    """A batch's failed run resumed on the same version fails again; the batch resumed once
    more resumes that resume (its run is not in the batch), taking over what the first run
    computed, instead of answering the failed resume again; a completed one stays."""
    gate, pid = f"gate_{uuid.uuid4().hex[:8]}", f"chain_resumed_{uuid.uuid4().hex[:8]}"
    strict = 'if input_data["words"] > 2:\n            raise FatalError("too long")\n        '
    client.register_task(gate_task(tmp_path, gate, "1.0.0", strict + "return {}"))
    pipeline(client, pid, gated(gate, "1.0.0"), version="1.0.0")
    batch_id, run_ids = client.submit_many([{"text": "a b c"}, {"text": "a"}], pipeline=pid)
    failed, fine = (client.wait(r, 60) for r in run_ids)
    assert (failed.state, fine.state) == ("FAILED", "COMPLETED")

    eventually(  # in the history, which resume_runs reads (written behind)
        lambda: [r for r in client.list_runs("FAILED", batch_id=batch_id)],
        10,
        "the failure in the history",
    )
    first = client.resume_runs(batch_id=batch_id)
    [(was, resumed)] = first.resumed
    assert was == failed.run_id and client.wait(resumed.run_id, 60).state == "FAILED"
    second = client.resume_runs(batch_id=batch_id)
    [(was, newest)] = second.resumed
    assert was == failed.run_id and newest.run_id != resumed.run_id
    ended = client.wait(newest.run_id, 60)
    assert ended.state == "FAILED" and ended.labels["wtm.rerun_of"] == resumed.run_id
    count = {s.step_id: s for s in ended.steps}["word_count"]
    assert count.cached_from == f"{failed.run_id}/{count.output_id}"  # still not run again
    third = client.resume_runs(batch_id=batch_id)  # the chain again: one more link
    assert [r.labels["wtm.rerun_of"] for _, r in third.resumed] == [newest.run_id]


def test_the_failed_runs_of_a_batch_resume_at_once_each_once(
    client: Client, cluster: Cluster, tmp_path: Path
) -> None:
    gate, pid = f"gate_{uuid.uuid4().hex[:8]}", f"batch_resumed_{uuid.uuid4().hex[:8]}"
    strict = 'if input_data["words"] > 2:\n            raise FatalError("too long")\n        '
    client.register_task(gate_task(tmp_path, gate, "1.0.0", strict + "return {}"))

    def steps(version: str) -> list[dict[str, Any]]:
        return gated(gate, version)

    pipeline(client, pid, steps("1.0.0"), version="1.0.0")
    texts = ["a b", "a b c", "a", "a b c d"]
    batch_id, run_ids = client.submit_many([{"text": t} for t in texts], pipeline=pid)
    first = {r: client.wait(r, 60) for r in run_ids}
    failed = sorted(r for r, done in first.items() if done.state == "FAILED")
    assert len(failed) == 2
    client.register_task(gate_task(tmp_path, gate, "1.0.1", 'return {"n": input_data["words"]}'))
    pipeline(client, pid, steps("1.0.1"), version="1.0.1")
    time.sleep(1.1)  # what "latest" is, the scheduler keeps for a second
    done = client.resume_runs(batch_id=batch_id, latest=True)
    assert [was for was, _ in done.resumed] == failed and done.refused == []
    for was, again in done.resumed:
        ended = client.wait(again.run_id, 60)
        assert ended.state == "COMPLETED" and ended.labels["wtm.rerun_of"] == was
        count = {s.step_id: s for s in ended.steps}["word_count"]
        assert count.cached_from == f"{was}/{count.output_id}"  # taken over, not run
        assert ended.output == {"n": len(first[was].input["text"].split())}
    # Again (a cut-short call finished, or a look): the same new runs, none more.
    shown = run_cli(cluster, "--json", "run", "resume", "--batch", batch_id, "--latest")
    again = json.loads(shown.stdout)
    assert [(w, r["run_id"]) for w, r in again["resumed"]] == [
        (w, r.run_id) for w, r in done.resumed
    ]
    with pytest.raises(ApiError) as err:
        client.resume_runs()
    assert err.value.code == "INVALID_ARGUMENT" and err.value.field == "filter"
