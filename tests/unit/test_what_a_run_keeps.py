"""What a run keeps for its listings and its reruns, wherever it is read from (its Redis
hashes, its MongoDB document): a task run the version it ran (a document from before runs
kept it: its step's), and the submit's own cache choice."""

from __future__ import annotations

import json

import pytest

from services.scheduler.models import Run, StepRun
from services.scheduler.rerun import rerun_request
from services.scheduler.run_docs import new_doc

RUN = {"run_id": "r1", "state": "QUEUED", "input_json": "{}", "priority": "5"}
STEP = {"step_id": "s", "task_id": "word_count", "task_version": "1.2.0", "state": "PENDING"}


def test_a_task_runs_version_is_read_from_its_one_step_in_redis() -> None:
    run = Run.from_redis({**RUN, "task_id": "word_count"}, [STEP], {})
    assert run.task_version == "1.2.0" and run.to_proto().task_version == "1.2.0"


def test_a_pipeline_run_has_no_task_version_of_its_own() -> None:
    fields = {**RUN, "pipeline_id": "p", "pipeline_version": "2.0.0"}
    run = Run.from_redis(fields, [STEP, {**STEP, "step_id": "t", "task_version": "0.1.0"}], {})
    assert run.task_version == "" and run.to_proto().task_version == ""


def test_a_task_runs_document_keeps_its_version_and_an_older_one_takes_its_steps() -> None:
    run = Run("r1", "QUEUED", json.dumps({}), 5, task_id="word_count", task_version="1.2.0")
    doc = new_doc(run, {})
    assert doc["task_version"] == "1.2.0"
    assert Run.from_doc(doc, []).task_version == "1.2.0"  # a listing reads no steps
    older = {k: v for k, v in doc.items() if k != "task_version"}
    step = StepRun("s", "word_count", "1.1.0", "COMPLETED")
    assert Run.from_doc(older, [step]).task_version == "1.1.0"
    assert Run.from_doc(older, []).task_version == ""


@pytest.mark.parametrize(("hashed", "choice"), [("1", True), ("0", False), (None, None)])
def test_a_rerun_repeats_the_submits_own_cache_choice_from_redis_or_mongodb(
    hashed: str | None, choice: bool | None
) -> None:
    fields = {**RUN, "task_id": "word_count", **({"cache": hashed} if hashed else {})}
    run = Run.from_redis(fields, [STEP], {})
    assert run.cache is choice
    assert rerun_request(run, "default", latest=False).cache is choice
    recorded = Run.from_doc(new_doc(run, {}), [])  # after Redis let it go
    assert rerun_request(recorded, "default", latest=False).cache is choice
    assert rerun_request(recorded, "default", latest=False).task == "word_count@1.2.0"


def test_a_step_that_ran_without_its_signal_keeps_it_in_its_record_and_its_rebuild() -> None:
    """A wait that ran out into a plain run (await_signal's on_timeout "continue"): the step
    says so from Redis, from its MongoDB record once Redis let the run go, and the fields a
    rebuild puts back keep when the wait ran out (a late signal is told so, not taken)."""
    ran_out = {**STEP, "state": "COMPLETED", "signal_timed_out": "1700000000000",
               "signaled_ms": "1700000000000", "ended_ms": "1700000000500"}  # fmt: skip
    step = StepRun.from_redis(ran_out, "{}")
    assert step.ran_without_signal and step.to_proto().ran_without_signal
    assert not step.signaled_by
    recorded = StepRun.from_doc(step.to_doc("r1"))
    assert recorded.ran_without_signal and recorded.to_proto().ran_without_signal
    assert recorded.ended_fields()["signal_timed_out"] == "1700000000000"
    plain = StepRun.from_redis({**STEP, "state": "COMPLETED"}, "{}")
    assert not plain.ran_without_signal and "signal_timed_out" not in plain.ended_fields()
