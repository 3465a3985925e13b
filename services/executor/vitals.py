"""``ResourceMeter``: the CPU and memory an executor uses, with its worker processes, for its
heartbeats (ListExecutors, the dashboard and ``wtm monitor`` show them)."""

from __future__ import annotations

import psutil


class ResourceMeter:
    """Samples this process and its descendants. CPU is per process since the previous
    sample (psutil keeps the last reading on each ``Process``), so the same objects are kept
    between samples; a worker's first sample counts 0."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self._known: dict[int, psutil.Process] = {}

    def sample(self) -> tuple[float, int]:
        """(CPU percent of one core, resident bytes) over the executor and its workers."""
        cpu, rss = 0.0, 0
        try:
            found = [self._me, *self._me.children(recursive=True)]
        except psutil.Error:
            found = [self._me]
        known: dict[int, psutil.Process] = {}
        for proc in found:
            kept = self._known.get(proc.pid)
            if kept is None or kept != proc:  # new, or a pid reused by another process
                kept = proc
            try:
                cpu += kept.cpu_percent(None)
                rss += kept.memory_info().rss
            except psutil.Error:  # it ended meanwhile
                continue
            known[proc.pid] = kept
        self._known = known
        return cpu, rss
