"""``Executor``: one bidirectional stream to the scheduler, N slots of warm workers.

Down the stream come a welcome, assignments and cancels; up go a hello, heartbeats,
progress and results. When the scheduler is unreachable the executor reconnects with
exponential backoff and jitter (tenacity); results finished meanwhile wait in the outbox and
go up when the stream is back, where the scheduler's fencing accepts them if the lease still
stands. On SIGTERM it takes nothing new and gives running steps ``drain_seconds`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import platform
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc import aio
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from common import jsondoc, refs, stream_batches, telemetry, tls
from common.artifacts import SCHEME, find_uris, upload_requests
from common.client_core import CHANNEL_OPTIONS, AsyncCaller, Metadata
from common.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    WtmError,
)
from services.common import auth
from services.common.config import read_secret
from services.executor.artifact_cache import ArtifactCache
from services.executor.lease_fence import LeaseFence
from services.executor.package_cache import PackageCache
from services.executor.requirements import RequirementInstaller
from services.executor.sandbox import Ceilings, Sandbox, protect_executor, thread_share
from services.executor.settings import ExecutorSettings
from services.executor.vitals import ResourceMeter
from services.executor.worker import Outcome, Worker
from services.executor.worker_pool import WorkerPool
from wtm.v1 import executor_service_pb2 as epb
from wtm.v1 import executor_service_pb2_grpc as epb_grpc
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")
SOFTWARE_VERSION = "0.1.0"


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


# Registry answers that may well change when asked again (not a NOT_FOUND or a refusal).
_TRANSIENT = (Unavailable, DeadlineExceeded, Internal, ResourceExhausted)


def _transient(exc: BaseException) -> bool:
    """A registry call that may well work when tried again."""
    return isinstance(exc, _TRANSIENT) or (type(exc) is WtmError and exc.code == "UNKNOWN")


def more_results(
    first: epb.ConnectRequest,
    outbox: asyncio.Queue[epb.ConnectRequest],
    sent: deque[tuple[float, epb.ConnectRequest]],
) -> tuple[epb.ConnectRequest, epb.ConnectRequest | None]:
    """``first`` (a result) and the results queued right behind it, in one StepResults
    message (``common.stream_batches``; ``first`` itself when none is); the message that
    stopped the group is sent next. Each result taken is noted in ``sent`` as it would be
    alone (the re-send after a broken stream sends them one by one)."""

    def joins(message: epb.ConnectRequest) -> epb.ConnectRequest | None:
        return message if message.HasField("result") else None

    group, carry = stream_batches.gather(first, outbox, joins, lambda m: len(m.result.output_json))
    now = time.monotonic()
    sent.extend((now, m) for m in group[1:])
    if len(group) > 1:
        first = epb.ConnectRequest(results=epb.StepResults(results=[m.result for m in group]))
    return first, None if carry is stream_batches.NOTHING else carry


def _names(ref: epb.StepAttemptRef) -> tuple[str, str]:
    return ref.run_id, ref.step_id


def installed_packages() -> list[str]:
    """What is installed where tasks run, as sorted "name==version" (for the hello)."""
    found = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions()}
    return sorted(f"{name}=={version}" for name, version in found.items() if name)


class StreamClosed(Exception):
    """The scheduler stream ended; reconnect."""


class _Refused(Exception):
    """A step cannot start: its outcome says why."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


