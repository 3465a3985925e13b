"""``Worker``: one warm worker process running one task version.

The process imports the task and calls ``setup()`` once; each input is one ``process()``
call. A timeout kills the process (a hard stop: no cooperation from the task needed), as
does a cancel, and so does going over the optional memory limit; the pool starts a fresh
process for the next step. The pipe is read from the event loop (``add_reader``), so a
step costs no thread hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from services.executor.sandbox import Confinement, environment, scrubbed_env, worker_entry

_CTX = mp.get_context("spawn")
_TICK = 0.25  # how often a waiting step checks for cancel, death and memory


@dataclass(frozen=True)
class Outcome:
    """How one input went: SUCCEEDED | FAILED | FATAL | TIMED_OUT | CANCELLED.

    ``process_times`` is (called, returned), wall-clock seconds, when ``process()`` ran.
    """

    outcome: str
    output_json: str = ""
    error: str = ""
    process_times: tuple[float, float] | None = None


def _outcome(verdict: str, payload: str, times: tuple[float, float]) -> Outcome:
    """The outcome of one input from the worker's verdict on it."""
    if verdict == "ok":
        return Outcome("SUCCEEDED", output_json=payload, process_times=times)
    return Outcome("FATAL" if verdict == "fatal" else "FAILED", error=payload, process_times=times)


class LeaseLapsed(Exception):
    """The running step's lease was not renewed in time: another executor may take it."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
    ) -> None:
        self.key = (str(package_dir), entry_point, extra_paths)
        self.memory_limit_mb = memory_limit_mb
        self.cpu_seconds = cpu_seconds  # per step, watched here (a warm worker lives on)
        self.confinement = confinement or Confinement(str(package_dir), os.getpid())
        self._conn, child = _CTX.Pipe()
        # Until when (monotonic) the running step's lease is known to hold; 0 while idle.
        # The process kills itself past it, so it cannot outlive its lease (see die_with).
        self._fence = _CTX.Value("d", 0.0, lock=False)
        self._proc = _CTX.Process(
            target=worker_entry,
            args=(child, str(package_dir), entry_point, extra_paths, self.confinement, self._fence),
            daemon=True,
        )
        with environment(scrubbed_env(self.confinement.workdir, self.confinement.threads)):
            self._proc.start()
        self._cpu_at_start = 0.0
        child.close()
        self._ready = False
        self.started_ns = time.time_ns()
        self.ready_ns = 0  # when setup() had finished

    def fence(self, until: float) -> None:
        """Let the running step go on until ``until`` (time.monotonic()), when its lease
        would lapse unless renewed again; 0 lifts the fence (idle, or no leases here)."""
        self._fence.value = until

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
            ("run", input_json, meta), 1, timeout, on_progress, cancelled, on_log
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
            ("batch", inputs, metas), len(inputs), timeout, on_progress, cancelled, on_log
        )

    async def _call(
        self,
        message: tuple[Any, ...],
        n: int,
        timeout: float,
        on_progress: Callable[[float, str], None],
        cancelled: asyncio.Event,
        on_log: Callable[[str, str], None],
    ) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if not self._ready:
                first = await self._next(deadline, cancelled)
                if first[0] != "ready":
                    self.kill()
                    return [Outcome("FAILED", error=f"setup() failed: {first[1]}")] * n
                self._ready = True
                self.ready_ns = time.time_ns()
            self._cpu_at_start = self._cpu_used()
            self._conn.send(message)
            while True:
                reply = await self._next(deadline, cancelled)
                if reply[0] == "progress":
                    on_progress(reply[1], reply[2])
                    continue
                if reply[0] == "log":
                    on_log(reply[1], reply[2])
                    continue
                if reply[0] == "batch_done":
                    return [_outcome(v, p, reply[2]) for v, p in reply[1]]
                return [_outcome(*reply)]
        except TimeoutError:
            self.kill()
            return [
                Outcome("TIMED_OUT", error=f"timed out after {timeout:g}s; worker process killed")
            ] * n
        except MemoryError as exc:
            self.kill()
            return [Outcome("FAILED", error=str(exc))] * n
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
        except (EOFError, OSError, BrokenPipeError):
            self._proc.join(1.0)  # its pipe closes a moment before it can be reaped
            code = self._proc.exitcode
            self.kill()
            return [Outcome("FAILED", error=f"worker process died (exit code {code})")] * n

    async def _next(self, deadline: float, cancelled: asyncio.Event) -> Any:
        """The next message from the process; raises TimeoutError at ``deadline``,
        CancelledError on cancel, EOFError when the process died, MemoryError over the limit.
        """
        loop = asyncio.get_running_loop()
        while True:
            if cancelled.is_set():
                raise asyncio.CancelledError
            if self._conn.poll():
                return self._conn.recv()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            if 0 < self._fence.value < time.monotonic():
                raise LeaseLapsed
            if not self._proc.is_alive() and not self._conn.poll():
                raise EOFError
            self._check_memory()
            readable = loop.create_future()
            fd = self._conn.fileno()
            loop.add_reader(fd, _resolve, readable)
            try:
                await asyncio.wait_for(readable, min(remaining, _TICK))
            except TimeoutError:
                pass
            finally:
                loop.remove_reader(fd)

    def _cpu_used(self) -> float:
        if not self.cpu_seconds or self._proc.pid is None:
            return 0.0
        try:
            t = psutil.Process(self._proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system + t.children_user + t.children_system)

    def _check_memory(self) -> None:
        if self.cpu_seconds and self._cpu_at_start >= 0:
            used = self._cpu_used() - self._cpu_at_start
            if used > self.cpu_seconds:
                raise MemoryError(
                    f"step used {used:.1f} CPU seconds, over its limit of {self.cpu_seconds}; "
                    "killed"
                )
        if not self.memory_limit_mb or self._proc.pid is None:
            return
        with contextlib.suppress(psutil.Error):
            rss_mb = psutil.Process(self._proc.pid).memory_info().rss / 2**20
            if rss_mb > self.memory_limit_mb:
                raise MemoryError(
                    f"worker process used {rss_mb:.0f} MiB, over the limit of "
                    f"{self.memory_limit_mb} MiB; killed"
                )

    def over_memory(self) -> bool:
        """True when an idle worker has grown past the limit (it should not be kept)."""
        try:
            self._check_memory()
        except MemoryError:
            return True
        return False

    def retire(self, timeout: float = 5.0) -> None:
        """Ask the task to clean up and exit; kill it if it does not."""
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._proc.join(timeout)
        self.kill()

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()
