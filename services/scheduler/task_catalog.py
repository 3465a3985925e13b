"""``TaskCatalog``: the scheduler's view of the registry — tasks and pipelines resolved to
pinned versions. Pinned versions are immutable, so they are cached for good; what ``latest``
means is cached for ``latest_ttl`` seconds (default 1), so a burst of submits asks the
registry once, and a newly registered version is picked up within that time. So is another
namespace's shared task, and a pipeline that uses one: its admin may stop sharing it.

Such an entry is refreshed ahead of its end: a submit that finds it in the second half of
its time answers from it and asks the registry in the background, so a steady stream of
submits never waits for the registry (one a second did: ~1-6 ms more on the local stack,
the registry reading MongoDB), and no answer is older than ``latest_ttl``, as before. A
refresh that fails changes nothing: the entry ends in time, and the next submit asks the
registry itself and gets its error (Caffeine's and Guava's ``refreshAfterWrite``)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from common import rate_limits, retry_backoff
from common.client_core import AsyncCaller, Metadata
from common.errors import InvalidArgument, NotFound, Unavailable, WtmError
from services.common import conditions, fan_out, signals
from services.common.auth import NAMESPACE_HEADER
from services.common.stopping import cancel_and_wait
from services.scheduler.queue_names import queue_variant
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedTask:
    """What the scheduler needs to run a task version."""

    task_id: str
    version: str
    digest: str
    entry_point: str
    queue: str
    priority: int
    timeout_seconds: int
    max_retries: int
    input_schema: dict[str, Any] = field(default_factory=dict)
    executor_labels: dict[str, str] = field(default_factory=dict)
    # task.json "batching": (max_batch_size, max_wait_ms); (0, 0) when it does not batch
    batching: tuple[int, int] = (0, 0)
    # task.json "rate_limit" as the time between two starts (ms; 0.0: no limit)
    rate_interval_ms: float = 0.0
    # task.json "rate_burst": up to this many starts at once, then the rate (1: spaced)
    rate_burst: int = 1
    # task.json "concurrency_limit": at most this many steps running at once (0: no limit)
    concurrency_limit: int = 0
    # task.json "concurrency_key": the limit holds per value of this input field ("": for all)
    concurrency_key: str = ""
    # task.json "concurrency_strategy" when every place is held: "wait", "cancel_in_progress",
    # "cancel_newest"
    concurrency_strategy: str = "wait"
    # task.json "retry_backoff" / "retry_backoff_max": (first, longest) retry delay in ms;
    # None: the scheduler's own policy
    retry_backoff_ms: tuple[int, int] | None = None

    @property
    def retry_fields(self) -> dict[str, str]:
        """Its steps' own retry backoff, which complete.lua reads ({}: the scheduler's)."""
        return retry_fields(self.retry_backoff_ms)

    @property
    def queue_key(self) -> str:
        """The queue its steps wait on: the task's queue, or a variant of it for executors
        with the task's labels ("default|gpu=true,zone=eu")."""
        return queue_variant(self.queue, self.executor_labels)


@dataclass(frozen=True)
class ResolvedStep:
    """A pipeline step, pinned."""

    step_id: str
    task: ResolvedTask
    depends_on: list[str]
    timeout_seconds: int
    retry_count: int
    input_mapping: dict[str, Any]
    queue: str = ""  # the step's queue (the task's, unless the pipeline set its own)
    cache: bool | None = None  # the step's "cache" key (None: as the pipeline's)
    retry_backoff_ms: tuple[int, int] | None = None  # the step's own (None: the task's)
    # on the run's input or an upstream output: skipped if one holds
    skip_if: tuple[conditions.Condition, ...] = ()
    for_each: fan_out.ForEach | None = None  # run once per item of an upstream list
    await_signal: signals.AwaitSignal | None = None  # waits for a signal once ready

    @property
    def queue_key(self) -> str:
        """The queue its attempts wait on, with the task's executor labels."""
        return queue_variant(self.queue or self.task.queue, self.task.executor_labels)


@dataclass(frozen=True)
class ResolvedPipeline:
    """A pipeline version with its steps resolved to runnable tasks."""

    pipeline_id: str
    version: str
    enabled: bool
    input_validation: dict[str, Any]
    steps: list[ResolvedStep]
    max_parallel_tasks: int = 0  # global_settings.max_parallel_tasks (0: no limit)
    enable_caching: bool = False
    log_level: str = ""
    run_timeout_seconds: int = 0  # global_settings.run_timeout (0: none)


def batching_of(manifest: dict[str, Any]) -> tuple[int, int]:
    """A manifest's (max_batch_size, max_wait_ms); (0, 0) when it does not batch (a batch of
    one is no batch)."""
    b = manifest.get("batching") or {}
    size = int(b.get("max_batch_size", 8)) if isinstance(b, dict) and b else 0
    return (size, int(b.get("max_wait_ms", 0))) if size > 1 else (0, 0)


