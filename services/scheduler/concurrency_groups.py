"""A concurrency limit per value of an input field (task.json ``"concurrency_key"``; Hatchet's
concurrency expression): ``"concurrency_limit": 1, "concurrency_key": "document_id"`` runs at
most one step of the task at once *per document*, while steps for other documents run beside
it.

Which group a step belongs to is decided when its run is submitted, from the value its input
will have at that field: the run's input (or the run parameters its task accepts) for a
one-step run; for a pipeline's step, what its ``input_mapping`` reads there, as long as that is
the run's input or a constant — a field mapped from another step's output is not known at
submit, so such a run is refused, naming the mapping. The value must be a string, number or
boolean. A run keeps its groups in one run field, ``conc_groups`` (step id → "field=value"),
which ``submit_run.lua`` appends to each such step's ``conc_key`` ("<namespace>/<task>#…"), so
the steps' templates stay shared between runs and a rebuilt run is grouped as it was. The
operators' concurrency limit of the task (``SetTaskLimits``) holds per group too."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from common.errors import FailedPrecondition, InvalidArgument
from services.common import mapping
from services.scheduler import step_inputs

if TYPE_CHECKING:
    from services.scheduler.planning import PlannedStep

MAX_VALUE_CHARS = 100  # a longer value's group is named by its hash


def group(field: str, value: Any) -> str:
    """A group's name, "field=value" (the value as JSON, so "7" and 7 are two groups)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text) > MAX_VALUE_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"{field}={text}"


_MISSING = object()


def step_value(step: PlannedStep, run_input: dict[str, Any], step_ids: set[str]) -> Any:
    """The value ``step``'s input will have at its task's concurrency key, as far as the run's
    input decides it (``_MISSING`` when it will have none)."""
    key = step.task.concurrency_key
    if key in step.mapping:
        expr = step.mapping[key]
        if not mapping.is_expression(expr):
            return expr
        path = mapping.parse(expr, step_ids, key)
        if path.source:
            raise FailedPrecondition(
                f"task {step.task.task_id} runs at most {step.task.concurrency_limit} at once "
                f"per value of its input's {key!r}, which step {step.step_id!r} maps from step "
                f"{path.source!r}'s output: the value must be known when the run is submitted",
                field=f"steps.{step.step_id}.input_mapping.{key}",
            )
        try:
            return mapping.evaluate(path, run_input)
        except mapping.MissingValue:
            return _MISSING
    document, _ = step_inputs.with_parameters(
        {} if step.mapping else dict(run_input),
        run_input,
        step.step_id,
        step_inputs.accepted_fields(step.task.input_schema),
        "",
    )
    return document.get(key, _MISSING)


def of_run(steps: list[PlannedStep], run_input: Any) -> dict[str, str]:
    """Each step's group (step id → "field=value"), for the steps whose task has a concurrency
    key. Raises ``InvalidArgument`` naming the input field when a step's value is missing or not
    a string, number or boolean."""
    keyed = [p for p in steps if p.task.concurrency_key and p.task.concurrency_limit]
    if not keyed:
        return {}
    doc = run_input if isinstance(run_input, dict) else {}
    step_ids = {p.step_id for p in steps}
    found = {}
    for p in keyed:
        key = p.task.concurrency_key
        value = step_value(p, doc, step_ids)
        if value is _MISSING or value is None or isinstance(value, (list, dict)):
            got = "nothing" if value is _MISSING else repr(value)
            raise InvalidArgument(
                f"task {p.task.task_id} runs at most {p.task.concurrency_limit} at once per "
                f"value of {key!r}: step {p.step_id!r}'s input must have a string, number or "
                f"boolean there; got {got}",
                field=f"input_json.{key}",
            )
        found[p.step_id] = group(key, value)
    return found
