"""``Worker``: one warm worker process per slot, running one task version.

The process imports the task and calls ``setup()`` once; each input is one ``process()``
call. A timeout kills the process (a hard stop: no cooperation from the task needed), as
does a cancel; the next step on that slot starts a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.base.runtime import worker_main

_CTX = mp.get_context("spawn")


@dataclass(frozen=True)
class Outcome:
    """How one input went: SUCCEEDED | FAILED | FATAL | TIMED_OUT | CANCELLED."""

    outcome: str
    output_json: str = ""
    error: str = ""


class Worker:
    """A worker process serving one (package, entry point)."""

    def __init__(self, package_dir: Path, entry_point: str) -> None:
        self.key = (str(package_dir), entry_point)
        self._conn, child = _CTX.Pipe()
        self._proc = _CTX.Process(
            target=worker_main, args=(child, str(package_dir), entry_point), daemon=True
        )
        self._proc.start()
        child.close()
        self._ready = False

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def _recv(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError
        return self._conn.recv()

    async def run(
        self,
        input_json: str,
        meta: dict[str, Any],
        timeout: float,
        on_progress: Callable[[float, str], None],
        cancelled: asyncio.Event,
    ) -> Outcome:
        """Run one input within ``timeout`` seconds (setup included on a cold process)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if not self._ready:
                first = await self._next(deadline, cancelled)
                if first[0] != "ready":
                    self.kill()
                    return Outcome("FAILED", error=f"setup() failed: {first[1]}")
                self._ready = True
            self._conn.send(("run", input_json, meta))
            while True:
                message = await self._next(deadline, cancelled)
                if message[0] == "progress":
                    on_progress(message[1], message[2])
                    continue
                verdict, payload = message
                if verdict == "ok":
                    return Outcome("SUCCEEDED", output_json=payload)
                return Outcome("FATAL" if verdict == "fatal" else "FAILED", error=payload)
        except TimeoutError:
            self.kill()
            return Outcome(
                "TIMED_OUT", error=f"timed out after {timeout:g}s; worker process killed"
            )
        except asyncio.CancelledError:
            self.kill()
            raise
        except (EOFError, OSError, BrokenPipeError):
            code = self._proc.exitcode
            self.kill()
            return Outcome("FAILED", error=f"worker process died (exit code {code})")

    async def _next(self, deadline: float, cancelled: asyncio.Event) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            if cancelled.is_set():
                raise asyncio.CancelledError
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            try:
                return await asyncio.to_thread(self._recv, min(remaining, 0.25))
            except TimeoutError:
                if deadline - loop.time() <= 0:
                    raise
                if not self._proc.is_alive() and not self._conn.poll():
                    raise EOFError from None

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