def retry_fields(backoff: tuple[int, int] | None) -> dict[str, str]:
    """A step's fields for a retry backoff of (first, longest) ms ({}: the scheduler's)."""
    return {} if backoff is None else {"retry_ms": f"{backoff[0]},{backoff[1]}"}


def backoff_ms(manifest: dict[str, Any]) -> tuple[int, int] | None:
    """A manifest's own retry backoff in ms (checked when it was registered); None: none."""
    found = retry_backoff.of_manifest(manifest)
    return None if found is None else (round(found[0] * 1000), round(found[1] * 1000))


def _briefly(task_id: str, version: str) -> str:
    """The key a task reference is cached under for ``latest_ttl`` only ("" for one cached
    for good): what "latest" means changes, and so does whether a shared task is shared."""
    if "/" in task_id or version in ("", "latest"):
        return f"{task_id}@{version or 'latest'}"
    return ""


def split_ref(ref: str, field: str) -> tuple[str, str]:
    """``"id"`` or ``"id@version"`` -> (id, version)."""
    ident, _, version = ref.partition("@")
    if not ident:
        raise InvalidArgument("must be 'id' or 'id@version'", field=field)
    return ident, version


def _translate(exc: WtmError, field: str) -> Exception:
    """What a failed registry look-up means to the submit that asked: NOT_FOUND and
    INVALID_ARGUMENT about the submit's ``field``; anything else: the registry is out of
    reach."""
    if isinstance(exc, NotFound):  # "no task x is registered" says it: not the registry's field
        return NotFound(exc.reason, field=field)
    if isinstance(exc, InvalidArgument):
        return InvalidArgument(exc.message, field=field)
    return Unavailable(f"registry: {exc.code}: {exc.message}")


