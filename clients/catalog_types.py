"""What the SDK returns about the catalog: task versions, pipelines, artifacts and a
task's dependencies (``clients.types`` re-exports them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clients.wire_time import time_of
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import run_pb2


@dataclass(frozen=True)
class TaskInfo:
    """A registered task version."""

    task_id: str
    version: str
    name: str
    description: str
    category: str
    tags: list[str]
    queue: str
    digest: str
    size_bytes: int
    manifest: dict[str, Any]
    created: bool = False
    deprecated: bool = False
    deprecation_reason: str = ""
    namespace: str = ""
    shared: bool = False  # every namespace may use it, as "namespace/task_id"

    @classmethod
    def from_proto(cls, t: rpb.Task, created: bool = False) -> TaskInfo:
        return cls(
            t.task_id,
            t.version,
            t.display_name,
            t.description,
            t.category,
            list(t.tags),
            t.queue,
            t.digest,
            t.size_bytes,
            json.loads(t.manifest_json or "{}"),
            created,
            t.deprecated,
            t.deprecation_reason,
            t.namespace,
            t.shared,
        )


@dataclass(frozen=True)
class PipelineStepInfo:
    """One step of a registered pipeline, pinned to a task version."""

    step_id: str
    task_id: str
    task_version: str
    digest: str
    depends_on: list[str]
    parallel_group: str
    timeout_seconds: int
    retry_count: int
    input_mapping: dict[str, Any]
    queue: str
    cache: bool | None = None  # the step's own "cache" (None: as the pipeline's)
    # The step's own retry backoff, seconds (first, longest); None: its task's
    retry_backoff: tuple[float, float] | None = None
    # Conditions on the run's input under which it is skipped ({path, op, value}; none: it
    # always runs)
    skip_if: list[dict[str, Any]] = field(default_factory=list)
    # Run once per item of an upstream list: {input field: expression} (empty: once)
    for_each: dict[str, str] = field(default_factory=dict)
    # Waits once ready for a signal given as an input field: {field, timeout_seconds} ({}: none)
    await_signal: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineInfo:
    """A registered pipeline version."""

    pipeline_id: str
    version: str
    name: str
    description: str
    steps: list[PipelineStepInfo]
    input_validation: dict[str, Any]
    output_format: dict[str, Any]
    metadata: dict[str, Any]
    enabled: bool
    created: bool = False  # stored by the call that returned it
    registered_before: bool = False  # that version existed before the call
    namespace: str = ""
    # Keys of the registered config kept but not acted on (from RegisterPipelines).
    warnings: list[str] = field(default_factory=list)
    max_parallel_tasks: int = 0  # global_settings: 0 = no limit of its own
    enable_caching: bool = False
    log_level: str = ""
    run_timeout_seconds: int = 0  # global_settings.run_timeout: each run's limit (0: none)

    @classmethod
    def from_proto(
        cls, p: rpb.Pipeline, created: bool = False, registered_before: bool = False
    ) -> PipelineInfo:
        steps = [
            PipelineStepInfo(
                s.step_id,
                s.task_id,
                s.task_version,
                s.digest,
                list(s.depends_on),
                s.parallel_group,
                s.timeout_seconds,
                s.retry_count,
                json.loads(s.input_mapping_json or "{}"),
                s.queue,
                s.cache if s.HasField("cache") else None,
                (
                    (s.retry_backoff.first_seconds, s.retry_backoff.max_seconds)
                    if s.HasField("retry_backoff")
                    else None
                ),
                json.loads(s.skip_if_json) if s.skip_if_json else [],
                json.loads(s.for_each_json) if s.for_each_json else {},
                json.loads(s.await_signal_json) if s.await_signal_json else {},
            )
            for s in p.steps
        ]
        return cls(
            p.pipeline_id,
            p.version,
            p.display_name,
            p.description,
            steps,
            json.loads(p.input_validation_json or "{}"),
            json.loads(p.output_format_json or "{}"),
            json.loads(p.metadata_json or "{}"),
            p.enabled,
            created,
            registered_before,
            p.namespace,
            max_parallel_tasks=p.max_parallel_tasks,
            enable_caching=p.enable_caching,
            log_level=p.log_level,
            run_timeout_seconds=p.run_timeout_seconds,
        )


@dataclass(frozen=True)
class ArtifactInfo:
    """A stored artifact: an uploaded file, or an output that went by reference."""

    digest: str
    namespace: str
    size_bytes: int
    stored_at: datetime | None  # when last stored (an upload of the same bytes stores it again)

    @classmethod
    def from_proto(cls, a: rpb.Artifact) -> ArtifactInfo:
        return cls(a.digest, a.namespace, a.size_bytes, time_of(a, "store_time"))


@dataclass(frozen=True)
class DependencyInfo:
    """A backing service as a service found it just now."""

    service: str  # who checked: "registry" or "scheduler"
    name: str  # "redis", "mongodb", "s3"
    ok: bool
    detail: str
    latency_seconds: float
    # A scheduler's Redis: that replica's clock minus Redis's (None: not reported).
    clock_offset_seconds: float | None = None

    @classmethod
    def from_proto(cls, service: str, d: run_pb2.DependencyStatus) -> DependencyInfo:
        offset = d.clock_offset.ToNanoseconds() / 1e9 if d.HasField("clock_offset") else None
        return cls(service, d.name, d.ok, d.detail, d.latency.ToNanoseconds() / 1e9, offset)
