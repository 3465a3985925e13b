"""What the sync and the async client send and how they read the replies, written once:
each function builds one request, or turns one reply into the SDK's types."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from clients.types import CancelledRuns, PipelineInfo, ResumedRuns, RunInfo, SignaledRuns
from clients.wire_time import time_of
from common import rate_limits
from common.artifacts import is_uri, parse_uri
from common.errors import InvalidArgument
from common.packaging import sha256_hex
from common.states import State
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import scheduler_service_pb2 as spb

CHUNK = 256 * 1024
MAX_WAIT_SECONDS = 3600.0  # SubmitRunRequest.wait's limit


def _int32(value: int, field: str, rule: str) -> int:
    """``value`` when an int32 field can hold it. The services judge the range; past int32
    protobuf would raise a bare ValueError here, naming no field."""
    if not -(2**31) <= value < 2**31:
        raise InvalidArgument(f"{rule}; got {value}", field=field)
    return value


def _priority(priority: int) -> int:
    return _int32(
        priority, "priority", "must be from 1 (lowest) to 10 (highest), or 0 for the task's own"
    )


def submit(
    task: str,
    pipeline: str,
    document: dict[str, Any] | None,
    priority: int = 0,
    request_id: str = "",
    labels: dict[str, str] | None = None,
    cache: bool | None = None,
    wait_seconds: float = 0.0,
    run_timeout: float | None = None,
    start_delay: float | None = None,
) -> spb.SubmitRunRequest:
    request = spb.SubmitRunRequest(
        task=task,
        pipeline=pipeline,
        input_json=json.dumps(document or {}),
        priority=_priority(priority),
        request_id=request_id,
        labels=labels or {},
        cache=cache,
    )
    if wait_seconds:
        request.wait.FromNanoseconds(int(min(wait_seconds, MAX_WAIT_SECONDS) * 1e9))
    _set_times(request, run_timeout, start_delay)
    return request


def _set_times(
    request: spb.SubmitRunRequest | spb.SubmitRunsRequest,
    run_timeout: float | None,
    start_delay: float | None,
) -> None:
    """The run's time limit and start delay, in seconds (None: none, at once); the scheduler
    checks their range."""
    if run_timeout is not None:
        request.run_timeout.FromNanoseconds(int(run_timeout * 1e9))
    if start_delay is not None:
        request.start_delay.FromNanoseconds(int(start_delay * 1e9))


def cancel_runs(
    reason: str, batch_id: str, labels: dict[str, str] | None, task_id: str, pipeline_id: str
) -> spb.CancelRunsRequest:
    """The first page's request of ``cancel_runs`` (the scheduler checks the filters)."""
    return spb.CancelRunsRequest(
        reason=reason,
        batch_id=batch_id,
        labels=labels or {},
        task_id=task_id,
        pipeline_id=pipeline_id,
    )


def add_cancelled(result: CancelledRuns, reply: spb.CancelRunsResponse) -> None:
    """Add one page of ``cancel_runs``' answer to ``result``."""
    result.cancelled += [RunInfo.from_proto(r) for r in reply.cancelled]
    result.ended += [RunInfo.from_proto(r) for r in reply.ended]
    result.not_theirs += list(reply.not_theirs)


def resume_runs(
    batch_id: str, labels: dict[str, str] | None, task_id: str, pipeline_id: str, latest: bool
) -> spb.ResumeRunsRequest:
    """The first page's request of ``resume_runs`` (the scheduler checks the filters)."""
    return spb.ResumeRunsRequest(
        batch_id=batch_id,
        labels=labels or {},
        task_id=task_id,
        pipeline_id=pipeline_id,
        latest=latest,
    )


def add_resumed(result: ResumedRuns, reply: spb.ResumeRunsResponse) -> None:
    """Add one page of ``resume_runs``' answer to ``result``."""
    result.resumed += [(r.run_id, RunInfo.from_proto(r.resumed_by)) for r in reply.resumed]
    result.refused += [(r.run_id, r.reason) for r in reply.refused]


def in_order(result: ResumedRuns) -> ResumedRuns:
    """``result`` with its runs in the order of their ids, as the pages do not keep one."""
    result.resumed.sort(key=lambda pair: pair[0])
    result.refused.sort()
    return result


def rerun(
    run_id: str, latest: bool = False, request_id: str = "", from_failure: bool = False
) -> spb.RerunRunRequest:
    return spb.RerunRunRequest(
        run_id=run_id, latest=latest, from_failure=from_failure, request_id=request_id
    )


def signal(run_id: str, step_id: str, payload: dict[str, Any] | None) -> spb.SignalRunRequest:
    return spb.SignalRunRequest(
        run_id=run_id, step_id=step_id, payload_json=json.dumps(payload or {})
    )


def signal_runs(
    step_id: str,
    payload: dict[str, Any] | None,
    batch_id: str,
    labels: dict[str, str] | None,
    task_id: str,
    pipeline_id: str,
) -> spb.SignalRunsRequest:
    """The first page's request of ``signal_runs`` (the scheduler checks the filters)."""
    return spb.SignalRunsRequest(
        step_id=step_id,
        payload_json=json.dumps(payload or {}),
        batch_id=batch_id,
        labels=labels or {},
        task_id=task_id,
        pipeline_id=pipeline_id,
    )


def add_signaled(result: SignaledRuns, reply: spb.SignalRunsResponse) -> None:
    """Add one page of ``signal_runs``' answer to ``result``."""
    result.signaled += list(reply.signaled)
    result.refused += [(r.run_id, r.reason) for r in reply.refused]


