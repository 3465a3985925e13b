"""The spans of a run, recorded by the scheduler when what they cover has ended.

Shape of a run's trace (one trace per run):

    SubmitRun (gRPC server span)                 a batch's runs (SubmitRuns) are each the root
    └── run <pipeline or task>                   of a trace, linked to the SubmitRuns span,
        │                                        unless the client traced the call: then they
        │                                        are its children. Recorded when the run ends
        └── step <step_id> #<attempt>            one per attempt, queued -> ended; events
            │                                    "dispatched", "received", "process() called",
            │                                    "process() returned"; links to the attempts
            │                                    whose outputs it read
            └── execute <task_id>                by the executor (package, setup, process)

The run's span id is chosen ahead and kept in Redis (``run_span`` on the run hash, and as
``span_parent`` on each step hash, written at submit); an attempt's span id is derived from
its lease (``attempt_span_id``), so children made elsewhere, earlier, hang under the right
parent without a write at dispatch. Links to the attempts a step read (``links``) and a
retry's reason are written when there are any.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from common import telemetry
from services.common.auth import DEFAULT_NAMESPACE
from services.scheduler.listeners import RunListener

if TYPE_CHECKING:
    from services.scheduler.models import Run

TRACER = "wtm.scheduler"


def attempt_span_id(lease: str) -> int:
    """An attempt's span id, derived from its lease (unique per dispatch, kept on the step
    hash): the same wherever it is computed, here or in ``dispatch.lua`` for a downstream
    step's link, so nothing has to be written for it."""
    return int(hashlib.sha1(lease.encode()).hexdigest()[:16], 16) or 1


def span_parent(trace_id: str, run_span: str) -> str:
    """What a traced run's steps hang under (their run span), as kept on each step hash."""
    return telemetry.Parent(int(trace_id, 16), int(run_span, 16)).header()


def step_fields(
    trace_id: str,
    run_span: str,
    upstream_spans: dict[str, str],
    step: dict[str, str],
    attempt: int,
) -> tuple[dict[str, str], str]:
    """What a dispatched step's hash still needs for its span, and its traceparent (for the
    executor). The span id comes from the lease and the parent was written at submit, so a
    first attempt that reads no other step's output needs nothing written: links to the
    attempts it read, a retry's reason, and the parent of a step submitted before the
    parent was written at submit. Empty when the run is not traced or tracing is off here."""
    if not (telemetry.enabled() and trace_id and run_span):
        return {}, ""
    trace = int(trace_id, 16)
    span_id = attempt_span_id(step.get("lease", ""))
    fields = {}
    if not step.get("span_parent"):
        fields["span_parent"] = span_parent(trace_id, run_span)
    links = [telemetry.Parent(trace, int(s, 16)).header() for s in upstream_spans.values() if s]
    if links:
        fields["links"] = json.dumps(links)
    if attempt > 1:
        fields["retry_reason"] = step.get("error", "")
    return fields, telemetry.Parent(trace, span_id).header()


def _ns(ms: str | None) -> int:
    return int(ms) * 1_000_000 if ms else 0


def record_step(member: str, snapshot: dict[str, str], now_ns: int) -> None:
    """The span of the attempt a Lua call just ended (``snapshot``: the step hash after)."""
    parent = telemetry.parse(snapshot.get("span_parent", ""))
    if parent is None or not (snapshot.get("span_id") or snapshot.get("lease")):
        return
    # A span id written at dispatch (by a scheduler from before ids were derived) wins.
    span_id = int(snapshot.get("span_id") or "0", 16) or attempt_span_id(snapshot["lease"])
    run_id, _, step_id = member.partition(":")
    lineage = json.loads(snapshot.get("lineage") or "[]")
    lineage = lineage if isinstance(lineage, list) else []
    started = _ns(snapshot.get("started_ms"))
    queued = _ns(snapshot.get("queued_ms")) or started
    ended = _ns(snapshot.get("ended_ms")) or now_ns
    state = snapshot.get("state", "")
    error = snapshot.get("error", "") if state != "COMPLETED" else ""
    events: list[tuple[str, int, dict[str, Any]]] = []
    if started:
        events.append(("dispatched", started, {"wtm.executor_id": snapshot.get("executor", "")}))
    for key, name in (
        ("t_recv", "received"),
        ("t_p0", "process() called"),
        ("t_p1", "process() returned"),
    ):
        if snapshot.get(key):
            events.append((name, int(snapshot[key]) * 1000, {}))
    links = [p for h in json.loads(snapshot.get("links") or "[]") if (p := telemetry.parse(h))]
    telemetry.record_span(
        f"step {step_id} #{snapshot.get('attempt', '')}",
        parent,
        span_id,
        queued,
        max(ended, queued),
        {
            "wtm.namespace": snapshot.get("namespace") or DEFAULT_NAMESPACE,
            "wtm.run_id": run_id,
            "wtm.step_id": step_id,
            "wtm.attempt": int(snapshot.get("attempt", 0)),
            "wtm.state": "FAILED" if state == "QUEUED" else state,
            "wtm.task_id": snapshot.get("task_id"),
            "wtm.task_version": snapshot.get("task_version"),
            "wtm.task_digest": snapshot.get("digest"),
            "wtm.executor_id": snapshot.get("executor"),
            "wtm.input_id": snapshot.get("input_id"),
            "wtm.output_id": snapshot.get("output_id"),
            "wtm.lineage": [f"{a} -> {b}" for a, b in lineage],
            "wtm.retry_reason": snapshot.get("retry_reason"),
            "wtm.queued_seconds": (started - queued) / 1e9 if started else None,
            "wtm.run_seconds": (ended - started) / 1e9 if started else None,
        },
        events=events,
        links=links,
        error=error,
        tracer_name=TRACER,
    )


def record_run(run_hash: dict[str, str], lineage: list[tuple[str, str]]) -> None:
    """The run's span, once it has ended."""
    parent = telemetry.parse(run_hash.get("trace_parent", ""))
    if parent is None or not run_hash.get("run_span"):
        return
    what = run_hash.get("pipeline_id") or run_hash.get("task_id") or "run"
    created = _ns(run_hash.get("created_ms"))
    state = run_hash.get("state", "")
    telemetry.record_span(
        f"run {what}",
        parent,
        int(run_hash["run_span"], 16),
        created,
        max(_ns(run_hash.get("ended_ms")), created),
        {
            "wtm.namespace": run_hash.get("namespace") or DEFAULT_NAMESPACE,
            "wtm.run_id": run_hash.get("run_id"),
            "wtm.pipeline_id": run_hash.get("pipeline_id"),
            "wtm.pipeline_version": run_hash.get("pipeline_version"),
            "wtm.task_id": run_hash.get("task_id"),
            "wtm.batch_id": run_hash.get("batch_id"),
            "wtm.state": state,
            "wtm.lineage": [f"{a} -> {b}" for a, b in lineage],
        },
        links=[p for p in [telemetry.parse(run_hash.get("trace_link", ""))] if p],
        error=run_hash.get("error", "") if state != "COMPLETED" else "",
        tracer_name=TRACER,
    )


class TracingListener(RunListener):
    """Records step spans as attempts end, and the run span once the run is recorded."""

    def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
        record_step(member, snapshot, time.time_ns())

    def run_recorded(self, run: Run, fields: dict[str, str]) -> None:
        record_run(fields, run.lineage)
