"""How a run's plan is kept in MongoDB without repeating what other runs share.

Every run document carries the plan that rebuilds the run in Redis if Redis loses it
(``plan_doc``): the run's fields and its steps. The steps are the same for every
run of a task version or pipeline version (1,000 runs of a batch: 1,000 copies), and most
run fields repeat the document's own top-level fields. So a run document keeps:

- ``steps_id``: the id of a *step template* in ``run_plans`` (a hash of the steps, so equal
  steps share one template, written once);
- ``span_parent``: the one trace parent every step of a traced run carries, taken out of the
  steps so that traced runs share templates too;
- ``run_fields``: only the fields the document does not hold already, with
  ``fields_from_run`` set (kept whole when any of them differs, which a new run never does).

``expand`` gives back exactly the plan ``compact_many`` was given. Documents written before this
(with the whole plan inline) are read as they are. A smaller document is cheaper to write in
any MongoDB; nx-27017 (the local stack's) pays per byte for each indexed field, so a run's
insert costs it ~40% less.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from services.scheduler.models import run_hash_fields
from services.scheduler.queue_records import Submission

log = logging.getLogger(__name__)


def template_id(steps: list[dict[str, Any]]) -> str:
    text = json.dumps(steps, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def plan_doc(s: Submission) -> dict[str, Any]:
    """What MongoDB keeps to rebuild the run in Redis: with the steps a resume took over
    (their outputs and what their hashes show), which have no attempt records of their own
    until the write-behind writes them."""
    doc: dict[str, Any] = {
        "run_fields": s.run_fields,
        "steps": [
            {"step_id": x.step_id, "deps": x.deps, "dependents": x.dependents, "fields": x.fields}
            for x in s.steps
        ],
    }
    if s.done:
        doc["taken_over"] = {
            step_id: {"output": output, "shown": s.done_fields.get(step_id, {})}
            for step_id, output in s.done.items()
        }
    return doc


def compact_many(
    docs: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The documents with their plans compacted, and the step templates they refer to. The
    runs of one batch share their steps' field dicts, so their steps are hashed once."""
    ids: dict[tuple[Any, ...], str] = {}  # by the identity of the steps' parts
    templates: dict[str, list[dict[str, Any]]] = {}
    compacted = []
    for doc in docs:
        plan = doc.get("plan")
        if not plan or "steps" not in plan or "run_fields" not in plan:
            compacted.append(doc)  # nothing to share
            continue
        run_fields: dict[str, str] = plan["run_fields"]
        steps: list[dict[str, Any]] = plan["steps"]
        short: dict[str, Any] = {}
        derived = run_hash_fields(doc)
        if all(run_fields.get(k) == v for k, v in derived.items()):
            short["run_fields"] = {k: v for k, v in run_fields.items() if k not in derived}
            short["fields_from_run"] = True
        else:
            short["run_fields"] = run_fields
        parents = {s["fields"].get("span_parent") for s in steps}
        traced = len(parents) == 1 and (parent := parents.pop()) is not None
        if traced:
            short["span_parent"] = parent
        key = _template_key(steps, traced)
        tid = ids.get(key) if key is not None else None
        if tid is None:
            if traced:
                steps = [
                    {**s, "fields": {k: v for k, v in s["fields"].items() if k != "span_parent"}}
                    for s in steps
                ]
            tid = template_id(steps)
            if key is not None:
                ids[key] = tid
            templates.setdefault(tid, steps)
        short["steps_id"] = tid
        if "taken_over" in plan:  # a resumed run's own
            short["taken_over"] = plan["taken_over"]
        compacted.append({**doc, "plan": short})
    return compacted, templates


def _template_key(steps: list[dict[str, Any]], traced: bool) -> tuple[Any, ...] | None:
    """What tells, within one call, that two runs' steps make the same template without
    hashing them: the identity of their parts, shared by the runs of a batch; for traced
    runs, whose field dicts are each their own (they hold the run's span parent), what the
    fields hold besides it. None when a field's value cannot be a key (then it is hashed)."""
    if not traced:
        return tuple(
            (s["step_id"], id(s["fields"]), id(s["deps"]), id(s["dependents"])) for s in steps
        )
    key = tuple(
        (
            s["step_id"],
            id(s["deps"]),
            id(s["dependents"]),
            tuple(kv for kv in s["fields"].items() if kv[0] != "span_parent"),
        )
        for s in steps
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


def template_ids(docs: list[dict[str, Any]]) -> set[str]:
    """The step templates these run documents refer to."""
    return {d["plan"]["steps_id"] for d in docs if "steps_id" in (d.get("plan") or {})}


def expand(doc: dict[str, Any], templates: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``doc`` with the whole plan again; None as the plan when its template is missing."""
    plan = doc.get("plan")
    if not plan or "steps_id" not in plan:
        return doc  # written whole (or no plan at all)
    steps = templates.get(plan["steps_id"])
    if steps is None:
        return {**doc, "plan": None}
    run_fields = dict(plan["run_fields"])
    if plan.get("fields_from_run"):
        run_fields = {**run_hash_fields(doc), **run_fields}
    if "span_parent" in plan:
        steps = [
            {**s, "fields": {**s["fields"], "span_parent": plan["span_parent"]}} for s in steps
        ]
    whole = {"run_fields": run_fields, "steps": steps}
    if "taken_over" in plan:
        whole["taken_over"] = plan["taken_over"]
    return {**doc, "plan": whole}


class StepTemplates:
    """The ``run_plans`` collection: step templates by id, each written once."""

    KNOWN_MAX = 10_000  # ids remembered as written (then forgotten: a rewrite is harmless)

    def __init__(self, collection: AsyncCollection) -> None:
        self._templates = collection
        self._known: set[str] = set()

    async def save(self, templates: dict[str, list[dict[str, Any]]]) -> None:
        """Write the templates not written yet (before the runs that refer to them)."""
        new = {k: v for k, v in templates.items() if k not in self._known}
        if not new:
            return
        try:
            await self._templates.insert_many(
                [{"_id": k, "steps": v} for k, v in new.items()], ordered=False
            )
        except BulkWriteError as exc:  # written before (by another replica, or forgotten)
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
        if len(self._known) > self.KNOWN_MAX:
            self._known.clear()
        self._known |= new.keys()

    async def expand(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The run documents with their whole plans (one read for their templates)."""
        ids = template_ids(docs)
        found: dict[str, list[dict[str, Any]]] = {}
        if ids:
            cursor = self._templates.find({"_id": {"$in": sorted(ids)}})
            found = {d["_id"]: d["steps"] async for d in cursor}
        if missing := ids - found.keys():
            log.error("step templates %s are missing: their runs cannot be rebuilt", missing)
        return [expand(d, found) for d in docs]
