"""The ``cpu`` figure: what each process of the local stack spends, in CPU milliseconds, per
sequential one-step no-op run (``Client.run``) — the scheduler, nx-27017, the executors,
valkey, this client. On a 2-core machine the sum against the round trip says whether a run
waits on hops or on CPU, and which process to look at first (issue 18)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psutil

from bench.figures import ms, pct
from clients.sdk import Client


def _name(args: list[str], executable: str) -> str:
    """services.scheduler, task worker, nx-27017, valkey-server..."""
    if "-m" in args:
        module = args[args.index("-m") + 1]
        return "nx-27017" if module == "services.localstack.nx_server" else module
    if any("multiprocessing" in a for a in args):
        return "task worker"
    return executable


def _children(pid: int | None = None) -> Iterator[tuple[str, int, float]]:
    """(name, pid, CPU seconds so far) of every process under ``pid`` (None: this one)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            yield _name(child.cmdline(), child.name()), child.pid, sum(child.cpu_times()[:2])


def _cpu_by_process() -> dict[str, float]:
    found = {"client (this bench)": sum(psutil.Process().cpu_times()[:2])}
    for name, pid, seconds in _children():
        found[f"{name} [{pid}]"] = seconds
    return found


def cpu_by_process(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) spent so far by each kind of process under ``pid`` (a
    stack's server: its scheduler, executors, task workers, valkey...), summed by name."""
    found: dict[str, float] = {}
    for name, _, seconds in _children(pid):
        found[name] = found.get(name, 0.0) + seconds
    return found


def stack_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) spent so far by the processes ``pids`` and every process
    under them (an executor's task workers): one stack's, when several run side by side."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += sum(proc.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def cpu(client: Client, count: int) -> dict[str, Any]:
    for _ in range(20):  # warm: workers started, caches filled
        client.run(task="noop", timeout=30)
    time.sleep(0.3)  # the write-behind of the warm-up
    before = _cpu_by_process()
    walls = []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        client.run(task="noop", timeout=30)
        walls.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    time.sleep(0.3)  # and of the measured runs
    after = _cpu_by_process()
    per_run = {
        name: round((after[name] - before.get(name, 0.0)) / count * 1000, 3) for name in after
    }
    per_run = {k: v for k, v in sorted(per_run.items(), key=lambda kv: -kv[1]) if v > 0}
    return {
        "runs": count,
        "p50_ms": ms(pct(walls, 50)),
        "wall_ms_per_run": round(elapsed / count * 1000, 3),
        "cpu_ms_per_run": per_run,
        "cpu_ms_per_run_total": round(sum(per_run.values()), 3),
    }
