"""The registry's domain type, ``TaskVersion``, and its proto and MongoDB forms."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.registry.manifest import Manifest, version_sort_key
from wtm.v1 import registry_service_pb2 as pb


@dataclass(frozen=True)
class TaskVersion:
    """One immutable, registered version of a task package."""

    manifest: Manifest
    digest: str
    size_bytes: int
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

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
            "task_id": m.task_id,
            "version": m.version,
            "version_sort": version_sort_key(m.version),
            "digest": self.digest,
            "size_bytes": self.size_bytes,
            "category": m.category,
            "tags": m.tags,
            "queue": m.queue,
            "manifest_json": json.dumps(m.raw, sort_keys=True),
            "created_at": self.created_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TaskVersion:
        from services.registry.manifest import parse_manifest

        created = doc["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return cls(
            manifest=parse_manifest(doc["manifest_json"]),
            digest=doc["digest"],
            size_bytes=int(doc["size_bytes"]),
            created_at=created,
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
        )
        task.create_time.FromDatetime(self.created_at)
        return task
