"""The registry's domain logic: accept, look up and serve task packages."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from common.errors import AlreadyExists, InvalidArgument, NotFound
from common.packaging import ArchiveLimits, check_digest, inspect_archive, sha256_hex
from common.problems import Problems
from services.common.auth import ALL_NAMESPACES, one_namespace
from services.common.dependencies import DependencyStatus, check_blocking
from services.common.paging import page_size_of
from services.registry.manifest import (
    ENTRY_POINT_FIELD,
    check_package_entry_point,
    parse_manifest,
)
from services.registry.models import TaskVersion
from services.registry.stores import PackageStore, SharedTasks, TaskStore

TASK_PAGES = (50, 500)  # a page's default and largest size


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
        shared: SharedTasks,
        max_package_bytes: int,
        limits: ArchiveLimits = ArchiveLimits(),
    ) -> None:
        self.tasks = tasks
        self.packages = packages
        self.shared = shared
        self.max_package_bytes = max_package_bytes
        self.limits = limits

    def dependencies(self) -> list[DependencyStatus]:
        """MongoDB and the object store, each asked now."""
        return check_blocking([("mongodb", self.tasks.ping), ("s3", self.packages.ping)])

    def check_size(self, size: int) -> None:
        if size > self.max_package_bytes:
            raise InvalidArgument(
                f"package is over the {self.max_package_bytes}-byte limit", field="chunk"
            )

    def register_package(
        self, namespace: str, data: bytes, declared_sha256: str = ""
    ) -> Registered:
        """Validate and store a package archive in a namespace; idempotent for identical
        bytes. The same task id may be registered in two namespaces with other content."""
        one_namespace(namespace)
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
        problems = Problems()  # every problem of the package, named at once
        manifest = parse_manifest(contents.files["task.json"], strict=True, problems=problems)
        if all(p.field != ENTRY_POINT_FIELD for p in problems.found):  # the entry point stands
            problems.check(check_package_entry_point, manifest, contents.files)
        problems.raise_any()
        candidate = TaskVersion(
            manifest=manifest, digest=digest, size_bytes=len(data), namespace=namespace
        )
        existing = self.tasks.get(namespace, manifest.task_id, manifest.version)
        if existing is None:
            self.packages.put(digest, data)  # content-addressed: the object before the record
            if self.tasks.insert(candidate):
                return Registered(self._with_sharing(candidate), created=True)
            existing = self.tasks.get(namespace, manifest.task_id, manifest.version)
            assert existing is not None
        if existing.digest != digest:
            raise AlreadyExists(
                f"{manifest.task_id}@{manifest.version} is registered with other content "
                f"(digest {existing.digest}); versions are immutable, bump the version",
                field="task.json: version",
            )
        return Registered(self._with_sharing(existing), created=False)

    def _with_sharing(self, task: TaskVersion) -> TaskVersion:
        shared = self.shared.is_shared(task.namespace, task.task_id)
        return dataclasses.replace(task, shared=shared) if shared else task

    def get_task(self, namespace: str, task_id: str, version: str = "") -> TaskVersion:
        """One version of a task of ``namespace``, or of another namespace's shared task
        named "owner/task_id"; an empty version or "latest" means the highest semver that is
        not deprecated, preferring releases over pre-releases (as pip and npm do). A task
        of another namespace that is not shared is NOT_FOUND, as if it did not exist."""
        one_namespace(namespace)
        if not task_id:
            raise InvalidArgument("is required", field="task_id")
        owner, _, bare = task_id.rpartition("/")
        owner = owner or namespace
        what = task_id if version in ("", "latest") else f"{task_id}@{version}"
        if owner != namespace and not self.shared.is_shared(owner, bare):
            raise NotFound(f"no task {what} is registered", field="task_id")
        if version in ("", "latest"):
            found = self.tasks.latest(owner, bare, {"deprecated": False, "prerelease": False})
            found = found or self.tasks.latest(owner, bare, {"deprecated": False})
        else:
            found = self.tasks.get(owner, bare, version)
            if found is None:
                self.tasks.missing_version(owner, bare, version, "task")
        if found is None:
            raise NotFound(f"no task {what} is registered", field="task_id")
        if owner != namespace:  # shared: checked above
            return dataclasses.replace(found, shared=True)
        return self._with_sharing(found)

    def list_tasks(
        self,
        namespace: str,
        page_size: int = 0,
        page_token: str = "",
        task_id: str = "",
        category: str = "",
        tag: str = "",
        queue: str = "",
    ) -> tuple[list[TaskVersion], str]:
        """One page of a namespace's task versions and the token of the next page ("" on
        the last)."""
        one_namespace(namespace)
        filters: dict[str, object] = {}
        for name, value in (("task_id", task_id), ("category", category), ("queue", queue)):
            if value:
                filters[name] = value
        if tag:
            filters["tags"] = tag
        found, token = self.tasks.page(
            namespace, filters, page_token, page_size_of(page_size, *TASK_PAGES)
        )
        return [self._with_sharing(t) for t in found], token

    def _own(self, namespace: str, task_id: str, version: str) -> TaskVersion:
        """A task version of the caller's own namespace (sharing does not let others
        change it)."""
        if "/" in task_id:
            raise NotFound(f"no task {task_id} is registered in {namespace!r}", field="task_id")
        return self.get_task(namespace, task_id, version)

    def deprecate_task(
        self, namespace: str, task_id: str, version: str, reason: str = ""
    ) -> TaskVersion:
        """Mark an exact version deprecated (kept for pinned pipelines, never "latest")."""
        if not version or version == "latest":
            raise InvalidArgument("name an exact version to deprecate", field="version")
        self._own(namespace, task_id, version)
        updated = self.tasks.set_fields(
            namespace, task_id, version, {"deprecated": True, "deprecation_reason": reason}
        )
        assert updated is not None
        return self._with_sharing(updated)

    def share_task(self, namespace: str, task_id: str, shared: bool, by: str) -> TaskVersion:
        """Let pipelines of every namespace use this task of ``namespace`` (as
        "namespace/task_id"), or stop that; returns the task's latest version."""
        self._own(namespace, task_id, "")
        self.shared.set(namespace, task_id, shared, by)
        return self.get_task(namespace, task_id)

    def open_package(self, namespace: str, digest: str) -> Iterator[bytes]:
        """The archive with this digest, in chunks, when it is the package of a task the
        namespace may use (its own, or a shared one)."""
        check_digest(digest)
        if namespace != ALL_NAMESPACES and not self._may_read_package(namespace, digest):
            raise NotFound(f"no package with digest {digest}", field="digest")
        return self.packages.stream(digest)

    def _may_read_package(self, namespace: str, digest: str) -> bool:
        if self.tasks.find_one({"namespace": namespace, "digest": digest}) is not None:
            return True
        return any(
            self.shared.is_shared(t.namespace, t.task_id)
            for t in self.tasks.find({"digest": digest}, limit=50)
        )
