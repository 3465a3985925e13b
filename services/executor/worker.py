"""``Worker``: one warm worker process running one task version.

The process imports the task and calls ``setup()`` once; each input is one ``process()``
call. A timeout kills the process (a hard stop: no cooperation from the task needed), as
does a cancel, and so does going over a limit the executor watches (memory and CPU seconds:
``OverLimit``; disk: the pool's sweep, ``stop_for``); the pool starts a fresh process for the
next step. The pipe is read from the event loop (``add_reader``), so a step costs no thread
hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from services.executor.sandbox import Confinement, environment, scrubbed_env
from services.executor.worker_confinement import worker_entry
from services.executor.worker_disk import MAX_FILES, DiskWatch
from tasks.base import worker_wire as wire

_CTX = mp.get_context("spawn")
_TICK = 0.25  # how often a waiting step checks for cancel, death and its limits


class OverLimit(Exception):
    """A worker went over a limit the executor watches as it waits (memory, CPU seconds)."""


@dataclass(frozen=True)
class Outcome:
    """How one input went: SUCCEEDED | FAILED | FATAL | TIMED_OUT | CANCELLED.

    ``process_times`` is (called, returned), wall-clock seconds, when ``process()`` ran.
    """

    outcome: str
    output_json: str = ""
    error: str = ""
    process_times: tuple[float, float] | None = None
    # of an output stored by reference: what later steps' conditions read of it (JSON text)
    condition_view: str = ""


MAX_TEXT = 4000  # characters of an error, a progress message or a log line from a worker
MAX_NOTES = 1000  # progress messages and log lines kept from one call (the rest dropped)
READ_CHUNK = 1 << 18  # bytes read from a worker's pipe at once
VERDICTS = {"ok": "SUCCEEDED", "failed": "FAILED", "fatal": "FATAL"}


def _outcomes(header: list[Any], payloads: list[str], n: int) -> list[Outcome]:
    """The outcomes of the ``n`` inputs a worker was given, from its verdict message:
    ``[verdict, times]`` (one input) or ``["batch_done", [verdict, ...], times]``, with one
    payload per input. The worker is untrusted (task code can write to its pipe): anything
    else raises ``Malformed``."""
    kinds = header[1] if header[0] == "batch_done" and len(header) == 3 else header[:1]
    times = header[-1]
    if not (
        isinstance(kinds, list)
        and len(kinds) == n == len(payloads)
        and all(k in VERDICTS for k in kinds)
        and isinstance(times, list)
        and len(times) == 2
        and all(isinstance(t, float | int) and not isinstance(t, bool) for t in times)
    ):
        raise wire.Malformed(f"not a verdict on {n} input(s): {str(header)[:200]}")
    called, returned = float(times[0]), float(times[1])
    return [
        Outcome("SUCCEEDED", output_json=p, process_times=(called, returned))
        if k == "ok"
        else Outcome(VERDICTS[k], error=wire.text(p, MAX_TEXT), process_times=(called, returned))
        for k, p in zip(kinds, payloads, strict=True)
    ]


def _number(value: Any) -> float:
    ok = isinstance(value, float | int) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else 0.0


def _ignore(level: str, message: str) -> None:
    return None


class LeaseLapsed(Exception):
    """The running step's lease was not renewed in time: another executor may take it."""


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class Worker:
    """A worker process serving one (package, entry point, extra sys.path entries)."""

    def __init__(
        self,
        package_dir: Path,
        entry_point: str,
        extra_paths: tuple[str, ...] = (),
        memory_limit_mb: int = 0,
        confinement: Confinement | None = None,
        cpu_seconds: int = 0,
        namespace: str = "default",
        disk_mb: int = 0,
        max_files: int = MAX_FILES,
    ) -> None:
        # What the pool finds it by: one task version, serving one namespace.
        self.key = (str(package_dir), entry_point, extra_paths, namespace)
        self.memory_limit_mb = memory_limit_mb
        self.cpu_seconds = cpu_seconds  # per step, watched here (a warm worker lives on)
        self.confinement = confinement or Confinement(str(package_dir), os.getpid())
        self.disk = DiskWatch(self.confinement.workdir, disk_mb, max_files)  # the pool's sweep
        self.stopped_for = ""  # why the executor killed it mid-call (``stop_for``)
        conn, child = _CTX.Pipe()
        # Until when (monotonic) the running step's lease is known to hold; 0 while idle.
        # The process kills itself past it, so it cannot outlive its lease (see die_with);
        # it hears each new time down a pipe of its own, and the executor checks too.
        fence_end, self._fence = _CTX.Pipe(duplex=False)
        os.set_blocking(self._fence.fileno(), False)
        self._fence_until = 0.0
        # What it prints: read as its step's log lines (``_read_output``).
        self._output, output_end = _CTX.Pipe(duplex=False)
        os.set_blocking(self._output.fileno(), False)
        self._printed = b""  # a line not yet ended
        self._printing = memoryview(bytearray(1 << 16))
        self._on_output: Callable[[str, str], None] = _ignore
        self._output_lines = 0
        self._proc = _CTX.Process(
            target=worker_entry,
            args=(
                child,
                str(package_dir),
                entry_point,
                extra_paths,
                self.confinement,
                fence_end,
                output_end,
            ),
            daemon=True,
        )
        with environment(scrubbed_env(self.confinement.workdir, self.confinement.threads)):
            self._proc.start()
        self._cpu_at_start = 0.0
        self._ps: psutil.Process | None = None  # the process as psutil sees it, looked up once
        child.close()
        fence_end.close()
        output_end.close()
        # The executor's end, read and written without blocking (``worker_wire``): what
        # comes from the process is untrusted, and the event loop must not wait on it.
        self._sock = socket.socket(fileno=os.dup(conn.fileno()))
        self._sock.setblocking(False)
        conn.close()
        self._reader = wire.Reader()
        self._chunk = memoryview(bytearray(READ_CHUNK))
        self._ready = False
        self.started_ns = time.time_ns()
        self.ready_ns = 0  # when setup() had finished

    def fence(self, until: float) -> None:
        """Let the running step go on until ``until`` (time.monotonic()), when its lease
        would lapse unless renewed again; 0 lifts the fence (idle, or no leases here)."""
        self._fence_until = until
        with contextlib.suppress(OSError):  # full (a stalled process): it dies at the last
            os.write(self._fence.fileno(), struct.pack("d", until))

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    async def run(
        self,
        input_json: str,
        meta: dict[str, Any],
        timeout: float,
        on_progress: Callable[[float, str], None],
        cancelled: asyncio.Event,
        on_log: Callable[[str, str], None] = lambda level, message: None,
    ) -> Outcome:
        """Run one input within ``timeout`` seconds (setup included on a cold process)."""
        [outcome] = await self._call(
            (["run", meta], [input_json]), 1, timeout, on_progress, cancelled, on_log
        )
        return outcome

    async def run_batch(
        self,
        inputs: list[str],
        metas: list[dict[str, Any]],
        timeout: float,
        on_progress: Callable[[float, str], None],
        cancelled: asyncio.Event,
        on_log: Callable[[str, str], None] = lambda level, message: None,
    ) -> list[Outcome]:
        """Run a dynamic batch in one ``process_batch`` call: one outcome per input. What
        stops the call (a timeout, a cancel, the process dying) is every input's outcome."""
        return await self._call(
            (["batch", metas], inputs), len(inputs), timeout, on_progress, cancelled, on_log
        )

    async def _call(
        self,
        message: tuple[list[Any], list[str]],
        n: int,
        timeout: float,
        on_progress: Callable[[float, str], None],
        cancelled: asyncio.Event,
        on_log: Callable[[str, str], None],
    ) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._on_output = _ignore
        self._read_output()  # printed since the last call: no step's
        self._on_output, self._output_lines = on_log, 0
        try:
            if not self._ready:
                first, _ = await self._next(deadline, cancelled)
                if first[0] != "ready":
                    self.kill()
                    why = wire.text(first[1] if len(first) > 1 else first[0], MAX_TEXT)
                    return [Outcome("FAILED", error=f"setup() failed: {why}")] * n
                self._ready = True
                self.ready_ns = time.time_ns()
            self._cpu_at_start = self._cpu_used()
            await self._send(wire.frames(*message), deadline)
            reply, payloads = await self._reply(deadline, cancelled, on_progress, on_log)
            self._read_output()
            return _outcomes(reply, payloads, n)
        except wire.Malformed as exc:
            self.kill()
            return [Outcome("FAILED", error=f"the worker sent {exc}; worker process killed")] * n
        except TimeoutError:
            self.kill()
            return [
                Outcome("TIMED_OUT", error=f"timed out after {timeout:g}s; worker process killed")
            ] * n
        except OverLimit as exc:
            self.kill()
            return [Outcome("FAILED", error=f"{exc}; worker process killed")] * n
        except LeaseLapsed:
            self.kill()
            return [
                Outcome(
                    "FAILED",
                    error="stopped: its lease could not be renewed (the scheduler was out of "
                    "reach), so it may already run elsewhere",
                )
            ] * n
        except asyncio.CancelledError:
            self.kill()
            raise
        except (EOFError, OSError):
            self._proc.join(1.0)  # its pipe closes a moment before it can be reaped
            code = self._proc.exitcode
            self.kill()
            why = f"{self.stopped_for}; worker process killed" if self.stopped_for else ""
            return [Outcome("FAILED", error=why or f"worker process died (exit code {code})")] * n

    async def _reply(
        self,
        deadline: float,
        cancelled: asyncio.Event,
        on_progress: Callable[[float, str], None],
        on_log: Callable[[str, str], None],
    ) -> Any:
        """The call's reply, its progress reports and log lines passed on as they come (the
        first ``MAX_NOTES`` of them; a task that sends fifty times that is malformed)."""
        notes = 0
        while True:
            reply, payloads = await self._next(deadline, cancelled)
            if reply[0] not in ("progress", "log") or len(reply) != 3:
                return reply, payloads
            notes += 1
            if notes % 100 == 0:  # a chatty task must not hold the event loop
                await asyncio.sleep(0)
            if notes > 50 * MAX_NOTES:
                raise wire.Malformed(f"over {50 * MAX_NOTES:,} progress messages")
            if notes > MAX_NOTES:
                continue
            if reply[0] == "progress":
                on_progress(_number(reply[1]), wire.text(reply[2], MAX_TEXT))
            else:
                on_log(wire.text(reply[1], 16), wire.text(reply[2], MAX_TEXT))

    async def _next(self, deadline: float, cancelled: asyncio.Event) -> Any:
        """The next message from the process; raises TimeoutError at ``deadline``,
        CancelledError on cancel, EOFError when the process died, OverLimit over a limit.
        """
        loop = asyncio.get_running_loop()
        ticked = False
        while True:
            if cancelled.is_set():
                raise asyncio.CancelledError
            message = self._reader.message()
            if message is not None:
                return message
            if self._read_available():
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            if 0 < self._fence_until < time.monotonic():
                raise LeaseLapsed
            # A process that dies closes its end of the pipe (EOF, above); one whose end a
            # child of it still holds is found here, at the next tick (not before every wait:
            # a waitpid each step).
            if ticked and not self._proc.is_alive():
                raise EOFError
            self._check_memory()
            woken = loop.create_future()
            fd = self._sock.fileno()
            loop.add_reader(fd, _resolve, woken, False)
            tick = loop.call_later(min(remaining, _TICK), _resolve, woken, True)
            try:  # (not asyncio.wait_for: a task and a waiter more per wait)
                ticked = await woken
            finally:
                tick.cancel()
                loop.remove_reader(fd)
            if ticked:
                self._read_output()  # a long call's prints, each tick (a step's end reads
                # the rest): a task that fills the pipe waits at most a tick

    def _read_available(self) -> bool:
        """Feed the reader one read of what the pipe holds: True if anything came. Raises
        EOFError when the process's end is closed."""
        try:
            n = self._sock.recv_into(self._chunk)
        except BlockingIOError:
            return False
        if not n:
            raise EOFError
        self._reader.feed(self._chunk[:n])
        return True

    def _read_output(self) -> None:
        """Pass what the process printed, a line at a time, to the running call's log (at
        most MAX_NOTES lines a call, each cut to MAX_TEXT; the rest read and dropped)."""
        try:  # into a buffer kept for it: os.read would allocate its size on every call
            n = os.readv(self._output.fileno(), [self._printing])
        except OSError:  # BlockingIOError: nothing printed
            return
        lines = (self._printed + self._printing[:n].tobytes()).split(b"\n")
        self._printed = lines.pop()
        if len(self._printed) > MAX_TEXT * 4:  # no line end in sight: pass what there is
            lines.append(self._printed)
            self._printed = b""
        for line in lines:
            self._output_lines += 1
            if self._output_lines <= MAX_NOTES:
                self._on_output("PRINT", wire.text(line.decode("utf-8", "replace"), MAX_TEXT))

    async def _send(self, data: bytes, deadline: float) -> None:
        """Write ``data`` to the process: at once when the pipe has room (always, for a
        step's usual input), else as it makes room, until ``deadline``."""
        sent = 0
        with contextlib.suppress(BlockingIOError):
            sent = self._sock.send(data)
        if sent < len(data):
            loop = asyncio.get_running_loop()
            remaining = max(deadline - loop.time(), 0)
            await asyncio.wait_for(loop.sock_sendall(self._sock, data[sent:]), remaining)

    def _psutil(self) -> psutil.Process:
        """The process, for its limits' readings (psutil.Process(pid) reads /proc each time it
        is made: ~60 µs, twice a step with both limits set). Raises psutil.Error once gone."""
        if self._ps is None:
            if self._proc.pid is None:
                raise psutil.NoSuchProcess(0)
            self._ps = psutil.Process(self._proc.pid)
        return self._ps

    def _cpu_used(self) -> float:
        if not self.cpu_seconds:
            return 0.0
        try:
            t = self._psutil().cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system + t.children_user + t.children_system)

    def _check_memory(self) -> None:
        if self.cpu_seconds and self._cpu_at_start >= 0:
            used = self._cpu_used() - self._cpu_at_start
            if used > self.cpu_seconds:
                raise OverLimit(
                    f"step used {used:.1f} CPU seconds, over its limit of {self.cpu_seconds}"
                )
        if not self.memory_limit_mb:
            return
        with contextlib.suppress(psutil.Error):
            rss_mb = self._psutil().memory_info().rss / 2**20
            if rss_mb > self.memory_limit_mb:
                raise OverLimit(
                    f"worker process used {rss_mb:.0f} MiB, over the limit of "
                    f"{self.memory_limit_mb} MiB"
                )

    def over_memory(self) -> bool:
        """True when an idle worker has grown past the limit (it should not be kept)."""
        try:
            self._check_memory()
        except OverLimit:
            return True
        return False

    def stop_for(self, why: str) -> None:
        """Kill the process, busy or not, for ``why`` (what the running call reports)."""
        self.stopped_for = why
        if self._proc.is_alive():
            self._proc.kill()

    def retire(self, timeout: float = 5.0) -> None:
        """Ask the task to clean up and exit; kill it if it does not."""
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._sock.send(wire.frames(["stop"]))
            self._proc.join(timeout)
        self.kill()

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._sock.close()
        self._fence.close()
        self._output.close()
