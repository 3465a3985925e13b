"""The plans kept in run documents: compacted (steps as a shared template, run fields the
document holds anyway left out) and expanded back to exactly what was given."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from typing import Any

from services.scheduler.history import History
from services.scheduler.models import Run
from services.scheduler.queue_records import Submission
from services.scheduler.run_docs import new_doc
from services.scheduler.stored_plans import compact_many, expand, plan_doc


def _steps(fields: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"step_id": "a", "deps": [], "dependents": ["b"], "fields": fields},
        {"step_id": "b", "deps": ["a"], "dependents": [], "fields": fields},
    ]


def _run_doc(i: int, steps: list[dict[str, Any]], **run_fields: str) -> dict[str, Any]:
    run = Run(
        f"run{i}", "QUEUED", json.dumps({"i": i}), 5, pipeline_id="p", pipeline_version="1",
        labels={"team": "x", "n": str(i)}, batch_id="batch-1", submitted_by="key1",
        created_at=datetime.now(UTC),
    )  # fmt: skip
    fields = {
        "run_id": run.run_id, "input_json": run.input_json, "priority": "5", "task_id": "",
        "pipeline_id": "p", "pipeline_version": "1", "labels": json.dumps(run.labels),
        "request_id": "", "batch_id": "batch-1", "sinks": '["b"]', "submitted_by": "key1",
        "namespace": "default", "created_ms": str(int(run.created_at.timestamp() * 1000)),
        **run_fields,
    }  # fmt: skip
    return new_doc(run, {"run_fields": fields, "steps": steps})


def test_a_batch_shares_one_template_and_each_plan_comes_back_whole() -> None:
    shared = _steps({"task_id": "t", "timeout": "30"})
    docs = [_run_doc(i, shared) for i in range(3)]
    originals = copy.deepcopy(docs)
    compacted, templates = compact_many(docs)
    assert len(templates) == 1
    for doc in compacted:
        assert "steps" not in doc["plan"]
        assert set(doc["plan"]["run_fields"]) == {"sinks"}  # the rest is the document's
    assert [expand(d, templates) for d in compacted] == originals


def test_traced_runs_share_a_template_and_keep_their_own_span_parents() -> None:
    docs = [
        _run_doc(i, _steps({"task_id": "t", "span_parent": f"00-{i:032x}-{i:016x}-01"}),
                 trace_id=f"{i:032x}", run_span=f"{i:016x}")
        for i in range(2)
    ]  # fmt: skip
    originals = copy.deepcopy(docs)
    compacted, templates = compact_many(docs)
    assert len(templates) == 1
    assert compacted[0]["plan"]["span_parent"] != compacted[1]["plan"]["span_parent"]
    assert [expand(d, templates) for d in compacted] == originals


def test_traced_runs_with_other_steps_get_other_templates() -> None:
    """Traced runs' step fields are each their own dicts: they are told apart by what they
    hold besides the span parent (a value that cannot be a key is hashed instead)."""
    variants: list[tuple[str, Any]] = [("t", "1"), ("u", "1"), ("t", "1"), ("t", ["a", "b"])]
    docs = [
        _run_doc(
            i,
            _steps({"task_id": task, "extra": extra, "span_parent": f"00-{i:032x}-{i:016x}-01"}),
            trace_id=f"{i:032x}",
            run_span=f"{i:016x}",
        )
        for i, (task, extra) in enumerate(variants)
    ]
    originals = copy.deepcopy(docs)
    compacted, templates = compact_many(docs)
    ids = [d["plan"]["steps_id"] for d in compacted]
    assert ids[0] == ids[2] and len(set(ids)) == 3 and len(templates) == 3
    assert [expand(d, templates) for d in compacted] == originals


def test_run_fields_that_differ_from_the_document_are_kept_whole() -> None:
    doc = _run_doc(1, _steps({"task_id": "t"}), priority="9")  # not the document's 5
    original = copy.deepcopy(doc)
    [compacted], templates = compact_many([doc])
    assert compacted["plan"]["run_fields"] == original["plan"]["run_fields"]
    assert expand(compacted, templates) == original


def test_different_steps_get_different_templates() -> None:
    docs = [_run_doc(1, _steps({"task_id": "t"})), _run_doc(2, _steps({"task_id": "u"}))]
    compacted, templates = compact_many(docs)
    assert len(templates) == 2
    assert compacted[0]["plan"]["steps_id"] != compacted[1]["plan"]["steps_id"]


def test_a_plan_written_whole_is_read_as_it_is_and_a_missing_template_reads_as_none() -> None:
    whole = _run_doc(1, _steps({"task_id": "t"}))
    assert expand(whole, {}) == whole
    [compacted], _ = compact_many([copy.deepcopy(whole)])
    assert expand(compacted, {})["plan"] is None


def test_a_resumed_runs_taken_over_steps_are_rebuilt_from_its_plan_alone() -> None:
    """The steps a resume took over ride in the run's plan from its insert: a Redis flush
    before the write-behind has written their records (50 ms) rebuilds them COMPLETED, with
    what they showed, instead of running them again; records written since win."""
    shown = {"executor": "e1", "started_ms": "5", "cached_from": "old-run/a/output_001"}
    sub = Submission(
        "run1", {"sinks": '["b"]'}, [], done={"a": '{"n": 1}'}, done_fields={"a": shown}
    )
    plan = plan_doc(sub)
    doc = _run_doc(1, _steps({"task_id": "t"}))
    doc["plan"] = {**plan, "run_fields": doc["plan"]["run_fields"], "steps": doc["plan"]["steps"]}
    original = copy.deepcopy(doc)
    [compacted], templates = compact_many([doc])
    back = expand(compacted, templates)
    assert back == original and back["plan"]["taken_over"]["a"]["output"] == '{"n": 1}'

    class NoRecords:
        async def step_attempts(self, run_id: str) -> list[Any]:
            return []  # none written yet

    history = History(None, NoRecords(), None)  # type: ignore[arg-type]
    rebuilt = asyncio.run(history._rebuild(back))
    assert rebuilt.done == {"a": '{"n": 1}'} and rebuilt.done_fields == {"a": shown}
    assert plan_doc(Submission("run2", {}, [])).keys() == {"run_fields", "steps"}  # not resumed
