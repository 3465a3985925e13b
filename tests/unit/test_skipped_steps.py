"""A pipeline step's skip_if, decided when a run is submitted: which steps a run skips, what
its input checks leave out for them, and what the run and its Redis submission carry (the
planning half; ``submit_run.lua`` and the stack are tested in test_pipeline_runs)."""

from __future__ import annotations

import json

import pytest

from common.errors import InvalidArgument
from services.common.conditions import parse
from services.scheduler.planning import Plan, PlannedStep, SubmitRequest, check_input, new_run
from services.scheduler.step_inputs import resolve
from services.scheduler.task_catalog import ResolvedTask

FAST = parse({"path": "$.fast", "op": "==", "value": True}, set(), "skip_if")


def plan() -> Plan:
    """detect -> (faces, unless $.fast) -> report; report maps both upstream outputs."""

    def task(name: str) -> ResolvedTask:
        return ResolvedTask(name, "1.0.0", f"sha-{name}", "task.Task", "default", 0, 30, 0)

    ids = frozenset({"detect", "faces", "report"})
    steps = [
        PlannedStep(
            "detect", task("detect"), [], ["faces", "report"], 30, 0, {"image": "$.image"}, 1, ids
        ),
        PlannedStep(
            "faces", task("faces"), ["detect"], ["report"], 30, 0,
            {"boxes": "$.detect.boxes", "model": "$.model"}, 2, ids, skip_if=FAST,
        ),
        PlannedStep(
            "report", task("report"), ["detect", "faces"], [], 30, 0,
            {"boxes": "$.detect.boxes", "faces": "$.faces.faces"}, 3, ids,
        ),
    ]  # fmt: skip
    return Plan(steps, ["report"], 0, pipeline_id="p", pipeline_version="1.0.0")


def test_a_step_whose_condition_holds_is_skipped_and_its_own_input_is_not_required() -> None:
    """faces maps $.model from the run's input: a run that skips faces need not give it."""
    p = plan()
    with pytest.raises(InvalidArgument, match="step 'faces'"):
        check_input(p, {"image": "x.jpg"})  # faces runs, and its model is missing
    options = check_input(p, {"image": "x.jpg", "fast": True})
    assert options.skipped == (("faces", "skip_if $.fast == true"),)
    assert check_input(p, {"image": "x.jpg", "fast": False, "model": "m"}).skipped == ()


def test_the_field_a_condition_reads_counts_as_read() -> None:
    """A key of the run's input no step reads is refused; the one skip_if reads is read."""
    with pytest.raises(InvalidArgument, match="input_json.colour"):
        check_input(plan(), {"image": "x.jpg", "fast": True, "colour": "red"})


def test_a_skipped_step_rides_in_the_runs_plan_and_shows_skipped_from_the_start() -> None:
    p = plan()
    doc = {"image": "x.jpg", "fast": True}
    run, submission = new_run(SubmitRequest(pipeline="p"), p, doc, "", options=check_input(p, doc))
    steps = {s.step_id: s for s in run.steps}
    assert (steps["faces"].state, steps["faces"].error) == ("SKIPPED", "skip_if $.fast == true")
    assert steps["report"].state == "PENDING"
    fields = {s.step_id: s.fields for s in submission.steps}
    assert fields["faces"]["skip"] == "skip_if $.fast == true"
    assert "skip" not in fields["detect"] and "skip" not in fields["report"]
    assert "skip" not in p.steps[1].spec.fields  # the plan's own fields are shared: untouched


def test_a_field_mapped_from_a_skipped_steps_output_is_left_out_of_its_dependents_input() -> None:
    mapping = {"boxes": "$.detect.boxes", "faces": "$.faces.faces"}
    outputs = {"detect": {"boxes": [1]}}  # faces was skipped: it has no output
    document, edges, sources = resolve(
        mapping,
        {"detect", "faces"},
        {},
        outputs,
        {"detect": "output_001", "faces": "output_002"},
        "input_003",
    )
    assert document == {"boxes": [1]} and sources == {"boxes": "output_001"}
    assert json.dumps(edges) == '[["output_001_boxes_array", "input_003_boxes_array"]]'
