"""The registry's pipeline logic: validate configs, pin task versions, keep versions."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from common import jsondoc
from common.errors import AlreadyExists, InvalidArgument, NotFound
from common.problems import Problems
from services.common.auth import one_namespace
from services.common.paging import page_size_of
from services.registry.manifest import version_sort_key
from services.registry.models import PipelineVersion
from services.registry.pipeline_spec import (
    PinnedTask,
    PipelineSpec,
    StepSpec,
    config_path,
    config_warnings,
    parse_config,
    pin,
)
from services.registry.registry import TASK_PAGES, Registry
from services.registry.stores import PipelineStore

MAX_CONFIG_BYTES = 1024 * 1024  # a pipeline config, as JSON text


@dataclass(frozen=True)
class PipelineRegistered:
    """One pipeline of a registration, and whether this call stored it."""

    pipeline: PipelineVersion
    created: bool  # stored by this call (never in a dry run)
    registered_before: bool


def _graph_of(step: StepSpec) -> tuple[object, ...]:
    """What makes a step the same step to a run: its task, its place in the graph, its
    input."""
    return (step.task_id, step.task_version, step.digest, step.depends_on, step.input_mapping)


class Pipelines:
    """Registers pipelines against the task registry and answers questions about them."""

    def __init__(self, store: PipelineStore, tasks: Registry) -> None:
        self.store = store
        self.tasks = tasks

    def _lookup(self, namespace: str, task_id: str, version: str) -> PinnedTask:
        task = self.tasks.get_task(namespace, task_id, version)
        if task.deprecated and version:
            raise InvalidArgument(
                f"{task_id}@{version} is deprecated ({task.deprecation_reason or 'no reason'})",
                field="task_id",
            )
        m = task.manifest
        return PinnedTask(
            task.version, task.digest, m.queue, m.timeout, m.max_retries, m.concurrency_key
        )

    def register(
        self, namespace: str, config_json: str, only: str = "", validate_only: bool = False
    ) -> tuple[list[PipelineRegistered], list[str]]:
        """Validate every pipeline in the config, pin it, and (unless a dry run) store it in
        the namespace. Steps use the namespace's tasks, or other namespaces' shared ones
        ("namespace/task_id").

        Nothing is stored unless every pipeline in the config is valid; a config that is
        not is refused naming each of its problems (``common.problems``). Returns the
        pipelines and a warning per key the config holds that is kept but not acted on (a key
        the registry does not know is refused).
        """
        one_namespace(namespace)
        if len(config_json.encode()) > MAX_CONFIG_BYTES:
            raise InvalidArgument(f"is over {MAX_CONFIG_BYTES} bytes", field="config_json")
        doc = jsondoc.loads(config_json, field="config_json")
        problems = Problems()  # every problem of the config, named at once
        warnings = config_warnings(doc, problems)
        lookup = functools.partial(self._lookup, namespace)
        pinned = [
            pin(spec, lookup, problems, config_path(doc, spec.pipeline_id))
            for spec in parse_config(doc, only, problems)
        ]
        problems.raise_any()
        results = []
        for spec in pinned:
            candidate = PipelineVersion(spec, namespace=namespace)
            existing = self.store.get(namespace, spec.pipeline_id, spec.version)
            if existing is not None and existing.spec != spec:
                raise AlreadyExists(
                    f"{spec.pipeline_id}@{spec.version} is registered with another definition; "
                    "versions are immutable, bump the version",
                    field=f"pipelines.{spec.pipeline_id}.version",
                )
            if existing is None:
                warnings += self._latest_change(namespace, spec, validate_only)
            results.append(
                PipelineRegistered(
                    existing or candidate,
                    existing is None and not validate_only,
                    existing is not None,
                )
            )
        if not validate_only:
            for r in results:
                if r.created and not self.store.insert(r.pipeline):
                    raise AlreadyExists(
                        f"{r.pipeline.pipeline_id}@{r.pipeline.version} was registered "
                        "concurrently; retry",
                        field="pipeline_id",
                    )
        return results, warnings

    def _latest_change(self, namespace: str, spec: PipelineSpec, dry_run: bool) -> list[str]:
        """What registering a new version does to "latest" (what a run that names no version
        gets), said in a warning whenever it changes it and the graph differs."""
        before = self.store.latest(namespace, spec.pipeline_id)
        if before is None:
            return []
        old = before.spec
        where = f"pipelines.{spec.pipeline_id}"
        if version_sort_key(spec.version) < version_sort_key(old.version):
            return [f"{where}: {spec.version} is older than {old.version}, which stays latest"]
        old_steps = {s.step_id: s for s in old.steps}
        new_steps = {s.step_id: s for s in spec.steps}
        changes = [f"step {i} added" for i in new_steps if i not in old_steps]
        changes += [f"step {i} removed" for i in old_steps if i not in new_steps]
        changes += [
            f"step {i} changed"
            for i, s in new_steps.items()
            if i in old_steps and _graph_of(s) != _graph_of(old_steps[i])
        ]
        if not changes:
            return []
        becomes = "would become" if dry_run else "is now"
        return [
            f"{where}: latest {becomes} {spec.version} (was {old.version}, used by runs that "
            f"name no version): {'; '.join(changes)}"
        ]

    def get(self, namespace: str, pipeline_id: str, version: str = "") -> PipelineVersion:
        one_namespace(namespace)
        if not pipeline_id:
            raise InvalidArgument("is required", field="pipeline_id")
        found = (
            self.store.latest(namespace, pipeline_id)
            if version in ("", "latest")
            else self.store.get(namespace, pipeline_id, version)
        )
        if found is None:
            if version not in ("", "latest"):
                self.store.missing_version(namespace, pipeline_id, version, "pipeline")
            what = pipeline_id if version in ("", "latest") else f"{pipeline_id}@{version}"
            raise NotFound(f"no pipeline {what} is registered", field="pipeline_id")
        return found

    def list(
        self, namespace: str, page_size: int = 0, page_token: str = "", pipeline_id: str = ""
    ) -> tuple[list[PipelineVersion], str]:
        one_namespace(namespace)
        filters = {"pipeline_id": pipeline_id} if pipeline_id else {}
        return self.store.page(namespace, filters, page_token, page_size_of(page_size, *TASK_PAGES))
