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
import logging
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from common import tls
from common.client_core import CHANNEL_OPTIONS, AsyncCaller
from services.common.config import read_secret
from services.common.stopping import cancel_and_wait
from services.executor.lease_fence import LeaseFence
from services.executor.preflight import check_cache_dir
from services.executor.sandbox import Ceilings, Sandbox, protect_executor, thread_share
from services.executor.settings import ExecutorSettings
from services.executor.slot_faults import SlotFaults
from services.executor.step_runner import LAPSED, Running, StepRunner, names
from services.executor.uplink import Uplink
from services.executor.vitals import ResourceMeter
from services.executor.worker import Outcome
from services.executor.worker_pool import WorkerPool
from wtm.v1 import executor_service_pb2 as epb
from wtm.v1 import executor_service_pb2_grpc as epb_grpc

log = logging.getLogger(__name__)
SOFTWARE_VERSION = "0.1.0"


def installed_packages() -> list[str]:
    """What is installed where tasks run, as sorted "name==version" (for the hello)."""
    found = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions()}
    return sorted(f"{name}=={version}" for name, version in found.items() if name)


# "SUCCEEDED" -> STEP_OUTCOME_SUCCEEDED..., looked up once, not per result
OUTCOMES = {name.removeprefix("STEP_OUTCOME_"): number for name, number in epb.StepOutcome.items()}
RECONNECT_MAX_SECONDS = 10.0
SWEEP_SECONDS = 1.0  # how often workers' files are measured (``WorkerPool.sweep``)


def reconnect_cap(lease_seconds: float) -> float:
    """The longest wait between attempts to reconnect: a quarter of the lease the scheduler
    gave (30 s before any welcome), so that an executor back within that keeps the leases of
    the steps it runs through a scheduler's restart; 0.5 to 10 s."""
    return min(RECONNECT_MAX_SECONDS, max(0.5, lease_seconds / 4))


class StreamClosed(Exception):
    """The scheduler stream ended; reconnect."""


class Refused(Exception):
    """The scheduler refused this executor: no reconnect would be let in."""


REFUSALS = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,  # it would not isolate task code
)


def stream_lost(exc: aio.AioRpcError) -> None:
    """The scheduler's stream ended with ``exc``: a refusal of this executor ends the process
    (``Refused``, exit status 2); anything else is logged, to reconnect."""
    if exc.code() in REFUSALS:
        log.error("scheduler refused this executor: %s", exc.details())
        raise Refused(exc.details()) from exc
    log.warning("scheduler stream lost: %s", exc.code().name)


