"""The registry's domain types, ``TaskVersion`` and ``PipelineVersion``, and their proto and
MongoDB forms."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.common.auth import DEFAULT_NAMESPACE
from services.registry.manifest import Manifest, parse_manifest, version_sort_key
from services.registry.pipeline_spec import PipelineSpec
from wtm.v1 import registry_service_pb2 as pb


@dataclass(frozen=True)
class TaskVersion:
    """One immutable, registered version of a task package."""

    manifest: Manifest
    digest: str
    size_bytes: int
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deprecated: bool = False
    deprecation_reason: str = ""
    namespace: str = DEFAULT_NAMESPACE
    shared: bool = False  # not stored with the version: the registry's SharedTasks says

    @property
    def task_id(self) -> str:
        return self.manifest.task_id

    @property
    def version(self) -> str:
        return self.manifest.version

    def to_doc(self) -> dict[str, Any]:
        """The MongoDB document. The manifest is kept as text: JSON Schema keys such as
        ``$schema`` are not valid MongoDB field names."""
        m = self.manifest
        return {
            "namespace": self.namespace,
            "task_id": m.task_id,
            "version": m.version,
            "version_sort": version_sort_key(m.version),
            "prerelease": "-" in m.version.split("+")[0],
            "digest": self.digest,
            "size_bytes": self.size_bytes,
            "category": m.category,
            "tags": m.tags,
            "queue": m.queue,
            "manifest_json": json.dumps(m.raw, sort_keys=True),
            "created_at": self.created_at,
            "deprecated": self.deprecated,
            "deprecation_reason": self.deprecation_reason,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TaskVersion:
        return cls(
            manifest=parse_manifest(doc["manifest_json"]),
            digest=doc["digest"],
            size_bytes=int(doc["size_bytes"]),
            created_at=_aware(doc["created_at"]),
            deprecated=bool(doc.get("deprecated", False)),
            deprecation_reason=doc.get("deprecation_reason", ""),
            namespace=doc.get("namespace", DEFAULT_NAMESPACE),
        )

    def to_proto(self) -> pb.Task:
        m = self.manifest
        task = pb.Task(
            name=f"tasks/{m.task_id}/versions/{m.version}",
            task_id=m.task_id,
            version=m.version,
            display_name=m.name,
            description=m.description,
            category=m.category,
            tags=m.tags,
            queue=m.queue,
            priority=m.priority,
            timeout_seconds=m.timeout,
            max_retries=m.max_retries,
            entry_point=m.entry_point,
            digest=self.digest,
            size_bytes=self.size_bytes,
            manifest_json=json.dumps(m.raw, sort_keys=True),
            deprecated=self.deprecated,
            deprecation_reason=self.deprecation_reason,
            namespace=self.namespace,
            shared=self.shared,
        )
        task.create_time.FromDatetime(self.created_at)
        return task


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PipelineVersion:
    """One immutable, registered, pinned version of a pipeline."""

    spec: PipelineSpec
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    namespace: str = DEFAULT_NAMESPACE

    @property
    def pipeline_id(self) -> str:
        return self.spec.pipeline_id

    @property
    def version(self) -> str:
        return self.spec.version

    def to_doc(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "pipeline_id": self.spec.pipeline_id,
            "version": self.spec.version,
            "version_sort": version_sort_key(self.spec.version),
            "spec_json": self.spec.to_json(),
            "created_at": self.created_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PipelineVersion:
        return cls(
            PipelineSpec.from_json(doc["spec_json"]),
            _aware(doc["created_at"]),
            doc.get("namespace", DEFAULT_NAMESPACE),
        )

    def to_proto(self) -> pb.Pipeline:
        s = self.spec
        message = pb.Pipeline(
            name=f"pipelines/{s.pipeline_id}/versions/{s.version}",
            pipeline_id=s.pipeline_id,
            version=s.version,
            display_name=s.name,
            description=s.description,
            steps=[
                pb.PipelineStep(
                    step_id=st.step_id,
                    task_id=st.task_id,
                    task_version=st.task_version,
                    digest=st.digest,
                    depends_on=st.depends_on,
                    parallel_group=st.parallel_group,
                    timeout_seconds=st.timeout or 0,
                    retry_count=st.retry_count or 0,
                    input_mapping_json=json.dumps(st.input_mapping),
                    queue=st.queue,
                    cache=st.cache,
                    retry_backoff=(
                        pb.RetryBackoff(
                            first_seconds=st.retry_backoff, max_seconds=st.retry_backoff_max
                        )
                        if st.retry_backoff is not None and st.retry_backoff_max is not None
                        else None
                    ),
                    skip_if_json=json.dumps(st.skip_if) if st.skip_if else "",
                    for_each_json=json.dumps(st.for_each) if st.for_each else "",
                    await_signal_json=json.dumps(st.await_signal) if st.await_signal else "",
                )
                for st in s.steps
            ],
            input_validation_json=json.dumps(s.input_validation),
            output_format_json=json.dumps(s.output_format),
            metadata_json=json.dumps(s.metadata),
            enabled=s.enabled,
            namespace=self.namespace,
            max_parallel_tasks=s.max_parallel_tasks,
            enable_caching=s.enable_caching,
            log_level=s.log_level,
            run_timeout_seconds=s.run_timeout,
        )
        message.create_time.FromDatetime(self.created_at)
        return message