class TaskCatalog:
    """Looks task and pipeline versions up in the registry over gRPC."""

    def __init__(
        self, registry_address: str, token: str = "", latest_ttl: float = 1.0, tls_ca: str = ""
    ) -> None:
        self._registry = AsyncCaller(
            registry_address, ca=tls_ca, api_key=token, timeout=10, retry_seconds=3
        )
        self._stub = rpb_grpc.RegistryServiceStub(self._registry.channel)
        # Keyed by (namespace, id, version): the same id is another task in another namespace.
        self._tasks: dict[tuple[str, str, str], ResolvedTask] = {}
        self._pipelines: dict[tuple[str, str, str], ResolvedPipeline] = {}
        self.latest_ttl = latest_ttl
        # (kind, namespace, id) -> expiry, value
        self._latest: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._refreshing: dict[tuple[str, str, str], asyncio.Task[Any]] = {}

    def _cached_latest(
        self, kind: str, namespace: str, ident: str, refresh: Callable[[], Coroutine[Any, Any, Any]]
    ) -> Any:
        """The entry while it holds (None once it has ended); in the second half of its time
        ``refresh()`` starts in the background (one at a time per entry)."""
        key = (kind, namespace, ident)
        hit = self._latest.get(key)
        if hit is None:
            return None
        left = hit[0] - time.monotonic()
        if left <= 0:
            return None
        if left < self.latest_ttl / 2 and key not in self._refreshing:
            # In a context of its own: not the submit's (its caller, its trace), which it outlives.
            loop = asyncio.get_running_loop()
            task: asyncio.Task[Any] = loop.create_task(refresh(), context=contextvars.Context())
            self._refreshing[key] = task
            task.add_done_callback(lambda done: self._refreshed(key, done))
        return hit[1]

    def _refreshed(self, key: tuple[str, str, str], task: asyncio.Task[Any]) -> None:
        self._refreshing.pop(key, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("refreshing %s ahead failed (the next submit asks): %s", key, exc)

    def _remember_latest(self, kind: str, namespace: str, ident: str, value: Any) -> None:
        if self.latest_ttl > 0:
            self._latest[(kind, namespace, ident)] = (time.monotonic() + self.latest_ttl, value)

    def _in(self, namespace: str) -> Metadata:
        return ((NAMESPACE_HEADER, namespace),)

    async def resolve(self, namespace: str, ref: str, field: str = "task") -> ResolvedTask:
        """A task of ``namespace`` (or a task another namespace shares, "owner/task_id")."""
        task_id, version = split_ref(ref, field)
        key = (namespace, task_id, version)
        if version not in ("", "latest") and key in self._tasks:
            return self._tasks[key]
        briefly = _briefly(task_id, version)
        again = functools.partial(self._fetch_task, namespace, task_id, version, field)
        if (hit := self._cached_latest("task", namespace, briefly, again)) is not None:
            return hit  # type: ignore[no-any-return]
        return await again()

    async def _fetch_task(
        self, namespace: str, task_id: str, version: str, field: str
    ) -> ResolvedTask:
        """``resolve``'s registry lookup, remembered."""
        try:
            reply = await self._registry.unary(
                self._stub.GetTask,
                rpb.GetTaskRequest(task_id=task_id, version=version),
                metadata=self._in(namespace),
            )
        except WtmError as exc:
            raise _translate(exc, field) from exc
        t = reply.task
        manifest = json.loads(t.manifest_json or "{}")
        resolved = ResolvedTask(
            task_id if "/" in task_id else t.task_id,  # "owner/task_id": another's, shared
            t.version,
            t.digest,
            t.entry_point,
            t.queue,
            t.priority,
            t.timeout_seconds,
            t.max_retries,
            manifest.get("input_schema") or {},
            dict(manifest.get("executor_labels") or {}),
            batching_of(manifest),
            rate_limits.interval_ms(manifest.get("rate_limit") or ""),
            int(manifest.get("rate_burst") or 1),
            int(manifest.get("concurrency_limit") or 0),
            str(manifest.get("concurrency_key") or ""),
            str(manifest.get("concurrency_strategy") or "wait"),
            backoff_ms(manifest),
        )
        if "/" not in task_id:
            self._tasks[(namespace, task_id, t.version)] = resolved
        if briefly := _briefly(task_id, version):
            self._remember_latest("task", namespace, briefly, resolved)
        return resolved

    async def resolve_pipeline(
        self, namespace: str, ref: str, field: str = "pipeline"
    ) -> ResolvedPipeline:
        """A pipeline of ``namespace``, its steps resolved in it."""
        pipeline_id, version = split_ref(ref, field)
        key = (namespace, pipeline_id, version)
        if version not in ("", "latest") and key in self._pipelines:
            return self._pipelines[key]
        ident = f"{pipeline_id}@{version or 'latest'}"
        again = functools.partial(self._fetch_pipeline, namespace, pipeline_id, version, field)
        if (found := self._cached_latest("pipeline", namespace, ident, again)) is not None:
            return found  # type: ignore[no-any-return]
        return await again()

    async def _fetch_pipeline(
        self, namespace: str, pipeline_id: str, version: str, field: str
    ) -> ResolvedPipeline:
        """``resolve_pipeline``'s registry lookup, remembered."""
        try:
            reply = await self._registry.unary(
                self._stub.GetPipeline,
                rpb.GetPipelineRequest(pipeline_id=pipeline_id, version=version),
                metadata=self._in(namespace),
            )
        except WtmError as exc:
            raise _translate(exc, field) from exc
        p = reply.pipeline
        steps = [
            ResolvedStep(
                step_id=s.step_id,
                task=await self.resolve(namespace, f"{s.task_id}@{s.task_version}", field),
                depends_on=list(s.depends_on),
                timeout_seconds=s.timeout_seconds,
                retry_count=s.retry_count,
                input_mapping=json.loads(s.input_mapping_json or "{}"),
                queue=s.queue,
                cache=s.cache if s.HasField("cache") else None,
                retry_backoff_ms=(
                    (
                        round(s.retry_backoff.first_seconds * 1000),
                        round(s.retry_backoff.max_seconds * 1000),
                    )
                    if s.HasField("retry_backoff")
                    else None
                ),
                skip_if=conditions.of_json(
                    json.loads(s.skip_if_json or "[]"), frozenset(x.step_id for x in p.steps)
                ),
                for_each=fan_out.of_json(
                    json.loads(s.for_each_json or "{}"), frozenset(x.step_id for x in p.steps)
                ),
                await_signal=signals.of_json(json.loads(s.await_signal_json or "{}")),
            )
            for s in p.steps
            if p.enabled  # a disabled pipeline never runs; its steps may be unpinned
        ]
        resolved = ResolvedPipeline(
            p.pipeline_id,
            p.version,
            p.enabled,
            json.loads(p.input_validation_json or "{}"),
            steps,
            p.max_parallel_tasks,
            p.enable_caching,
            p.log_level,
            p.run_timeout_seconds,
        )
        uses_shared = any("/" in s.task.task_id for s in steps)
        if not uses_shared:
            self._pipelines[(namespace, p.pipeline_id, p.version)] = resolved
        if uses_shared or version in ("", "latest"):
            ref = f"{pipeline_id}@{version or 'latest'}"
            self._remember_latest("pipeline", namespace, ref, resolved)
        return resolved

    async def close(self) -> None:
        await cancel_and_wait(list(self._refreshing.values()))
        await self._registry.close()
