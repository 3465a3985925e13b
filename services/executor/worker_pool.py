"""``WorkerPool``: warm worker processes kept per task version and namespace, shared by the
slots.

A slot borrows an idle worker for the task version it must run, or starts one; it gives the
worker back when the step ends (unless the worker died or was killed). At most ``capacity``
workers exist; when a new one is needed and the pool is full, the least recently used idle
worker is retired (``cleanup()`` runs in it). So a model is loaded once per version and
kept while there is room, whichever slot runs the next step. A worker that has grown past
the memory limit is not kept (the next step gets a fresh process), as Celery's
``worker_max_memory_per_child`` does. Once a second ``sweep`` measures every worker's files
against its disk limit (``worker_disk``), off the steps' path: a worker over it is killed,
busy (its step fails, saying why) or idle.

A worker serves one namespace: a task shared with other namespaces gets a worker in each,
so nothing a step of one namespace left in the process (module state, files in its work
directory, the artifacts it was given) is there for a step of another, and its sandbox
shows it only its own namespace's artifacts. (Until 2026-12-04 a shared task's warm worker
served every namespace that used it.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from services.executor.sandbox import Sandbox
from services.executor.worker import Worker
from services.executor.worker_disk import MAX_FILES

log = logging.getLogger(__name__)

Key = tuple[str, str, tuple[str, ...], str]  # package dir, entry point, sys.path, namespace


class WorkerPool:
    """Idle workers by key, least recently used first, and the busy ones."""

    def __init__(
        self, capacity: int, sandbox: Sandbox, memory_limit_mb: int = 0, max_files: int = MAX_FILES
    ) -> None:
        self.capacity = capacity
        self.sandbox = sandbox
        self.memory_limit_mb = memory_limit_mb
        self.max_files = max_files  # entries a worker's directory may hold (``worker_disk``)
        self._idle: OrderedDict[int, Worker] = OrderedDict()
        self._busy: dict[int, Worker] = {}
        self._removals: set[asyncio.Future[None]] = set()  # killed workers' directories
        self.started = 0

    @property
    def size(self) -> int:
        return len(self._idle) + len(self._busy)

    def busy_package_dirs(self) -> set[str]:
        """Package directories that running steps use (not to be evicted from the cache)."""
        return {w.key[0] for w in self._busy.values()}

    def disk_bytes(self) -> int:
        """What the workers' own files take, as the sweep's last walk of each found."""
        return sum(w.disk.used_bytes for w in [*self._busy.values(), *self._idle.values()])

    def busy_extra_paths(self) -> set[str]:
        """Installed requirements on the path of running steps' workers (not to be evicted)."""
        return {path for w in self._busy.values() for path in w.key[2]}

    async def retire_idle(self, directory: str) -> None:
        """Retire the idle workers that load code from ``directory`` (a package's, or a set
        of installed requirements): it is about to go."""
        for ident, worker in list(self._idle.items()):
            if worker.key[0] == directory or directory in worker.key[2]:
                del self._idle[ident]
                await asyncio.to_thread(self._retire, worker)

    def _retire(self, worker: Worker) -> None:
        worker.retire()
        self.sandbox.release(worker.confinement)

    def _kill(self, worker: Worker) -> None:
        worker.kill()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # in a thread already
            self.sandbox.release(worker.confinement)
            return
        # In a thread: the directory of a worker killed for its disk use can be large.
        removal = loop.run_in_executor(None, self.sandbox.release, worker.confinement)
        self._removals.add(removal)
        removal.add_done_callback(self._removals.discard)

    async def acquire(
        self,
        package_dir: Path,
        entry_point: str,
        extra_paths: tuple[str, ...] = (),
        resources: dict[str, Any] | None = None,
        namespace: str = "default",
    ) -> Worker:
        """An idle worker for the task version in ``namespace``, or a new one confined by the
        sandbox (``resources``: the task's ``task.json`` resources)."""
        key: Key = (str(package_dir), entry_point, extra_paths, namespace)
        for ident, worker in list(self._idle.items()):
            if worker.key == key:
                del self._idle[ident]
                if worker.alive:
                    self._busy[ident] = worker
                    return worker
                self._kill(worker)
        while self.size >= self.capacity and self._idle:
            _, oldest = self._idle.popitem(last=False)
            await asyncio.to_thread(self._retire, oldest)
        self.started += 1
        confinement = self.sandbox.confinement(package_dir, extra_paths, resources or {}, namespace)
        granted = self.sandbox.granted(resources or {})
        worker = Worker(
            package_dir,
            entry_point,
            extra_paths,
            self.memory_limit_mb,
            confinement,
            cpu_seconds=granted["cpu_seconds"],
            namespace=namespace,
            disk_mb=granted["disk_mb"],
            max_files=self.max_files,
        )
        self._busy[id(worker)] = worker
        return worker

    def release(self, worker: Worker) -> None:
        self._busy.pop(id(worker), None)
        if worker.alive and not worker.over_memory():
            self._idle[id(worker)] = worker
        else:
            self._kill(worker)

    async def sweep(self) -> None:
        """Kill the workers whose files are over their disk limit, and the idle ones grown
        past the memory limit (a thread task code left running goes on between steps)."""
        for ident, worker in [*self._busy.items(), *self._idle.items()]:
            why = None
            if ident in self._idle and worker.over_memory():
                why = "over its memory or CPU limit"
            elif worker.disk.limit_mb:
                why = await worker.disk.over()
            if not why:
                continue
            log.warning("worker %s (%s) killed: %s", worker.pid, worker.key[1], why)
            if self._idle.pop(ident, None) is worker:
                self._kill(worker)  # its directory goes in a thread
            elif self._busy.get(ident) is worker:  # its step fails, saying why; released dead
                worker.stop_for(why)

    async def close(self) -> None:
        while self._idle:
            _, worker = self._idle.popitem(last=False)
            await asyncio.to_thread(self._retire, worker)
        if self._removals:
            await asyncio.gather(*self._removals)
