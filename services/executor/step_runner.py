"""``StepRunner``: what a slot does with a step, or with the steps of one dynamic batch.

The task version's package (from the cache, else the registry) and its requirements, the
step's input and the artifacts it names, a warm worker's call within the step's timeout,
cancels and lease fences passed on to the worker, and the outcome as it is reported: an
output that is not a JSON object refused, one over the inline limit stored in the object
store. What the worker reports on the way (progress, log lines) goes up the stream through
``send``. The ``Executor`` owns the stream and the slots; this owns the step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import jsondoc, refs, telemetry
from common.artifacts import SCHEME, find_uris
from common.client_core import AsyncCaller
from common.errors import (
    InvalidArgument,
    WtmError,
)
from services.common import auth, conditions
from services.executor.artifact_cache import ArtifactCache
from services.executor.lease_fence import LeaseFence
from services.executor.object_store import ObjectStore, transient
from services.executor.package_cache import PackageCache
from services.executor.requirements import RequirementInstaller
from services.executor.sandbox import thread_share
from services.executor.settings import ExecutorSettings
from services.executor.worker import Outcome, Worker
from services.executor.worker_pool import WorkerPool
from wtm.v1 import executor_service_pb2 as epb

# A step whose lease may have lapsed before it started (``LeaseFence.lapsed``) is handed back
# unrun, without using a retry: by then it may be running elsewhere.
LAPSED = "its lease lapsed before it started (the executor was held up); handed back unrun"


@dataclass
class Running:
    """A step attempt on a slot."""

    ref: epb.StepAttemptRef
    digest: str
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    # Stopped by a drain that ran out of time: the attempt goes back to the queue (RELEASED),
    # not against the step's retries; the executor's shutdown is not the task's failure.
    released: bool = False
    worker: Worker | None = None  # once it has one: its fence follows the lease
    held: list[Path] = field(default_factory=list)  # its input artifacts (``StepRunner.done``)


class _Refused(Exception):
    """A step cannot start: its outcome says why."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


def namespace_of(a: epb.StepAssignment) -> str:
    """The namespace a step runs in: its package, artifacts and warm worker are that
    namespace's (an assignment without one is of the default namespace)."""
    return a.namespace or auth.DEFAULT_NAMESPACE


def names(ref: epb.StepAttemptRef) -> tuple[str, str]:
    """A step attempt's (run_id, step_id): the key of what runs and holds a lease here."""
    return ref.run_id, ref.step_id


