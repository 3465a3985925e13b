"""Resuming an ended run: the steps of it that a new run of the same work takes over.

A submit with ``reuse_from`` (``wtm run rerun ID --from-failure``; Argo's retry, Prefect's
retry from failure, Airflow's clearing of failed tasks) names a run of the same task or
pipeline, on the same input, that FAILED, was CANCELLED or TIMED_OUT. Each step of the new
run is taken over when the old run COMPLETED it, the new plan has it with the same task
digest and input mapping, and every step it reads is taken over too: its input is then the
one the old step was given, so its output is the one the old step computed. A taken-over
step is COMPLETED when the run is created, with that output and ``cached_from`` naming where
it was computed (as a cache hit), and never leased. A newer pipeline version (``--latest``
after a fixed task was registered) keeps what it did not change. A for_each step that did
not complete, but would be taken over by those rules, hands its completed instances to the
new run (``Resumed.items``): the new run fans out again and runs only the other items.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from common.errors import FailedPrecondition, NotFound
from services.common import fan_out
from services.scheduler.models import Run, StepRun
from services.scheduler.planning import Plan, PlannedStep, SubmitRequest
from services.scheduler.queue_records import Submission
from services.scheduler.task_catalog import TaskCatalog

ENDED_UNFINISHED = ("FAILED", "CANCELLED", "TIMED_OUT")
FIELD = "reuse_from"


@dataclass(frozen=True)
class TakenOver:
    """A step's output taken over from the run it resumes, and where it was computed."""

    output_json: str
    source: str  # "run_id/output_id"
    # The old step's lineage edges (where its input came from), when its ids are this one's.
    edges: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Resumed:
    """What a resumed run takes over: whole steps, and for a for_each step that did not
    complete, its instances that did (step id -> item index -> output and fields, as
    ``lib.lua``'s ``fan_out`` reads a step's ``done_items``)."""

    steps: dict[str, TakenOver] = dataclasses.field(default_factory=dict)
    items: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.steps or self.items)


# What makes two plans' step the same work, given the same input: the task code, what its
# input is made of, and what it waits for.
def _identity(
    task_digest: str, mapping: dict[str, Any], deps: list[str], each: fan_out.ForEach | None = None
) -> tuple[str, str]:
    fan = each.to_json() if each else {}  # a step run per item of a list: which list
    return task_digest, json.dumps([mapping, sorted(deps), fan], sort_keys=True)


async def taken_over(
    get: Callable[[str, str], Awaitable[Run]],
    catalog: TaskCatalog,
    req: SubmitRequest,
    plan: Plan,
    doc: dict[str, Any],
) -> Resumed:
    """The steps of ``plan`` that the run ``req.reuse_from`` has done (step id -> output),
    and the items its unfinished for_each steps have; refused when that run is not one to
    resume with this submit."""
    if not req.reuse_from:
        return Resumed()
    try:
        old = await get(req.reuse_from, req.namespace)
    except NotFound:
        raise NotFound(f"no run {req.reuse_from}", field=FIELD) from None
    if old.state not in ENDED_UNFINISHED:
        done = "completed: every step has its output" if old.state == "COMPLETED" else "not ended"
        raise FailedPrecondition(f"run {old.run_id} has {done}; nothing to resume", field=FIELD)
    if (old.task_id, old.pipeline_id) != (plan.task_id, plan.pipeline_id):
        raise FailedPrecondition(
            f"run {old.run_id} ran {old.task_id or old.pipeline_id}, "
            f"not {plan.task_id or plan.pipeline_id}",
            field=FIELD,
        )
    if json.loads(old.input_json or "{}") != doc:
        raise FailedPrecondition(
            f"differs from run {old.run_id}'s input, which its outputs were computed from",
            field="input_json",
        )
    before = await _identities(catalog, req.namespace, old, plan)
    completed = {s.step_id: s for s in old.steps if s.state == "COMPLETED"}
    found: dict[str, TakenOver] = {}
    items: dict[str, dict[str, Any]] = {}
    for p in _in_order(plan.steps):
        step = completed.get(p.step_id)
        same = before.get(p.step_id) == _identity(p.task.digest, p.mapping, p.deps, p.for_each)
        if not same or not all(src in found for src in p.reads):
            continue  # other work, or on another input
        if step is None and p.for_each:
            items[p.step_id] = _items_done(old, p, completed)  # the same list, in part done
        if step is not None:
            same_ids = (step.input_id, step.output_id) == (p.input_id, p.output_id)
            found[p.step_id] = TakenOver(
                step.output_json,
                step.cached_from or f"{old.run_id}/{step.output_id}",
                tuple(step.lineage) if same_ids else (),
            )
    if len(found) == len(plan.steps):
        raise FailedPrecondition(
            f"run {old.run_id} completed every step this run has; nothing would run",
            field=FIELD,
        )
    return Resumed(found, {k: v for k, v in items.items() if v})