class Executor:
    """Runs assignments from the scheduler until stopped."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        if bool(settings.tls_client_cert) != bool(settings.tls_client_key):
            raise SystemExit("WTM_TLS_CLIENT_CERT and WTM_TLS_CLIENT_KEY go together")
        api_key = read_secret(settings.api_key, settings.api_key_file, "the API key")
        metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._metadata = metadata
        # Registry calls retry by the store policy below (_from_store), not the core's.
        self._registry_caller = AsyncCaller(
            settings.registry, ca=settings.tls_ca, api_key=api_key or "", retry_seconds=0
        )
        self._registry = rpb_grpc.RegistryServiceStub(self._registry_caller.channel)
        cache_dir = Path(settings.cache_dir)
        # Warm workers per task version, shared by the slots; room for a few idle versions.
        self.sandbox = Sandbox(
            cache_dir,
            Ceilings(
                memory_mb=settings.worker_max_memory_mb,
                open_files=settings.worker_max_open_files,
                file_size_mb=settings.worker_max_file_size_mb,
                processes=settings.worker_max_processes,
                cpu_seconds=settings.worker_max_cpu_seconds,
            ),
            uid_base=settings.worker_uid_base,
            enabled=settings.sandbox,
            threads=thread_share(settings.slots, settings.worker_threads),
        )
        # OpenCV's threads are set per step (the CPUs shared among the steps running then)
        # unless the operator fixed them (WTM_WORKER_THREADS, or OPENCV_FOR_THREADS_NUM).
        self._per_step_threads = not (
            settings.worker_threads or os.environ.get("OPENCV_FOR_THREADS_NUM")
        )
        if settings.sandbox:
            protect_executor()
        self.workers = WorkerPool(settings.slots + 2, self.sandbox, settings.worker_memory_mb)
        self.cache = PackageCache(
            cache_dir / "packages",
            self._download,
            max_bytes=settings.cache_max_mb * 2**20,
            in_use=self._package_dirs_in_use,
            on_evict=self.workers.retire_idle,
        )
        self.artifacts = ArtifactCache(cache_dir / "artifacts", self._download_artifact)
        self.requirements = RequirementInstaller(
            cache_dir / "requirements", settings.install_requirements
        )
        # What the slots take: a step, or the steps of one dynamic batch (one call).
        self._assignments: asyncio.Queue[list[epb.StepAssignment]] = asyncio.Queue()
        self._calls: dict[str, list[epb.StepAssignment]] = {}  # batches still arriving
        self._outbox: asyncio.Queue[epb.ConnectRequest] = asyncio.Queue()
        self._running: dict[tuple[str, str], Running] = {}
        # Assignments waiting for a free slot (a scheduler with prefetch sends some ahead);
        # their leases are renewed by heartbeats like those of running steps.
        self._held: dict[tuple[str, str], epb.StepAttemptRef] = {}
        self._received: dict[bytes, int] = {}  # assignment ref -> when it arrived (ns)
        # Results sent on the current stream, kept one lease period to re-send after a break.
        self._sent: deque[tuple[float, epb.ConnectRequest]] = deque(maxlen=10_000)
        self._draining = asyncio.Event()
        self._stream_no = 0
        self._batched_results = False  # the current stream's welcome said it takes them
        self._attempts = 0
        self._heartbeat_seconds = 5.0
        self.fence = LeaseFence()
        self.meter = ResourceMeter()  # CPU and memory, for the heartbeats
        self.slot_errors = 0  # steps that failed in the executor itself, not in task code
        self.last_slot_error = ""
        self._manifests: dict[str, dict[str, Any]] = {}  # digest -> task.json

    def _package_dirs_in_use(self) -> set[str]:
        return self.workers.busy_package_dirs() | {
            str(self.cache.path(r.digest)) for r in self._running.values()
        }

    def _in(self, namespace: str) -> Metadata:
        """The header of a registry call made for a step of ``namespace``."""
        return ((auth.NAMESPACE_HEADER, namespace or auth.DEFAULT_NAMESPACE),)

    async def _download(self, digest: str, namespace: str) -> AsyncIterator[bytes]:
        request = rpb.DownloadTaskPackageRequest(digest=digest)
        method = self._registry.DownloadTaskPackage
        async for reply in self._registry_caller.stream(
            method, request, metadata=self._in(namespace)
        ):
            yield reply.chunk

    async def _download_artifact(self, uri: str, namespace: str) -> AsyncIterator[bytes]:
        request = rpb.DownloadArtifactRequest(uri=uri)
        method = self._registry.DownloadArtifact
        async for reply in self._registry_caller.stream(
            method, request, metadata=self._in(namespace)
        ):
            yield reply.chunk

    async def _from_store(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, which reaches the object store through the registry. After a transient
        failure it is retried for up to ``store_retry_seconds`` (the step's lease is renewed
        meanwhile), so a short outage costs none of the step's retries. The first try goes
        straight: the retry machinery costs ~35 µs, paid only once something failed."""
        try:
            return await call()
        except WtmError as exc:
            if not _transient(exc):
                raise
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(self.settings.store_retry_seconds),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            retry=retry_if_exception(_transient),
            reraise=True,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _inputs(self, input_json: str, namespace: str) -> tuple[str, dict[str, str]]:
        """The step's input (fetched when it came by reference) and the local paths of the
        artifacts it names (downloaded into the cache if needed), in the run's namespace."""
        if big_input := refs.text_ref_uri(input_json):
            input_json = (await self.artifacts.path(big_input, namespace)).read_text()
        if SCHEME not in input_json:
            return input_json, {}
        uris = set(find_uris(json.loads(input_json)))
        return input_json, {uri: str(await self.artifacts.path(uri, namespace)) for uri in uris}

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
                reply = await self._from_store(
                    lambda: self._registry_caller.unary(
                        self._registry.UploadArtifact,
                        upload_requests(f"{a.output_id or 'output'}.json", data),
                        metadata=self._in(a.namespace),
                        timeout=120,
                    )
                )
        except WtmError as exc:  # out for longer than the store retry period
            return Outcome(
                "FAILED",
                error=f"storing the {len(data)}-byte output failed: {exc.code}: {exc.message}",
                process_times=outcome.process_times,
            )
        return dataclasses.replace(outcome, output_json=refs.make_ref(reply.uri, len(data)))

    # Lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain and return."""
        slots = [asyncio.create_task(self._slot(i)) for i in range(self.settings.slots)]
        connection = asyncio.create_task(self._connect_forever())
        await stop.wait()
        log.info(
            "draining: %d running, up to %.0fs", len(self._running), self.settings.drain_seconds
        )
        self._draining.set()
        self._release_held()
        self._outbox.put_nowait(self._heartbeat())  # tells the scheduler: no new work
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle(), self.settings.drain_seconds)
        for running in self._running.values():
            running.released = True
            running.cancelled.set()
        await asyncio.sleep(0.3)  # let the last results reach the outbox and the stream
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flushed(), 2.0)
        for task in [*slots, connection]:
            task.cancel()
        for task in [*slots, connection]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.workers.close()
        await self._registry_caller.close()
        log.info("stopped")

    def _release_held(self) -> None:
        """Hand back the assignments no slot has started: draining takes nothing new."""
        self._flush_calls()
        while not self._assignments.empty():
            for a in self._assignments.get_nowait():
                ref = a.ref
                held = self._held.get((ref.run_id, ref.step_id))
                if held is not None and held.attempt == ref.attempt:
                    del self._held[(ref.run_id, ref.step_id)]
                    self._outbox.put_nowait(self._released(ref))

    def _flush_calls(self) -> None:
        """Batches whose steps have not all arrived go to the slots as they are (the stream
        broke between them, or the executor is draining)."""
        for group in self._calls.values():
            self._assignments.put_nowait(group)
        self._calls.clear()

    async def _idle(self) -> None:
        while self._running or not self._assignments.empty():
            await asyncio.sleep(0.05)

    async def _flushed(self) -> None:
        while not self._outbox.empty():
            await asyncio.sleep(0.05)

    # Connection --------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        retrying = AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.2, max=10.0),
            retry=retry_if_exception_type((aio.AioRpcError, StreamClosed)),
        )
        async for attempt in retrying:
            with attempt:
                await self._session()

    def _hello(self) -> epb.ConnectRequest:
        s = self.settings
        return epb.ConnectRequest(
            hello=epb.ExecutorHello(
                executor_id=s.executor_id,
                queues=s.queues,
                namespaces=s.namespaces,
                slots=s.slots,
                labels=dict(x.split("=", 1) for x in s.labels),
                packages=installed_packages(),
                software_version=SOFTWARE_VERSION,
                python_version=platform.python_version(),
                batching=True,
                batched_messages=True,
            )
        )

    async def _requests(self, stream_no: int) -> AsyncIterator[epb.ConnectRequest]:
        """What goes up one stream. A stream's generator can outlive its stream; once a newer
        stream exists it hands what it took back to the outbox and stops. Results waiting
        together go in one message when the scheduler takes them so."""
        yield self._hello()
        carry: epb.ConnectRequest | None = None
        while True:
            message = carry if carry is not None else await self._outbox.get()
            carry = None
            if stream_no != self._stream_no:
                self._outbox.put_nowait(message)
                return
            if message.HasField("result"):
                self._sent.append((time.monotonic(), message))
                if self._batched_results:
                    message, carry = more_results(message, self._outbox, self._sent)
            yield message

    async def _session(self) -> None:
        addresses = self.settings.scheduler
        address = addresses[self._attempts % len(addresses)]
        self._attempts += 1  # the next reconnect tries the next address
        s = self.settings
        cert = (s.tls_client_cert, s.tls_client_key) if s.tls_client_cert else None
        # Untraced: the stream lasts the session; each assignment carries its traceparent.
        plain = tls.aio_channel(address, s.tls_ca, CHANNEL_OPTIONS, cert, traced=False)
        async with plain as channel:
            stub = epb_grpc.ExecutorServiceStub(channel)
            self._stream_no += 1
            self._batched_results = False  # until this scheduler's welcome says otherwise
            call = stub.Connect(self._requests(self._stream_no), metadata=self._metadata)
            heartbeats: asyncio.Task[None] | None = None
            try:
                async for message in call:
                    kind = message.WhichOneof("message")
                    if kind == "welcome":
                        welcome = message.welcome
                        self._heartbeat_seconds = welcome.heartbeat_interval_seconds or 5.0
                        self.fence.configure(welcome.lease_seconds or 30, welcome.acks_heartbeats)
                        self._batched_results = welcome.batched_messages
                        log.info(
                            "connected to %s as %s",
                            address,
                            self.settings.executor_id,
                        )
                        heartbeats = asyncio.create_task(self._heartbeats())
                        if self._running:  # tell the scheduler what survived the disconnect
                            self._outbox.put_nowait(self._heartbeat())
                        self._resend(message.welcome.lease_seconds or 30)
                    elif kind == "assignment":
                        self._assigned(message.assignment)
                    elif kind == "assignments":
                        for a in message.assignments.assignments:
                            self._assigned(a)
                    elif kind == "cancel":
                        ref = message.cancel.ref
                        key = (ref.run_id, ref.step_id)
                        running = self._running.get(key)
                        if running is not None and running.ref.attempt == ref.attempt:
                            running.cancelled.set()
                        held = self._held.get(key)
                        if held is not None and held.attempt == ref.attempt:
                            del self._held[key]  # its slot will skip it
                            self.fence.forget(key)
                    elif kind == "heartbeat_ack":
                        for key in self.fence.acknowledged(message.heartbeat_ack.sequence):
                            running = self._running.get(key)
                            if running is not None and running.worker is not None:
                                running.worker.fence(self.fence.until(key))
            except aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ):
                    log.error("scheduler refused this executor: %s", exc.details())
                    raise SystemExit(2) from exc
                log.warning("scheduler stream lost: %s", exc.code().name)
                raise
            finally:
                if heartbeats is not None:
                    heartbeats.cancel()
                self._flush_calls()
            raise StreamClosed

    def _assigned(self, a: epb.StepAssignment) -> None:
        if self._draining.is_set():  # sent before the scheduler heard: give it back
            self._outbox.put_nowait(self._released(a.ref))
            return
        ref = a.ref
        self._received[ref.SerializeToString()] = time.time_ns()
        self._held[(ref.run_id, ref.step_id)] = ref
        self.fence.granted((ref.run_id, ref.step_id), time.monotonic())
        self._take(a)

    def _take(self, a: epb.StepAssignment) -> None:
        """Queue an assignment for the slots; a dynamic batch's steps once all have come."""
        if a.call_size < 2:
            self._assignments.put_nowait([a])
            return
        group = self._calls.setdefault(a.call_id, [])
        group.append(a)
        if len(group) >= a.call_size:
            del self._calls[a.call_id]
            self._assignments.put_nowait(group)

    def _resend(self, lease_seconds: float) -> None:
        """Send again the results of the last lease period: a result written to a stream
        just before it broke may never have arrived. The scheduler's fencing refuses the
        ones it already has, so sending twice is harmless; losing one would cost a retry."""
        horizon = time.monotonic() - lease_seconds
        recent = [m for at, m in self._sent if at >= horizon]
        self._sent.clear()
        if recent and self._stream_no > 1:
            log.info("re-sending %d recent results after reconnecting", len(recent))
            for message in recent:
                self._outbox.put_nowait(message)

    def _heartbeat(self) -> epb.ConnectRequest:
        refs = [r.ref for r in self._running.values()] + list(self._held.values())
        cpu, rss = self.meter.sample()
        sequence = self.fence.heartbeat_sent(
            [(r.run_id, r.step_id) for r in refs], time.monotonic()
        )
        return epb.ConnectRequest(
            heartbeat=epb.ExecutorHeartbeat(
                running=refs,
                draining=self._draining.is_set(),
                sequence=sequence,
                slot_errors=self.slot_errors,
                last_slot_error=self.last_slot_error,
                cpu_percent=cpu,
                memory_bytes=rss,
            )
        )

    @staticmethod
    def _released(ref: epb.StepAttemptRef) -> epb.ConnectRequest:
        return epb.ConnectRequest(
            result=epb.StepResult(
                ref=ref, outcome=epb.StepOutcome.STEP_OUTCOME_RELEASED, error="executor is draining"
            )
        )

    async def _heartbeats(self) -> None:
        while True:
            self._touch_health_file()
            await asyncio.sleep(self._heartbeat_seconds)
            self._outbox.put_nowait(self._heartbeat())

    def _touch_health_file(self) -> None:
        if self.settings.health_file:
            Path(self.settings.health_file).touch()

    # Slots -------------------------------------------------------------------------------

    async def _slot(self, index: int) -> None:
        while True:
            group = []
            for a in await self._assignments.get():
                ref = a.ref
                held = self._held.get((ref.run_id, ref.step_id))
                if held is None or held.attempt != ref.attempt:  # cancelled while it waited
                    self._received.pop(ref.SerializeToString(), None)
                    continue
                del self._held[(ref.run_id, ref.step_id)]
                group.append(a)
            if not group:
                continue
            runnings = [Running(a.ref, a.digest) for a in group]
            for r in runnings:
                self._running[_names(r.ref)] = r
            try:
                if len(group) == 1:
                    outcomes = [await self._traced_execute(group[0], runnings[0])]
                else:
                    outcomes = await self._traced_call(group, runnings)
            except Exception as exc:  # noqa: BLE001 - a slot outlives any one step's trouble
                # Ours, not the task's (a full disk while unpacking, a bug here): the steps
                # fail retryably, the error is logged with them, and the slot goes on.
                log.exception(
                    "slot %d: step %s/%s failed in the executor", index, *_names(group[0].ref)
                )
                failed = Outcome("FAILED", error=f"executor error: {type(exc).__name__}: {exc}")
                outcomes = [failed] * len(group)
                self.slot_errors += 1
                self.last_slot_error = failed.error[:500]
            finally:
                for r in runnings:
                    self._running.pop(_names(r.ref), None)
                    self.fence.forget(_names(r.ref))
            for a, outcome in zip(group, outcomes, strict=True):
                self._send_result(a.ref, outcome)

    def _send_result(self, ref: epb.StepAttemptRef, outcome: Outcome) -> None:
        result = epb.StepResult(
            ref=ref,
            outcome=epb.StepOutcome.Value(f"STEP_OUTCOME_{outcome.outcome}"),
            output_json=outcome.output_json,
            error=outcome.error,
        )
        if outcome.process_times is not None:
            result.start_time.FromNanoseconds(int(outcome.process_times[0] * 1e9))
            result.end_time.FromNanoseconds(int(outcome.process_times[1] * 1e9))
        result.received_time.FromNanoseconds(self._received.pop(ref.SerializeToString(), 0))
        result.sent_time.FromNanoseconds(time.time_ns())
        self._outbox.put_nowait(epb.ConnectRequest(result=result))

    async def _traced_execute(self, a: epb.StepAssignment, running: Running) -> Outcome:
        """``_execute``, inside an execution span that is a child of the step attempt's span
        (when the run is traced and tracing is on here)."""
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
                package_dir = await self._from_store(lambda: self.cache.get(a.digest, a.namespace))
        except WtmError as exc:
            if _transient(exc):  # out for longer than the store retry period
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

    async def _meta(self, a: epb.StepAssignment) -> tuple[str, dict[str, Any]]:
        """The step's input and what the task's context gets with it; raises ``_Refused``
        when an input artifact cannot be had."""
        try:
            input_json, artifacts = await self._from_store(
                lambda: self._inputs(a.input_json, a.namespace)
            )
        except WtmError as exc:
            if _transient(exc):
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
            **({"threads": thread_share(len(self._running))} if self._per_step_threads else {}),
        }

    def _reporters(
        self, refs: list[epb.StepAttemptRef]
    ) -> tuple[Callable[[float, str], None], Callable[[str, str], None]]:
        """What a worker's progress and log lines become: messages up the stream, one per
        step attempt in ``refs`` (a dynamic batch's call reports for all its steps)."""

        def progress(fraction: float, message: str) -> None:
            for ref in refs:
                self._outbox.put_nowait(
                    epb.ConnectRequest(
                        progress=epb.StepProgress(ref=ref, fraction=fraction, message=message)
                    )
                )

        def log_line(level: str, message: str) -> None:
            at = time.time_ns()
            for ref in refs:
                line = epb.StepLog(ref=ref, level=level, message=message)
                line.time.FromNanoseconds(at)
                self._outbox.put_nowait(epb.ConnectRequest(log=line))

        return progress, log_line

    def _span_attributes(self, a: epb.StepAssignment) -> dict[str, Any]:
        """What an execution span says of its step attempt."""
        return {
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
            input_json, meta = await self._meta(a)
        except _Refused as refused:
            return refused.outcome
        worker = await self.workers.acquire(
            package_dir, a.entry_point, extra_paths, manifest.get("resources") or {}
        )
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

    async def _traced_call(
        self, group: list[epb.StepAssignment], runnings: list[Running]
    ) -> list[Outcome]:
        """``_call``, with an execution span per step of a traced run (each a child of its
        own step attempt's span), all covering the one call; recorded when it ends."""
        if not telemetry.enabled():
            return await self._call(group, runnings)
        traced = [(a, telemetry.parse(a.traceparent)) for a in group]
        spans = [
            (f"execute {a.task_id}", parent, self._span_attributes(a) | {
                "wtm.call_id": a.call_id, "wtm.call_size": len(group),
            })
            for a, parent in traced
            if parent is not None
        ]  # fmt: skip
        with telemetry.late_spans(spans, tracer_name="wtm.executor") as lates:
            outcomes = await self._call(group, runnings)
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

    async def _call(
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
            try:
                input_json, meta = await self._meta(a)
            except _Refused as refused:
                outcomes[i] = refused.outcome
                continue
            inputs.append(input_json)
            metas.append(meta)
            given.append(i)
        if given:
            for i, outcome in zip(
                given,
                await self._run_call(
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

    async def _run_call(
        self,
        group: list[epb.StepAssignment],
        runnings: list[Running],
        inputs: list[str],
        metas: list[dict[str, Any]],
        task: tuple[Path, dict[str, Any], tuple[str, ...]],
    ) -> list[Outcome]:
        package_dir, manifest, extra_paths = task
        worker = await self.workers.acquire(
            package_dir, group[0].entry_point, extra_paths, manifest.get("resources") or {}
        )
        keys = [_names(a.ref) for a in group]
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