class Executor:
    """Runs assignments from the scheduler until stopped."""

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        if bool(settings.tls_client_cert) != bool(settings.tls_client_key):
            raise SystemExit("WTM_TLS_CLIENT_CERT and WTM_TLS_CLIENT_KEY go together")
        api_key = read_secret(settings.api_key, settings.api_key_file, "the API key")
        metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._metadata = metadata
        self._registry_caller = AsyncCaller(
            settings.registry, ca=settings.tls_ca, api_key=api_key or "", retry_seconds=0
        )
        cache_dir = Path(settings.cache_dir)
        check_cache_dir(cache_dir)  # one that cannot be written would fail every step
        # Warm workers per task version, shared by the slots; room for a few idle versions.
        self.sandbox = Sandbox(
            cache_dir,
            Ceilings(
                memory_mb=settings.worker_max_memory_mb,
                open_files=settings.worker_max_open_files,
                file_size_mb=settings.worker_max_file_size_mb,
                processes=settings.worker_max_processes,
                cpu_seconds=settings.worker_max_cpu_seconds,
                disk_mb=settings.worker_max_disk_mb,
            ),
            uid_base=settings.worker_uid_base,
            enabled=settings.sandbox,
            threads=thread_share(settings.slots, settings.worker_threads),
        )
        if settings.sandbox:
            protect_executor()
        if self.sandbox.level != "isolated":  # said loudly: an operator may not have meant it
            log.warning(
                "task code is confined by a scrubbed environment and resource limits only: "
                "its workers run as this executor's own user (uid %d), on its network, seeing "
                "what it can see. For the full sandbox run the executor as root with %s "
                "(docs/architecture.md, Threat model)",
                os.geteuid(),
                "WTM_SANDBOX=true" if not settings.sandbox else "the sandbox's capabilities",
            )
        self.workers = WorkerPool(
            settings.slots + settings.spare_workers,
            self.sandbox,
            settings.worker_memory_mb,
            max_files=settings.worker_max_files,
        )
        self.fence = LeaseFence()
        # What the slots take: a step, or the steps of one dynamic batch (one call).
        self._assignments: asyncio.Queue[list[epb.StepAssignment]] = asyncio.Queue()
        self._calls: dict[str, list[epb.StepAssignment]] = {}  # batches still arriving
        self.uplink = Uplink()
        self._running: dict[tuple[str, str], Running] = {}
        # Assignments waiting for a free slot (a scheduler with prefetch sends some ahead);
        # their leases are renewed by heartbeats like those of running steps.
        self._held: dict[tuple[str, str], epb.StepAttemptRef] = {}
        self._received: dict[bytes, int] = {}  # assignment ref -> when it arrived (ns)
        self._draining = asyncio.Event()
        self._heard = 0.0  # when the scheduler last sent anything (monotonic)
        self._abandoned = 0  # a stream given up for its scheduler's silence
        self._rests_honoured = False  # and that it passes over an executor that rests
        self._attempts = 0
        self._heartbeat_seconds = 5.0
        self.meter = ResourceMeter()  # CPU and memory, for the heartbeats
        self.slot_errors = 0  # steps that failed in the executor itself, not in task code
        self.last_slot_error = ""
        self.faults = SlotFaults(settings.rest_after_errors, settings.rest_seconds)
        self.steps = StepRunner(
            settings,
            self._registry_caller,
            self.workers,
            self.fence,
            send=self.uplink.put,
            running=self._running.values,
        )

    # Lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain and return. A refusal by the scheduler
        ends it at once (SystemExit 2: nothing was leased to it), and so does a fault that
        ended the connection's loop (raised: better a restart than an executor cut off)."""
        slots = [asyncio.create_task(self._slot(i)) for i in range(self.settings.slots)]
        connection = asyncio.create_task(self._connect_forever())
        sweeps = asyncio.create_task(self._sweeps())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, connection}, return_when=asyncio.FIRST_COMPLETED)
        ended = connection.done()  # its loop ends by itself only when refused (or a fault)
        if not ended:
            await self._drain()
        await cancel_and_wait([*slots, sweeps, stopping, *([] if ended else [connection])])
        await self.workers.close()  # the uid claims go with the process (``worker_uids``)
        await self._registry_caller.close()
        if ended:
            try:
                connection.result()
            except Refused as exc:
                raise SystemExit(2) from exc
        log.info("stopped")

    async def _drain(self) -> None:
        """Take nothing new, let the running steps end (up to ``drain_seconds``), hand back
        the rest, and let the last results go up the stream."""
        log.info(
            "draining: %d running, up to %.0fs", len(self._running), self.settings.drain_seconds
        )
        self._draining.set()
        self._release_held("executor is draining")
        self.uplink.put(self._heartbeat())  # tells the scheduler: no new work
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle(), self.settings.drain_seconds)
        for running in self._running.values():
            running.released = True
            running.cancelled.set()
        await asyncio.sleep(0.3)  # let the last results reach the outbox and the stream
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.uplink.flushed(), 2.0)

    def _release_held(self, why: str) -> None:
        """Hand back the assignments no slot has started (draining or resting: it takes
        nothing new)."""
        self._flush_calls()
        while not self._assignments.empty():
            for a in self._assignments.get_nowait():
                ref = a.ref
                held = self._held.get((ref.run_id, ref.step_id))
                if held is not None and held.attempt == ref.attempt:
                    del self._held[(ref.run_id, ref.step_id)]
                    self.uplink.put(self._released(ref, why))

    def _rest(self, seconds: float) -> None:
        """Take nothing new for ``seconds`` (``SlotFaults``): what is held goes back, and the
        scheduler hears it at once; a heartbeat says when the rest is over."""
        log.warning(
            "steps kept failing in this executor itself (%d so far; last: "
            "%s): taking nothing new for %.0fs",
            self.slot_errors,
            self.last_slot_error,
            seconds,
        )
        self.uplink.put(self._heartbeat())  # before the releases: none comes back
        self._release_held("executor is resting: steps kept failing in it")
        asyncio.get_running_loop().call_later(seconds, self._rested)

    def _end_rest(self, ended_by: str) -> None:
        """An operator ended the rest (``wtm executor resume``): take work again now, and
        say so at once."""
        if self.faults.end_rest(time.monotonic()):
            log.info("rest ended by %s: taking work again", ended_by or "an operator")
            self.uplink.put(self._heartbeat())

    def _rested(self) -> None:
        if self.faults.resting_until and not self.faults.resting(time.monotonic()):  # not ended
            log.info("rest over: taking work again")
            self.uplink.put(self._heartbeat())

    def _flush_calls(self) -> None:
        """Batches whose steps have not all arrived go to the slots as they are (the stream
        broke between them, or the executor is draining)."""
        for group in self._calls.values():
            self._assignments.put_nowait(group)
        self._calls.clear()

    async def _idle(self) -> None:
        while self._running or not self._assignments.empty():
            await asyncio.sleep(0.05)

    # Connection --------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        backoff = wait_exponential_jitter(multiplier=0.2, max=RECONNECT_MAX_SECONDS)
        retrying = AsyncRetrying(
            wait=lambda state: min(backoff(state), reconnect_cap(self.fence.lease_seconds)),
            retry=retry_if_exception_type((aio.AioRpcError, StreamClosed)),
        )
        async for attempt in retrying:
            with attempt:
                await self._session()

    def _hello(self) -> epb.ConnectRequest:
        s = self.settings
        self.fence.hello_sent(time.monotonic())
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
                sandbox=self.sandbox.level,
                ends_rests=True,
            )
        )

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
            stream_no = self.uplink.new_stream()
            self._rests_honoured = False
            call = stub.Connect(
                self.uplink.requests(stream_no, self._hello()), metadata=self._metadata
            )
            heartbeats: asyncio.Task[None] | None = None
            try:
                async for message in call:
                    self._heard = time.monotonic()
                    kind = message.WhichOneof("message")
                    if kind == "assignment":
                        self._assigned(message.assignment)
                    elif kind == "assignments":
                        for a in message.assignments.assignments:
                            self._assigned(a)
                    elif kind == "welcome":
                        self._welcomed(message.welcome, address)
                        heartbeats = asyncio.create_task(self._heartbeats(call))
                    elif kind == "cancel":
                        self._cancelled(message.cancel.ref)
                    elif kind == "end_rest":
                        self._end_rest(message.end_rest.ended_by)
                    elif kind == "heartbeat_ack":
                        self._acknowledged(message.heartbeat_ack.sequence)
            except aio.AioRpcError as exc:
                stream_lost(exc)
                raise
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._abandoned != stream_no or (task is not None and task.cancelling()):
                    raise  # the executor is stopping
            finally:
                if heartbeats is not None:
                    heartbeats.cancel()
                self._flush_calls()
            raise StreamClosed

    def _welcomed(self, welcome: epb.ExecutorWelcome, address: str) -> None:
        """What the scheduler's welcome settles for this stream; then what survived the
        last one goes up: the running steps and a rest (a heartbeat), the unheard results."""
        self._heartbeat_seconds = welcome.heartbeat_interval_seconds or 5.0
        self.fence.configure(
            welcome.lease_seconds or 30, welcome.acks_heartbeats, welcome.stamps_leases
        )
        self.uplink.batched_results = welcome.batched_messages
        self._rests_honoured = welcome.honours_rests
        if not welcome.honours_rests:  # it would lease to a resting one again
            self.faults.resting_until = 0.0
        log.info("connected to %s as %s", address, self.settings.executor_id)
        if self._running or self.faults.resting(time.monotonic()):
            self.uplink.put(self._heartbeat())
        self.uplink.resend(welcome.lease_seconds or 30)

    def _cancelled(self, ref: epb.StepAttemptRef) -> None:
        """Stop the attempt if it runs here; forget it if it still waits for a slot."""
        key = (ref.run_id, ref.step_id)
        running = self._running.get(key)
        if running is not None and running.ref.attempt == ref.attempt:
            running.cancelled.set()
        held = self._held.get(key)
        if held is not None and held.attempt == ref.attempt:
            del self._held[key]  # its slot will skip it
            self.fence.forget(key)

    def _acknowledged(self, sequence: int) -> None:
        """A heartbeat was heard: the leases it renewed last longer in their workers too."""
        for key in self.fence.acknowledged(sequence):
            running = self._running.get(key)
            if running is not None and running.worker is not None:
                running.worker.fence(self.fence.until(key))

    def _assigned(self, a: epb.StepAssignment) -> None:
        if self._draining.is_set():  # sent before the scheduler heard: give it back
            self.uplink.put(self._released(a.ref, "executor is draining"))
            return
        if self.faults.resting(time.monotonic()):
            self.uplink.put(self._released(a.ref, "executor is resting"))
            return
        ref = a.ref
        self._received[ref.SerializeToString()] = time.time_ns()
        self._held[(ref.run_id, ref.step_id)] = ref
        self.fence.granted((ref.run_id, ref.step_id), time.monotonic(), a.leased_after_heartbeat)
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
                resting_seconds=self.faults.resting(time.monotonic()),
                cpu_percent=cpu,
                memory_bytes=rss,
                disk_bytes=self.steps.cached_bytes() + self.workers.disk_bytes(),
            )
        )

    @staticmethod
    def _released(ref: epb.StepAttemptRef, why: str) -> epb.ConnectRequest:
        return epb.ConnectRequest(
            result=epb.StepResult(ref=ref, outcome=epb.StepOutcome.STEP_OUTCOME_RELEASED, error=why)
        )

    async def _heartbeats(self, call: aio.StreamStreamCall[Any, Any]) -> None:
        """A heartbeat each interval; and the stream given up (to reconnect, to the next
        scheduler given) once its scheduler has said nothing — not one acknowledgement — for
        three intervals and a whole lease: by then the fence has stopped every step it
        leased, and the stream is worth nothing. A frozen scheduler (SIGSTOP, a stalled VM)
        keeps the TCP connection up, and gRPC's keep-alive would see it only after 80 s."""
        while True:
            self._touch_health_file()
            await asyncio.sleep(self._heartbeat_seconds)
            self.uplink.put(self._heartbeat())
            quiet = time.monotonic() - self._heard
            if self.fence.enabled and quiet > max(
                3 * self._heartbeat_seconds, self.fence.lease_seconds
            ):
                log.warning("scheduler silent for %.1fs: reconnecting", quiet)
                self._abandoned = self.uplink.stream_no
                call.cancel()
                return

    async def _sweeps(self) -> None:
        """Once a second, kill the workers over a limit (``WorkerPool.sweep``)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.workers.sweep()
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("sweeping the workers failed")

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
            group = self._unlapsed(group)
            if not group:
                continue
            runnings = [Running(a.ref, a.digest) for a in group]
            for r in runnings:
                self._running[names(r.ref)] = r
            try:
                if len(group) == 1:
                    outcomes = [await self.steps.execute(group[0], runnings[0])]
                else:
                    outcomes = await self.steps.execute_batch(group, runnings)
            except Exception as exc:  # noqa: BLE001 - a slot outlives any one step's trouble
                log.exception(
                    "slot %d: step %s/%s failed in the executor", index, *names(group[0].ref)
                )
                outcomes = self._failed_here(group, exc)
            else:
                worked = [
                    a.digest
                    for a, o in zip(group, outcomes, strict=True)
                    if o.process_times is not None or o.outcome == "TIMED_OUT"
                ]
                if worked:
                    self.faults.ended_otherwise(worked)  # task code ran here: the executor works
            finally:
                for r in runnings:
                    self._running.pop(names(r.ref), None)
                    self.fence.forget(names(r.ref))
                    self.steps.done(r)
            for a, outcome in zip(group, outcomes, strict=True):
                self._send_result(a.ref, outcome)

    def _unlapsed(self, group: list[epb.StepAssignment]) -> list[epb.StepAssignment]:
        """The steps whose leases still hold; the others are handed back unrun (the
        executor or the network was held up: the step may be running elsewhere by now).
        Checked as the slot takes them — before their package and inputs are fetched, and
        before the heartbeats list them as running — and once more as the worker is about
        to start them (``StepRunner``), since fetching may take the rest of a lease."""
        now = time.monotonic()
        live = []
        for a in group:
            if not self.fence.lapsed(names(a.ref), now):
                live.append(a)
                continue
            self.fence.forget(names(a.ref))
            log.warning(
                "step %s/%s: its lease lapsed before it started: handed back", *names(a.ref)
            )
            self._send_result(a.ref, Outcome("RELEASED", error=LAPSED))
        return live

    def _failed_here(self, group: list[epb.StepAssignment], exc: Exception) -> list[Outcome]:
        """The outcomes of steps that failed in the executor, not in their task (a full disk
        while unpacking, a bug here): they fail retryably, with the error, and the executor
        may rest if its failures say it is what is broken."""
        failed = Outcome("FAILED", error=f"executor error: {type(exc).__name__}: {exc}")
        self.slot_errors += 1
        self.last_slot_error = failed.error[:500]
        if self._rests_honoured:  # (an older scheduler would lease to it again)
            rest = self.faults.failed_here(
                [a.digest for a in group],
                time.monotonic(),
                proven=[a.digest for a in group if a.proven],
            )
            if rest:
                self._rest(rest)
        return [failed] * len(group)

    def _send_result(self, ref: epb.StepAttemptRef, outcome: Outcome) -> None:
        result = epb.StepResult(
            ref=ref,
            outcome=OUTCOMES[outcome.outcome],
            output_json=outcome.output_json,
            error=outcome.error,
            condition_view_json=outcome.condition_view,
        )
        if outcome.process_times is not None:
            result.start_time.FromNanoseconds(int(outcome.process_times[0] * 1e9))
            result.end_time.FromNanoseconds(int(outcome.process_times[1] * 1e9))
        result.received_time.FromNanoseconds(self._received.pop(ref.SerializeToString(), 0))
        result.sent_time.FromNanoseconds(time.time_ns())
        self.uplink.put(epb.ConnectRequest(result=result))
