"""The registry's domain logic: accept, look up and serve task packages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.common.packaging import ArchiveLimits, inspect_archive, sha256_hex
from services.registry.manifest import parse_manifest
from services.registry.models import TaskVersion
from services.registry.stores import PackageStore, TaskStore

DIGEST = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size_of(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument("must not be negative", field="page_size")
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


@dataclass(frozen=True)
class Registered:
    """The outcome of a registration: the version, and whether this call created it."""

    task: TaskVersion
    created: bool


class Registry:
    """Registers task packages and answers questions about them."""

    def __init__(
        self,
        tasks: TaskStore,
        packages: PackageStore,
        max_package_bytes: int,
        limits: ArchiveLimits = ArchiveLimits(),
    ) -> None:
        self.tasks = tasks
        self.packages = packages
        self.max_package_bytes = max_package_bytes
        self.limits = limits

    def check_size(self, size: int) -> None:
        if size > self.max_package_bytes:
            raise InvalidArgument(
                f"package is over the {self.max_package_bytes}-byte limit", field="chunk"
            )

    def register_package(self, data: bytes, declared_sha256: str = "") -> Registered:
        """Validate and store a package archive; idempotent for identical bytes."""
        self.check_size(len(data))
        if not data:
            raise InvalidArgument("the upload carried no bytes", field="chunk")
        digest = sha256_hex(data)
        if declared_sha256 and declared_sha256.lower() != digest:
            raise InvalidArgument(
                f"declared {declared_sha256} but the bytes received hash to {digest}",
                field="header.sha256",
            )
        contents = inspect_archive(data, self.limits)
        if "task.json" not in contents.files:
            raise InvalidArgument("the package has no task.json at its root", field="task.json")
        manifest = parse_manifest(contents.files["task.json"])
        if manifest.module_path not in contents.files:
            raise InvalidArgument(
                f"entry point {manifest.entry_point!r} needs {manifest.module_path}, "
                "which the package does not contain",
                field="task.json: entry_point",
            )
        candidate = TaskVersion(manifest=manifest, digest=digest, size_bytes=len(data))
        existing = self.tasks.get(manifest.task_id, manifest.version)
        if existing is None:
            self.packages.put(digest, data)  # content-addressed: the object before the record
            if self.tasks.insert(candidate):
                return Registered(candidate, created=True)
            existing = self.tasks.get(manifest.task_id, manifest.version)
            assert existing is not None
        if existing.digest != digest:
            raise AlreadyExists(
                f"{manifest.task_id}@{manifest.version} is registered with other content "
                f"(digest {existing.digest}); versions are immutable, bump the version",
                field="task.json: version",
            )
        return Registered(existing, created=False)

    def get_task(self, task_id: str, version: str = "") -> TaskVersion:
        """One version; an empty version or "latest" means the highest semver that is not
        deprecated, preferring releases over pre-releases (as pip and npm do)."""
        if not task_id:
            raise InvalidArgument("is required", field="task_id")
        if version in ("", "latest"):
            found = self.tasks.latest(task_id, {"deprecated": False, "prerelease": False})
            found = found or self.tasks.latest(task_id, {"deprecated": False})
        else:
            found = self.tasks.get(task_id, version)
        if found is None:
            what = task_id if version in ("", "latest") else f"{task_id}@{version}"
            raise NotFound(f"no task {what} is registered", field="task_id")
        return found

    def list_tasks(
        self,
        page_size: int = 0,
        page_token: str = "",
        task_id: str = "",
        category: str = "",
        tag: str = "",
        queue: str = "",
    ) -> tuple[list[TaskVersion], str]:
        """One page of task versions and the token of the next page ("" on the last)."""
        filters: dict[str, object] = {}
        for name, value in (("task_id", task_id), ("category", category), ("queue", queue)):
            if value:
                filters[name] = value
        if tag:
            filters["tags"] = tag
        return self.tasks.page(filters, page_token, page_size_of(page_size))

    def deprecate_task(self, task_id: str, version: str, reason: str = "") -> TaskVersion:
        """Mark an exact version deprecated (kept for pinned pipelines, never "latest")."""
        if not version or version == "latest":
            raise InvalidArgument("name an exact version to deprecate", field="version")
        self.get_task(task_id, version)
        updated = self.tasks.set_fields(
            task_id, version, {"deprecated": True, "deprecation_reason": reason}
        )
        assert updated is not None
        return updated

    def open_package(self, digest: str) -> Iterator[bytes]:
        """The archive with this digest, in chunks."""
        if not DIGEST.match(digest):
            raise InvalidArgument("must be 64 lowercase hex characters (sha256)", field="digest")
        return self.packages.stream(digest)
