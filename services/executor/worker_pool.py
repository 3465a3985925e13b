"""``WorkerPool``: warm worker processes kept per task version, shared by the slots.

A slot borrows an idle worker for the task version it must run, or starts one; it gives the
worker back when the step ends (unless the worker died or was killed). At most ``capacity``
workers exist; when a new one is needed and the pool is full, the least recently used idle
worker is retired (``cleanup()`` runs in it). So a model is loaded once per version and
kept while there is room, whichever slot runs the next step.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

from services.executor.worker import Worker

Key = tuple[str, str]  # package directory, entry point


class WorkerPool:
    """Idle workers by key, least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._idle: OrderedDict[int, Worker] = OrderedDict()
        self._busy = 0
        self.started = 0

    @property
    def size(self) -> int:
        return len(self._idle) + self._busy

    async def acquire(self, package_dir: Path, entry_point: str) -> Worker:
        key: Key = (str(package_dir), entry_point)
        for ident, worker in list(self._idle.items()):
            if worker.key == key:
                del self._idle[ident]
                if worker.alive:
                    self._busy += 1
                    return worker
                worker.kill()
        while self.size >= self.capacity and self._idle:
            _, oldest = self._idle.popitem(last=False)
            await asyncio.to_thread(oldest.retire)
        self._busy += 1
        self.started += 1
        return Worker(package_dir, entry_point)

    def release(self, worker: Worker) -> None:
        self._busy -= 1
        if worker.alive:
            self._idle[id(worker)] = worker
        else:
            worker.kill()

    async def close(self) -> None:
        while self._idle:
            _, worker = self._idle.popitem(last=False)
            await asyncio.to_thread(worker.retire)