def _items_done(old: Run, p: PlannedStep, completed: dict[str, StepRun]) -> dict[str, Any]:
    """The instances of for_each step ``p`` that ``old`` completed, as ``done_items``: each
    item's output, and the fields of an instance taken over (attempt 0, where it came from)."""
    found: dict[str, Any] = {}
    for step_id, s in completed.items():
        if (at := fan_out.instance_of(step_id)) is None or at[0] != p.step_id:
            continue
        fields = {
            "attempt": "0",
            "cached_from": s.cached_from or f"{old.run_id}/{s.output_id}",
            **({"ended_ms": str(int(s.ended_at.timestamp() * 1000))} if s.ended_at else {}),
        }
        found[str(at[1])] = {"output": s.output_json, "fields": fields}
    return found


async def _identities(
    catalog: TaskCatalog, namespace: str, old: Run, plan: Plan
) -> dict[str, tuple[str, str]]:
    """Each of the old run's steps' identity (``_identity``), from the version it ran."""
    if old.task_id:  # one step, no mapping: its version says its digest
        [p] = plan.steps
        same = [s for s in old.steps if s.task_version == p.task.version]
        return {s.step_id: _identity(p.task.digest, {}, []) for s in same}
    if old.pipeline_version == plan.pipeline_version:
        return {
            p.step_id: _identity(p.task.digest, p.mapping, p.deps, p.for_each) for p in plan.steps
        }
    try:
        ran = await catalog.resolve_pipeline(
            namespace, f"{old.pipeline_id}@{old.pipeline_version}", field=FIELD
        )
    except NotFound:
        raise FailedPrecondition(
            f"run {old.run_id} ran {old.pipeline_id}@{old.pipeline_version}, which is no "
            "longer registered: its steps cannot be compared with this run's",
            field=FIELD,
        ) from None
    return {
        s.step_id: _identity(s.task.digest, s.input_mapping, s.depends_on, s.for_each)
        for s in ran.steps
    }


def _in_order(steps: list[PlannedStep]) -> list[PlannedStep]:
    """``steps`` with every step after the steps it reads (a registered pipeline is a DAG;
    should one not be, what cannot be placed comes last, and is not taken over)."""
    placed: dict[str, PlannedStep] = {}
    while len(placed) < len(steps):
        before = len(placed)
        for p in steps:
            if p.step_id not in placed and all(src in placed for src in p.reads):
                placed[p.step_id] = p
        if len(placed) == before:
            return [*placed.values(), *(p for p in steps if p.step_id not in placed)]
    return list(placed.values())


def applied(
    run: Run, submission: Submission, resumed_with: Resumed, resumed: str
) -> tuple[Run, Submission]:
    """``run`` and its ``submission`` with the steps taken over COMPLETED already, and the
    items taken over given to their for_each steps."""
    found = resumed_with.steps
    steps = [
        dataclasses.replace(
            s,
            state="COMPLETED",
            output_json=found[s.step_id].output_json,
            cached_from=found[s.step_id].source,
            ended_at=run.created_at,
            lineage=list(
                dict.fromkeys([*found[s.step_id].edges, (found[s.step_id].source, s.output_id)])
            ),
        )
        if s.step_id in found
        else s
        for s in run.steps
    ]
    notes = {s.step_id: s.ended_fields() for s in steps if s.step_id in found}
    notes.update({k: {"done_items": json.dumps(v)} for k, v in resumed_with.items.items()})
    items = sum(len(v) for v in resumed_with.items.values())
    return dataclasses.replace(run, steps=steps), dataclasses.replace(
        submission,
        done={k: v.output_json for k, v in found.items()},
        done_fields=notes,
        note=f"resumes run {resumed}: {len(found)} of {len(steps)} steps taken over"
        + (f", and {items} items of a for_each" if items else ""),
    )


def records(run: Run) -> list[StepRun]:
    """The step records of what ``run`` took over (history keeps them as attempts)."""
    return [s for s in run.steps if s.cached_from and s.state == "COMPLETED"]


def with_signals(submission: Submission, kept: dict[str, dict[str, str]]) -> Submission:
    """``submission`` with the signals the run it resumes got (``kept``: step fields by step
    id, ``SignalRecords.read``) given to its steps that await one and were not taken over:
    an approval once given is not asked for again (Temporal's reset reapplies signals).
    They ride in the steps' fields, so the plan MongoDB keeps has them too."""
    steps = [
        dataclasses.replace(s, fields={**s.fields, **kept[s.step_id]})
        if s.step_id in kept and "signal" in s.fields and s.step_id not in submission.done
        else s
        for s in submission.steps
    ]
    return dataclasses.replace(submission, steps=steps)