def submit_many(
    inputs: list[dict[str, Any]],
    task: str,
    pipeline: str,
    priority: int = 0,
    request_id: str = "",
    labels: dict[str, str] | None = None,
    cache: bool | None = None,
    run_timeout: float | None = None,
    start_delay: float | None = None,
) -> spb.SubmitRunsRequest:
    request = spb.SubmitRunsRequest(
        task=task,
        pipeline=pipeline,
        inputs_json=[json.dumps(i) for i in inputs],
        priority=_priority(priority),
        request_id=request_id,
        labels=labels or {},
        cache=cache,
    )
    _set_times(request, run_timeout, start_delay)
    return request


def list_runs(
    state: str = "",
    pipeline_id: str = "",
    task_id: str = "",
    batch_id: str = "",
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    page_size: int = 100,
    page_token: str = "",
    labels: dict[str, str] | None = None,
    awaiting_signal: bool = False,
) -> spb.ListRunsRequest:
    if state and state not in State.__members__:
        raise InvalidArgument(
            f"{state!r} is not a state; one of {', '.join(State.__members__)}", field="state"
        )
    request = spb.ListRunsRequest(
        state=f"STATE_{state}" if state else "STATE_UNSPECIFIED",
        pipeline_id=pipeline_id,
        task_id=task_id,
        batch_id=batch_id,
        page_size=_int32(page_size, "page_size", "must not be negative"),
        page_token=page_token,
        labels=labels or {},
        awaiting_signal=awaiting_signal,
    )
    if created_after is not None:
        request.created_after.FromDatetime(created_after)
    if created_before is not None:
        request.created_before.FromDatetime(created_before)
    return request


def set_task_limits(
    task_id: str,
    rate_limit: str | None,
    concurrency_limit: int | None,
    reset: Sequence[str],
    rate_burst: int | None = None,
) -> spb.SetTaskLimitsRequest:
    return spb.SetTaskLimitsRequest(
        task_id=task_id,
        rate_limit=rate_limit,
        rate_burst=None
        if rate_burst is None
        else _int32(rate_burst, "rate_burst", f"must be from 1 to {rate_limits.MAX_BURST}"),
        concurrency_limit=None
        if concurrency_limit is None
        else _int32(
            concurrency_limit,
            "concurrency_limit",
            f"must be from 0 (none) to {rate_limits.MAX_CONCURRENCY}",
        ),
        reset_fields=list(reset),
    )


def delete_artifacts(artifacts: list[str]) -> rpb.DeleteArtifactsRequest:
    """A DeleteArtifacts request for artifact URIs or bare digests."""
    return rpb.DeleteArtifactsRequest(
        digests=[parse_uri(a)[0] if is_uri(a) else a for a in artifacts]
    )


def update_namespace(
    run_limit: int | None = None,
    weight: float | None = None,
    history_retention_days: float | None = None,
    reset: tuple[str, ...] | list[str] = (),
    calls_per_second: float | None = None,
) -> spb.UpdateNamespaceRequest:
    request = spb.UpdateNamespaceRequest(reset_fields=list(reset))
    if run_limit is not None:
        request.run_limit = run_limit
    if weight is not None:
        request.weight = weight
    if history_retention_days is not None:
        request.history_retention_days = history_retention_days
    if calls_per_second is not None:
        request.calls_per_second = calls_per_second
    return request


def create_api_key(
    name: str, role: str, namespace: str, ttl_seconds: float = 0
) -> apb.CreateApiKeyRequest:
    request = apb.CreateApiKeyRequest(name=name, role=role, namespace=namespace)
    if ttl_seconds:
        request.ttl.FromNanoseconds(int(ttl_seconds * 1e9))
    return request


def list_audit_events(limit: int) -> apb.ListAuditEventsRequest:
    return apb.ListAuditEventsRequest(page_size=_int32(limit, "page_size", "must not be negative"))


def audit_events(reply: apb.ListAuditEventsResponse) -> list[dict[str, Any]]:
    return [
        {
            "time": time_of(e, "time"),
            "service": e.service,
            "method": e.method,
            "key_id": e.key_id,
            "principal": e.principal,
            "role": e.role,
            "namespace": e.namespace,
            "outcome": e.outcome,
        }
        for e in reply.events
    ]


def package_messages(data: bytes) -> Iterator[rpb.UploadTaskPackageRequest]:
    """An UploadTaskPackage stream: the header (digest, size), then the archive in chunks."""
    header = rpb.UploadTaskPackageHeader(sha256=sha256_hex(data), size_bytes=len(data))
    yield rpb.UploadTaskPackageRequest(header=header)
    for i in range(0, len(data), CHUNK):
        yield rpb.UploadTaskPackageRequest(chunk=data[i : i + CHUNK])


def split_ref(ref: str) -> tuple[str, str]:
    """``"id@version"`` -> (id, version); ``"id"`` -> (id, "") for the latest."""
    ident, _, version = ref.partition("@")
    return ident, version


def register_pipelines(
    config: str | Path | dict[str, Any], pipeline_id: str, validate_only: bool
) -> rpb.RegisterPipelinesRequest:
    text = json.dumps(config) if isinstance(config, dict) else Path(config).read_text()
    return rpb.RegisterPipelinesRequest(
        config_json=text, pipeline_id=pipeline_id, validate_only=validate_only
    )


def registered_pipelines(reply: rpb.RegisterPipelinesResponse) -> list[PipelineInfo]:
    before = list(reply.registered_before) or [not c for c in reply.created]
    return [
        dataclasses.replace(PipelineInfo.from_proto(p, made, was), warnings=list(reply.warnings))
        for p, made, was in zip(reply.pipelines, reply.created, before, strict=True)
    ]
