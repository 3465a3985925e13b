"""How runs and their step attempts look as MongoDB documents (``runs``, ``step_runs``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.artifacts import digests_in
from common.errors import InvalidArgument
from services.scheduler.models import Run, pairs_of

# A run's document recorded from Redis because its submit's insert never landed
# (``unrecorded_runs.py``): a submit whose insert finds it there takes it as its own.
FROM_REDIS = "from_redis"


def of_name(field: str, value: str) -> dict[str, str]:
    """The query fields of the runs of a task or pipeline (``field``: "task_id" or
    "pipeline_id") named "id", or "id@version" for one version's (a task run's version is in
    its document from 2026-12-06 on)."""
    name, at, version = value.partition("@")
    if at and not (name and version):
        raise InvalidArgument(f"give an id or id@version, not {value!r}", field=field)
    return {field: name, field.replace("_id", "_version"): version}


def ms_of(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def new_doc(run: Run, plan: dict[str, Any], from_redis: bool = False) -> dict[str, Any]:
    """A run's first document: the run, its plan (to rebuild it), and ``created_ms``, an
    integer sort key for listing (integers compare the same in every MongoDB). ``_id`` is
    the run id, so updates find it by primary key (nx-27017 scans the whole collection for
    an update on any other field: 30 ms per update at 10,000 runs, against 0.3 ms by _id)."""
    created = run.created_at or datetime.now(UTC)
    doc = {"_id": run.run_id, **run.to_doc(), "plan": plan, "created_ms": ms_of(created)}
    if run.labels:  # what ListRuns filters labels on
        doc["label_pairs"] = pairs_of(run.labels)
    if from_redis:
        doc["recorded"] = FROM_REDIS
    return naming_artifacts(doc, run.input_json)


def naming_artifacts(doc: dict[str, Any], text: str) -> dict[str, Any]:
    """``doc`` with ``artifacts``, the digests ``text`` names, when it names any: the
    artifact sweep keeps what a kept record names (``artifact_sweep.py``)."""
    digests = digests_in(text)
    return {**doc, "artifacts": digests} if digests else doc


TIMES = ("created_at", "started_at", "ended_at", "queued_at")


def with_datetimes(doc: dict[str, Any]) -> dict[str, Any]:
    """Datetimes as datetimes. nx-27017 (the local stack's MongoDB) stores a datetime given
    to ``$set`` on an existing document as text; with a real MongoDB this changes nothing."""
    for key in TIMES:
        value = doc.get(key)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            doc[key] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return doc