class StepRunner:
    """Runs steps on the executor's warm workers and says how each ended."""

    def __init__(
        self,
        settings: ExecutorSettings,
        registry: AsyncCaller,
        workers: WorkerPool,
        fence: LeaseFence,
        send: Callable[[epb.ConnectRequest], None],
        running: Callable[[], Collection[Running]],
    ) -> None:
        self.settings = settings
        # Registry calls retry by the store's policy (ObjectStore.retried), not the core's.
        self.store = ObjectStore(registry, settings.store_retry_seconds)
        self.workers = workers
        self.fence = fence
        self._send = send  # progress and log lines, up the stream
        self._running = running  # every step running on this executor now
        cache_dir = Path(settings.cache_dir)
        self.cache = PackageCache(
            cache_dir / "packages",
            self.store.package,
            max_bytes=settings.cache_max_mb * 2**20,
            in_use=self._package_dirs_in_use,
            on_evict=workers.retire_idle,
        )
        self.artifacts = ArtifactCache(
            cache_dir / "artifacts",
            self.store.artifact,
            max_bytes=settings.artifact_cache_max_mb * 2**20,
        )
        self.requirements = RequirementInstaller(
            cache_dir / "requirements",
            settings.install_requirements,
            max_bytes=settings.requirements_cache_max_mb * 2**20,
            in_use=self._requirement_dirs_in_use,
            on_evict=workers.retire_idle,
        )
        # OpenCV's threads are set per step (the CPUs shared among the steps running then)
        # unless the operator fixed them (WTM_WORKER_THREADS, or OPENCV_FOR_THREADS_NUM).
        self._per_step_threads = not (
            settings.worker_threads or os.environ.get("OPENCV_FOR_THREADS_NUM")
        )
        self._manifests: dict[str, dict[str, Any]] = {}  # digest -> task.json

    def _package_dirs_in_use(self) -> set[str]:
        return self.workers.busy_package_dirs() | {
            str(self.cache.path(r.digest)) for r in self._running()
        }

    def cached_bytes(self) -> int:
        """What the caches hold on disk: packages, input artifacts, installed requirements."""
        return self.cache.total_bytes + self.artifacts.total_bytes + self.requirements.total_bytes

    def _requirement_dirs_in_use(self) -> set[str]:
        """The installed requirements on the path of a step running here, or about to be."""
        in_use = self.workers.busy_extra_paths()
        for r in self._running():
            manifest = self._manifests.get(r.digest)
            if manifest is not None:
                in_use.update(self.requirements.paths_of(manifest.get("requirements") or []))
        return in_use

    async def _inputs(
        self, input_json: str, namespace: str, held: list[Path]
    ) -> tuple[str, dict[str, str]]:
        """The step's input (fetched when it came by reference) and the local paths of the
        artifacts it names (downloaded into the cache if needed, and added to ``held``: the
        cache keeps them until the step is ``done``), in the run's namespace."""
        if big_input := refs.text_ref_uri(input_json):
            document = await self.artifacts.path(big_input, namespace)
            try:
                data = document.read_bytes()
            finally:
                self.artifacts.release(document)
            # Any file a submit or an upstream output names as a reference: when it is not a
            # JSON object, that is the input's fault (FATAL), never an error in this code.
            parsed = jsondoc.loads(data, field="input_json")
            if not isinstance(parsed, dict):
                raise InvalidArgument(
                    f"the document {big_input} stands for is not a JSON object", field="input_json"
                )
            input_json = data.decode()
        if SCHEME not in input_json:
            return input_json, {}
        if not big_input:
            parsed = json.loads(input_json)  # the scheduler's own text
        paths = {}
        for uri in set(find_uris(parsed)):
            held.append(await self.artifacts.path(uri, namespace))
            paths[uri] = str(held[-1])
        return input_json, paths

    def done(self, running: Running) -> None:
        """A step has ended: the artifacts it read may leave the cache."""
        for path in running.held:
            self.artifacts.release(path)
        running.held.clear()

    async def _by_reference(self, a: epb.StepAssignment, outcome: Outcome) -> Outcome:
        """A succeeded step's output, stored in the object store when over the inline limit
        (the result then carries a reference document)."""
        if outcome.outcome != "SUCCEEDED" or not refs.too_large(
            outcome.output_json, self.settings.inline_max_bytes
        ):
            return outcome
        data = outcome.output_json.encode()
        try:
            with telemetry.phase("store output", **{"wtm.output_bytes": len(data)}):
                uri = await self.store.upload(
                    f"{a.output_id or 'output'}.json", data, namespace_of(a)
                )
        except WtmError as exc:  # out for longer than the store retry period
            return Outcome(
                "FAILED",
                error=f"storing the {len(data)}-byte output failed: {exc.code}: {exc.message}",
                process_times=outcome.process_times,
            )
        return dataclasses.replace(
            outcome,
            output_json=refs.make_ref(uri, len(data)),
            condition_view=self._condition_view(a, outcome.output_json),
        )

    def _condition_view(self, a: epb.StepAssignment, output_json: str) -> str:
        """What later steps' conditions read of an output going by reference (its view,
        ``conditions.view``), so that the scheduler decides them without fetching it; "" when
        none read it, or the view is itself over the inline limit."""
        if not a.condition_paths:
            return ""
        found = conditions.view(json.loads(output_json), a.condition_paths)
        text = "" if found is None else json.dumps(found)
        return "" if refs.too_large(text, self.settings.inline_max_bytes) else text

    async def execute(self, a: epb.StepAssignment, running: Running) -> Outcome:
        """Run one step (``_execute``), inside an execution span that is a child of the step
        attempt's span (when the run is traced and tracing is on here)."""
        parent = telemetry.parse(a.traceparent) if telemetry.enabled() else None
        if parent is None:
            return await self._execute(a, running)
        with telemetry.late_span(
            f"execute {a.task_id}", parent, self._span_attributes(a), tracer_name="wtm.executor"
        ) as span:
            outcome = await self._execute(a, running)
            span.set_attribute("wtm.outcome", outcome.outcome)
            if outcome.outcome != "SUCCEEDED":
                span.error = outcome.error or outcome.outcome
            return outcome

    async def _task_of(self, a: epb.StepAssignment) -> tuple[Path, dict[str, Any], tuple[str, ...]]:
        """The task version's package directory, manifest and requirement paths (fetched and
        installed when not here yet); raises ``_Refused`` with the outcome when they fail."""
        try:
            with (
                telemetry.skipped("load package")
                if self.cache.has(a.digest)
                else telemetry.phase("load package", **{"wtm.task_digest": a.digest})
            ):
                package_dir = await self.store.retried(
                    lambda: self.cache.get(a.digest, namespace_of(a))
                )
        except WtmError as exc:
            if transient(exc):  # out for longer than the store retry period
                raise _Refused(Outcome("FAILED", error=f"package download failed: {exc}")) from exc
            raise _Refused(
                Outcome("FATAL", error=f"package {a.task_id}@{a.task_version}: {exc.message}")
            ) from exc
        manifest = self._manifests.get(a.digest)
        if manifest is None:  # a digest's contents never change
            manifest = self._manifests[a.digest] = json.loads(
                (package_dir / "task.json").read_text()
            )
        try:
            wanted = list(manifest.get("requirements") or [])
            with (
                telemetry.skipped("requirements")
                if self.requirements.known(wanted)
                else telemetry.phase("requirements")
            ):
                extra_paths = await self.requirements.prepare(wanted)
        except WtmError as exc:
            raise _Refused(
                Outcome(
                    "FATAL", error=f"requirements of {a.task_id}@{a.task_version}: {exc.message}"
                )
            ) from exc
        return package_dir, manifest, extra_paths

    async def _meta(self, a: epb.StepAssignment, running: Running) -> tuple[str, dict[str, Any]]:
        """The step's input and what the task's context gets with it; raises ``_Refused``
        when an input artifact cannot be had."""
        try:
            input_json, artifacts = await self.store.retried(
                lambda: self._inputs(a.input_json, namespace_of(a), running.held)
            )
        except WtmError as exc:
            if transient(exc):
                failed = Outcome("FAILED", error=f"artifact download failed: {exc.code}")
                raise _Refused(failed) from exc
            raise _Refused(Outcome("FATAL", error=f"input artifact: {exc.message}")) from exc
        return input_json, {
            "input_id": a.input_id,
            "output_id": a.output_id,
            "upstream_output_ids": dict(a.upstream_output_ids),
            "input_sources": dict(a.input_sources),
            "artifacts": artifacts,
            "log_level": a.log_level,
            **({"threads": thread_share(len(self._running()))} if self._per_step_threads else {}),
        }

    def _reporters(
        self, refs: list[epb.StepAttemptRef]
    ) -> tuple[Callable[[float, str], None], Callable[[str, str], None]]:
        """What a worker's progress and log lines become: messages up the stream, one per
        step attempt in ``refs`` (a dynamic batch's call reports for all its steps)."""

        def progress(fraction: float, message: str) -> None:
            for ref in refs:
                self._send(
                    epb.ConnectRequest(
                        progress=epb.StepProgress(ref=ref, fraction=fraction, message=message)
                    )
                )

        def log_line(level: str, message: str) -> None:
            at = time.time_ns()
            for ref in refs:
                line = epb.StepLog(ref=ref, level=level, message=message)
                line.time.FromNanoseconds(at)
                self._send(epb.ConnectRequest(log=line))

        return progress, log_line

    def _span_attributes(self, a: epb.StepAssignment) -> dict[str, Any]:
        """What an execution span says of its step attempt."""
        return {
            "wtm.namespace": namespace_of(a),
            "wtm.run_id": a.ref.run_id,
            "wtm.step_id": a.ref.step_id,
            "wtm.attempt": a.ref.attempt,
            "wtm.task_id": a.task_id,
            "wtm.task_version": a.task_version,
            "wtm.task_digest": a.digest,
            "wtm.executor_id": self.settings.executor_id,
            "wtm.input_id": a.input_id,
            "wtm.output_id": a.output_id,
        }

    async def _execute(self, a: epb.StepAssignment, running: Running) -> Outcome:
        try:
            package_dir, manifest, extra_paths = await self._task_of(a)
            input_json, meta = await self._meta(a, running)
        except _Refused as refused:
            return refused.outcome
        resources = manifest.get("resources") or {}
        worker = await self.workers.acquire(
            package_dir, a.entry_point, extra_paths, resources, namespace_of(a)
        )
        if self.fence.lapsed(names(a.ref), time.monotonic()):  # held up since its slot took it
            self.workers.release(worker)
            return Outcome("RELEASED", error=LAPSED)
        cold = worker.ready_ns == 0
        running.worker = worker
        worker.fence(self.fence.until((a.ref.run_id, a.ref.step_id)))
        progress, log_line = self._reporters([a.ref])
        try:
            outcome = await worker.run(
                input_json, meta, a.timeout_seconds or 300, progress, running.cancelled, log_line
            )
        except asyncio.CancelledError:
            if not running.cancelled.is_set():
                raise
            outcome = self._stopped(running)
        finally:
            running.worker = None
            worker.fence(0.0)
            self.workers.release(worker)  # a killed or dead worker is dropped, not pooled
        if cold and worker.ready_ns:
            telemetry.past_child("start worker + setup()", worker.started_ns, worker.ready_ns)
        if outcome.process_times is not None:
            called, returned = outcome.process_times
            telemetry.past_child("process()", int(called * 1e9), int(returned * 1e9))
        return await self._finished(a, outcome)

    async def _finished(self, a: epb.StepAssignment, outcome: Outcome) -> Outcome:
        """A step's outcome as it is reported: an output that is not a JSON object (within
        the nesting limit) refused, a large one stored. The worker's runtime checks the same,
        but task code can write to its pipe, so the executor checks what it passes on."""
        if outcome.outcome != "SUCCEEDED":
            return await self._by_reference(a, outcome)
        if not jsondoc.within_depth(outcome.output_json):
            return Outcome(
                "FATAL",
                error=f"process() returned a document nesting deeper than {jsondoc.MAX_DEPTH} "
                "levels of objects and arrays",
                process_times=outcome.process_times,
            )
        try:
            document = jsondoc.loads(outcome.output_json, field="output")
        except InvalidArgument as exc:
            document = exc
        if not isinstance(document, dict):
            what = document.reason if isinstance(document, InvalidArgument) else "not an object"
            return Outcome(
                "FATAL",
                error=f"the worker sent an output that is not a JSON object ({what[:200]})",
                process_times=outcome.process_times,
            )
        return await self._by_reference(a, outcome)

    def _stopped(self, running: Running) -> Outcome:
        """The outcome of a step that the scheduler cancelled, or a drain released."""
        if running.released:
            return Outcome(
                "RELEASED",
                error=f"stopped by a draining executor after "
                f"{self.settings.drain_seconds:g}s; re-queued without using a retry",
            )
        return Outcome("CANCELLED", error="cancelled by the scheduler")

    # Dynamic batches ---------------------------------------------------------------------

    async def execute_batch(
        self, group: list[epb.StepAssignment], runnings: list[Running]
    ) -> list[Outcome]:
        """``_batch``, with an execution span per step of a traced run (each a child of its
        own step attempt's span), all covering the one call; recorded when it ends."""
        if not telemetry.enabled():
            return await self._batch(group, runnings)
        traced = [(a, telemetry.parse(a.traceparent)) for a in group]
        spans = [
            (f"execute {a.task_id}", parent, self._span_attributes(a) | {
                "wtm.call_id": a.call_id, "wtm.call_size": len(group),
            })
            for a, parent in traced
            if parent is not None
        ]  # fmt: skip
        with telemetry.late_spans(spans, tracer_name="wtm.executor") as lates:
            outcomes = await self._batch(group, runnings)
            made = iter(lates)
            for (_, parent), outcome in zip(traced, outcomes, strict=True):
                if parent is None:
                    continue
                late = next(made)
                if outcome.process_times is not None:
                    called, returned = (int(t * 1e9) for t in outcome.process_times)
                    telemetry.past_child("process_batch()", called, returned, parent=late.here)
                late.set_attribute("wtm.outcome", outcome.outcome)
                if outcome.outcome != "SUCCEEDED":
                    late.error = outcome.error or outcome.outcome
        return outcomes

    async def _batch(
        self, group: list[epb.StepAssignment], runnings: list[Running]
    ) -> list[Outcome]:
        """Run a dynamic batch — steps of one task version, from any runs — in one call of
        the task's ``process_batch`` on a warm worker. A step whose input cannot be had fails
        alone; the others go on. A cancel stops the call only once every step in it is
        cancelled; a step cancelled before then gets CANCELLED, whatever the call gives it.
        The call's timeout is the longest of its steps'."""
        outcomes: list[Outcome | None] = [None] * len(group)
        try:
            package_dir, manifest, extra_paths = await self._task_of(group[0])
        except _Refused as refused:
            return [refused.outcome] * len(group)
        inputs, metas, given = [], [], []
        for i, a in enumerate(group):
            if namespace_of(a) != namespace_of(group[0]):  # a call is one queue's: never so
                outcomes[i] = Outcome("FAILED", error="a dynamic batch mixed namespaces")
                continue
            try:
                input_json, meta = await self._meta(a, runnings[i])
            except _Refused as refused:
                outcomes[i] = refused.outcome
                continue
            inputs.append(input_json)
            metas.append(meta)
            given.append(i)
        if given:
            for i, outcome in zip(
                given,
                await self._run_batch(
                    [group[i] for i in given],
                    [runnings[i] for i in given],
                    inputs,
                    metas,
                    (package_dir, manifest, extra_paths),
                ),
                strict=True,
            ):
                outcomes[i] = outcome
        done = []
        for a, running, got in zip(group, runnings, outcomes, strict=True):
            assert got is not None
            done.append(
                self._stopped(running)
                if running.cancelled.is_set()
                else await self._finished(a, got)
            )
        return done

    async def _run_batch(
        self,
        group: list[epb.StepAssignment],
        runnings: list[Running],
        inputs: list[str],
        metas: list[dict[str, Any]],
        task: tuple[Path, dict[str, Any], tuple[str, ...]],
    ) -> list[Outcome]:
        package_dir, manifest, extra_paths = task
        resources = manifest.get("resources") or {}
        worker = await self.workers.acquire(
            package_dir, group[0].entry_point, extra_paths, resources, namespace_of(group[0])
        )
        keys = [names(a.ref) for a in group]
        now = time.monotonic()
        if any(self.fence.lapsed(k, now) for k in keys):  # leased together: all go back
            self.workers.release(worker)
            return [Outcome("RELEASED", error=LAPSED)] * len(group)
        for running in runnings:
            running.worker = worker
        worker.fence(min(self.fence.until(k) for k in keys))
        all_cancelled = asyncio.Event()

        async def watch() -> None:
            await asyncio.gather(*(r.cancelled.wait() for r in runnings))
            all_cancelled.set()

        progress, log_line = self._reporters([a.ref for a in group])  # the call's: every step's
        watcher = asyncio.create_task(watch())
        timeout = max(a.timeout_seconds or 300 for a in group)
        try:
            return await worker.run_batch(inputs, metas, timeout, progress, all_cancelled, log_line)
        except asyncio.CancelledError:
            if not all_cancelled.is_set():
                raise
            return [self._stopped(r) for r in runnings]
        finally:
            watcher.cancel()
            for running in runnings:
                running.worker = None
            worker.fence(0.0)
            self.workers.release(worker)
