"""Resuming a run (``run_reuse``): which steps a new run takes over, and which submits are
refused, on plans and runs built by hand (the catalog and the run reader are stand-ins for
the registry and the history: this is the pure decision)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from common.errors import FailedPrecondition, NotFound
from services.common import fan_out
from services.scheduler import run_reuse
from services.scheduler.models import Run, StepRun
from services.scheduler.planning import Plan, PlannedStep, SubmitRequest, new_run
from services.scheduler.task_catalog import ResolvedPipeline, ResolvedStep, ResolvedTask

DOC = {"text": "one two"}


def task(name: str, digest: str = "") -> ResolvedTask:
    return ResolvedTask(name, "1.0.0", digest or f"sha-{name}", "task.py", "default", 0, 30, 0)


# a -> b -> d, a -> c -> d: each step's input is mapped from what it waits for.
SHAPE = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def mapping_of(step: str, deps: list[str]) -> dict[str, Any]:
    return {f"from_{d}": f"$.{d}.out" for d in deps} or {"text": "$.text"}


def plan(version: str, digests: dict[str, str] | None = None, **mappings: Any) -> Plan:
    ids = frozenset(SHAPE)
    steps = [
        PlannedStep(
            s,
            task(s, (digests or {}).get(s, "")),
            deps,
            [d for d, ds in SHAPE.items() if s in ds],
            30,
            0,
            mappings.get(s, mapping_of(s, deps)),
            i + 1,
            ids,
        )
        for i, (s, deps) in enumerate(SHAPE.items())
    ]
    return Plan(steps, ["d"], 0, pipeline_id="p", pipeline_version=version)


def ran(plan_: Plan, states: dict[str, str], state: str = "FAILED", **extra: Any) -> Run:
    steps = [
        StepRun(
            p.step_id,
            p.task.task_id,
            p.task.version,
            states.get(p.step_id, "PENDING"),
            attempt=1,
            input_id=p.input_id,
            output_id=p.output_id,
            lineage=[(f"from_{p.step_id}", p.input_id)],
            output_json=json.dumps({"out": p.step_id})
            if states.get(p.step_id) == "COMPLETED"
            else "",
            cached_from=extra.get("cached", {}).get(p.step_id, ""),
        )
        for p in plan_.steps
    ]
    return Run(
        run_id=extra.get("run_id", "old"),
        state=state,
        priority=0,
        input_json=json.dumps(extra.get("doc", DOC)),
        pipeline_id=extra.get("pipeline_id", "p"),
        pipeline_version=plan_.pipeline_version,
        steps=steps,
    )


class Catalog:
    """The registry's pipeline versions, as the scheduler's catalog resolves them."""

    def __init__(self, *plans: Plan) -> None:
        self.plans = {p.pipeline_version: p for p in plans}

    async def resolve_pipeline(self, namespace: str, ref: str, field: str) -> ResolvedPipeline:
        _, _, version = ref.partition("@")
        if version not in self.plans:
            raise NotFound(f"no pipeline {ref}", field=field)
        return ResolvedPipeline(
            "p",
            version,
            True,
            {},
            [
                ResolvedStep(p.step_id, p.task, p.deps, 30, 0, p.mapping, for_each=p.for_each)
                for p in self.plans[version].steps
            ],
        )


def taken(old: Run, new: Plan, catalog: Catalog, doc: dict[str, Any] = DOC) -> dict[str, str]:
    async def get(run_id: str, namespace: str) -> Run:
        if run_id != old.run_id:
            raise NotFound(f"no run {run_id}", field="run_id")
        return old

    req = SubmitRequest(pipeline="p", reuse_from=old.run_id)
    found = asyncio.run(run_reuse.taken_over(get, catalog, req, new, doc))  # type: ignore[arg-type]
    return {step: t.source for step, t in found.steps.items()}


def test_the_steps_it_completed_are_taken_over_and_the_rest_run() -> None:
    v1 = plan("1.0.0")
    old = ran(v1, {"a": "COMPLETED", "b": "COMPLETED", "c": "FAILED"})
    assert taken(old, v1, Catalog(v1)) == {"a": "old/output_001", "b": "old/output_002"}


def test_a_newer_version_keeps_only_what_it_did_not_change_and_what_reads_only_that() -> None:
    v1 = plan("1.0.0")
    old = ran(v1, {"a": "COMPLETED", "b": "COMPLETED", "c": "FAILED"})
    fixed_c = plan("1.1.0", {"c": "sha-c-fixed"})
    assert taken(old, fixed_c, Catalog(v1, fixed_c)) == {
        "a": "old/output_001",
        "b": "old/output_002",
    }
    # b's code changed: b runs again, and so would d; a stays.
    new_b = plan("1.2.0", {"b": "sha-b-new"})
    assert taken(old, new_b, Catalog(v1, new_b)) == {"a": "old/output_001"}
    # a's input mapping changed: its input is another, and everything after it is too.
    new_a = plan("1.3.0", a={"text": "$.title"})
    assert taken(old, new_a, Catalog(v1, new_a), doc=DOC) == {}


def test_a_step_run_per_item_of_another_list_is_not_taken_over() -> None:
    """b's for_each is part of what it is: the same task and mapping over another list (or
    over one list, and then not) computed another output."""
    v1 = plan("1.0.0")
    each = fan_out.parse({"x": "$.a.out"}, set(SHAPE), {"a"}, set(), "s")
    old = ran(v1, {"a": "COMPLETED", "b": "COMPLETED", "c": "FAILED"})
    fanned = plan("1.1.0")
    fanned.steps[1].for_each = each
    assert taken(old, fanned, Catalog(v1, fanned)) == {"a": "old/output_001"}
    assert taken(old, v1, Catalog(v1, fanned)) == {"a": "old/output_001", "b": "old/output_002"}


def test_a_step_taken_over_keeps_its_input_edges_unless_its_ids_moved() -> None:
    v1 = plan("1.0.0")
    old = ran(v1, {"a": "COMPLETED", "b": "FAILED"})
    req = SubmitRequest(pipeline="p", reuse_from="old")

    def found_in(run: Run) -> dict[str, run_reuse.TakenOver]:
        async def get(run_id: str, namespace: str) -> Run:
            return run

        return asyncio.run(run_reuse.taken_over(get, Catalog(v1), req, v1, DOC)).steps  # type: ignore[arg-type]

    assert found_in(old)["a"].edges == (("from_a", "input_001"),)
    moved = [dataclasses.replace(s, input_id="input_009") for s in old.steps]
    assert found_in(dataclasses.replace(old, steps=moved))["a"].edges == ()


def test_an_output_taken_over_before_names_where_it_was_computed() -> None:
    v1 = plan("1.0.0")
    old = ran(v1, {"a": "COMPLETED", "b": "FAILED"}, cached={"a": "first/output_001"})
    assert taken(old, v1, Catalog(v1)) == {"a": "first/output_001"}


def test_the_new_run_is_created_with_those_steps_completed() -> None:
    v1 = plan("1.0.0")
    old = ran(v1, {"a": "COMPLETED", "c": "FAILED"})
    req = SubmitRequest(pipeline="p", reuse_from="old")
    run, submission = new_run(req, v1, DOC, "")
    found = {"a": run_reuse.TakenOver('{"out": "a"}', "old/output_001", (("in", "input_001"),))}
    run, submission = run_reuse.applied(run, submission, run_reuse.Resumed(found), old.run_id)
    assert submission.done == {"a": '{"out": "a"}'} and set(submission.done_fields) == {"a"}
    assert submission.done_fields["a"]["cached_from"] == "old/output_001"
    assert "resumes run old: 1 of 4 steps" in submission.note
    [record] = run_reuse.records(run)
    assert (record.step_id, record.state, record.attempt) == ("a", "COMPLETED", 0)
    # Where its input came from, as the old step recorded it, and where its output did.
    assert record.lineage == [("in", "input_001"), ("old/output_001", "output_001")]
    assert record.ended_at == run.created_at
    assert [s.state for s in run.steps] == ["COMPLETED", "PENDING", "PENDING", "PENDING"]


@pytest.mark.parametrize(
    ("state", "says"),
    [("RUNNING", "has not ended"), ("QUEUED", "has not ended"), ("COMPLETED", "completed")],
)
def test_only_a_run_that_ended_unfinished_is_resumed(state: str, says: str) -> None:
    v1 = plan("1.0.0")
    with pytest.raises(FailedPrecondition) as err:
        taken(ran(v1, {"a": "COMPLETED"}, state=state), v1, Catalog(v1))
    assert err.value.field == "reuse_from" and says in str(err.value)


def test_another_pipeline_another_input_or_nothing_left_to_run_is_refused() -> None:
    v1 = plan("1.0.0")
    with pytest.raises(FailedPrecondition) as err:
        taken(ran(v1, {"a": "COMPLETED"}, pipeline_id="q"), v1, Catalog(v1))
    assert err.value.field == "reuse_from" and "ran q, not p" in str(err.value)
    with pytest.raises(FailedPrecondition) as err:
        taken(ran(v1, {"a": "COMPLETED"}), v1, Catalog(v1), doc={"text": "other"})
    assert err.value.field == "input_json"
    # Cancelled after its last step completed: nothing would be left to run.
    every = {s: "COMPLETED" for s in SHAPE}
    with pytest.raises(FailedPrecondition) as err:
        taken(ran(v1, every, state="CANCELLED"), v1, Catalog(v1))
    assert "nothing would run" in str(err.value)
    # A version no longer registered cannot be compared with.
    with pytest.raises(FailedPrecondition) as err:
        taken(ran(v1, {"a": "COMPLETED"}), plan("2.0.0"), Catalog(plan("2.0.0")))
    assert "no longer registered" in str(err.value)


def test_an_unknown_run_is_not_found_naming_reuse_from() -> None:
    v1 = plan("1.0.0")

    async def get(run_id: str, namespace: str) -> Run:
        raise NotFound(f"no run {run_id}", field="run_id")

    req = SubmitRequest(pipeline="p", reuse_from="gone")
    with pytest.raises(NotFound) as err:
        asyncio.run(run_reuse.taken_over(get, Catalog(v1), req, v1, DOC))  # type: ignore[arg-type]
    assert err.value.field == "reuse_from" and "gone" in str(err.value)


def test_a_submit_without_reuse_from_reads_nothing() -> None:
    async def get(run_id: str, namespace: str) -> Run:
        raise AssertionError("read a run")

    found = asyncio.run(
        run_reuse.taken_over(get, Catalog(), SubmitRequest(task="t"), plan("1"), DOC)
    )  # type: ignore[arg-type]
    assert not found and found.steps == {} and found.items == {}


def test_a_for_each_step_that_did_not_complete_hands_over_the_items_that_did() -> None:
    """b runs once per item of a's list; the old run completed a and two of b's three
    instances: the new run takes a over and gives b those two items (its done_items), so
    only the third runs. With a not taken over (another list, maybe), b takes nothing."""
    v1 = plan("1.0.0")
    v1.steps[1].for_each = fan_out.parse({"x": "$.a.out"}, set(SHAPE), {"a"}, set(), "s")
    old = ran(v1, {"a": "COMPLETED", "b": "FAILED"})
    done = [
        StepRun(f"b[{i}]", "b", "1.0.0", state, 1, output_id=f"output_002_000{i}",
                output_json=json.dumps({"y": i}))
        for i, state in enumerate(["COMPLETED", "FAILED", "COMPLETED"])
    ]  # fmt: skip
    old = dataclasses.replace(old, steps=[*old.steps, *done])

    async def get(run_id: str, namespace: str) -> Run:
        return old

    req = SubmitRequest(pipeline="p", reuse_from="old")
    found = asyncio.run(run_reuse.taken_over(get, Catalog(v1), req, v1, DOC))  # type: ignore[arg-type]
    assert set(found.steps) == {"a"} and set(found.items) == {"b"}
    assert found.items["b"] == {
        "0": {
            "output": '{"y": 0}',
            "fields": {"attempt": "0", "cached_from": "old/output_002_0000"},
        },
        "2": {
            "output": '{"y": 2}',
            "fields": {"attempt": "0", "cached_from": "old/output_002_0002"},
        },
    }
    run, submission = run_reuse.applied(*new_run(req, v1, DOC, ""), found, "old")
    assert json.loads(submission.done_fields["b"]["done_items"]) == found.items["b"]
    assert "b" not in submission.done and submission.note.endswith(", and 2 items of a for_each")
    a_failed = dataclasses.replace(
        old,
        steps=[
            dataclasses.replace(s, state="FAILED") if s.step_id == "a" else s for s in old.steps
        ],
    )

    async def get_failed(run_id: str, namespace: str) -> Run:
        return a_failed

    found = asyncio.run(run_reuse.taken_over(get_failed, Catalog(v1), req, v1, DOC))  # type: ignore[arg-type]
    assert not found.steps and not found.items


def test_steps_are_compared_parents_first_whatever_order_they_are_listed_in() -> None:
    """A step is taken over only after what it reads is; so the steps are put in order
    first. Should a plan ever not be a DAG, what cannot be placed comes last, as listed."""
    from services.scheduler.run_reuse import _in_order

    steps = plan("1.0.0").steps
    backwards = list(reversed(steps))
    assert [p.step_id for p in _in_order(backwards)] == ["a", "c", "b", "d"]
    assert [p.step_id for p in _in_order(steps)] == ["a", "b", "c", "d"]
    looped = [dataclasses.replace(p, deps=["d"]) if p.step_id == "a" else p for p in steps]
    assert [p.step_id for p in _in_order(looped)] == ["a", "b", "c", "d"]  # none placeable
    assert _in_order([]) == []
