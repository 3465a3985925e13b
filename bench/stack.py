"""The bench's stack and its bursts: eight slots (on one executor, or shared among
``WTM_BENCH_EXECUTORS``), the no-op bursts the throughput, tracing and ``bench.ab`` figures
submit, and the waits that tell when a burst and what it left behind are done."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.cpu import cpu_by_process, stack_cpu
from clients.sdk import Client
from common.states import TERMINAL_STATES, State
from services.localstack import Cluster

ROOT = Path(__file__).resolve().parents[1]
BENCH_TASKS = Path(__file__).resolve().parent / "tasks"
DEADLINE_S = 600
# The bench's stack: eight slots on one executor, as Celery's side is one worker node with a
# pool of eight threads (or two processes), and as `wtm stack up` and docker compose start one
# executor per host. WTM_BENCH_EXECUTORS shares the eight among more (2: the records' stack
# until session 43, two executors of four slots).
SLOTS_IN_ALL = 8
EXECUTORS = int(os.environ.get("WTM_BENCH_EXECUTORS", "1"))
if EXECUTORS not in (1, 2, 4, 8):
    raise SystemExit(f"WTM_BENCH_EXECUTORS={EXECUTORS}: 1, 2, 4 or 8 (they share eight slots)")
SLOTS = SLOTS_IN_ALL // EXECUTORS  # each executor's
PREFETCH_PER_SLOT = 4  # Celery's default worker_prefetch_multiplier


@contextlib.contextmanager
def bench_stack(
    env: dict[str, str], prefix: str = "wtm-bench-"
) -> Iterator[tuple[str, Cluster, Client]]:
    """The bench's stack (``EXECUTORS`` executors of ``SLOTS`` slots, in a temporary
    directory) with ``env``, and an admin client of it: (the directory, the stack, the client)."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        Cluster(tmp, executors=EXECUTORS, slots=SLOTS, env=env) as c,
        Client(
            c.registry_address, c.scheduler_address, api_key=c.admin_key, tls_ca=str(c.ca_file)
        ) as client,
    ):
        yield tmp, c, client


def wait_all(
    client: Client, batches: list[tuple[str, list[str]]], deadline: float
) -> dict[str, Any]:
    """Wait for every run of ``batches`` (``submit_many``'s (batch id, run ids)) to finish,
    bounded by ``deadline``; return the finished runs by id.

    While they run, it asks only whether any run of a batch is still unfinished (``ListRuns``
    of that batch in each unfinished state, one run a page: two small calls every 0.1 s); the
    runs are read one by one once all have ended. Reading every pending run every 50 ms
    instead, as this did until 2026-12-03, cost the scheduler the CPU the runs needed, and
    more for a variant whose runs end out of submission order: with dynamic batching, half
    the runs were still pending when the last one submitted ended (batching figure, same
    run: 62 → 77+ batched runs/s)."""
    for batch_id, _ in batches:
        while any(
            client.list_runs_page(state=state, batch_id=batch_id, page_size=1)[0]
            for state in UNFINISHED
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id}: runs unfinished at the deadline")
            time.sleep(0.1)
    done: dict[str, Any] = {}
    for _, run_ids in batches:
        for run_id in run_ids:
            run = client.get_run(run_id, resolve_refs=False)
            if not run.finished:  # the history ahead of the run's own record: wait for it
                left = max(deadline - time.monotonic(), 0.001)
                run = client.wait(run_id, timeout=left, raise_on_failure=False)
            done[run_id] = run
    return done


UNFINISHED = [s.value for s in State if s not in TERMINAL_STATES]
WARM_RUNS = 1000  # throughput's first batch, not measured: it starts a worker on every slot


def warm_slots(client: Client) -> None:
    """A batch of no-ops that starts a task worker on every slot, not measured."""
    warm = client.submit_many([{"warm": i} for i in range(WARM_RUNS)], task="noop")
    wait_all(client, [warm], time.monotonic() + 60)


def burst(
    client: Client,
    count: int,
    stack_pid: int = 0,
    with_history: bool = False,
    stack_pids: list[int] | None = None,
) -> dict[str, Any]:
    """``count`` no-op runs submitted in batches of 1,000: runs/s from the first created to
    the last ended, and how long the history then took to hold them all. With
    ``stack_pid`` (the process the stack's servers run under), also the CPU µs per run each
    kind of process spent from the first submit until the last run ended; and
    ``with_history``, until the stack was quiet again (``settle``): what the history written
    behind after the last run ended cost too — about half of nx-27017's work per run, which
    the runs/s window leaves out. A burst with its history starts on a quiet stack, so that
    the tail of an earlier batch (throughput's warm-up) counts in neither. ``stack_pids``
    (one stack's processes, when several stand side by side): its CPU ms per run in all
    (``stack_cpu_ms_per_run``), from a quiet start until quiet again after the last run
    ended — the history included, not the reading back of the runs that follows."""
    if stack_pid and with_history:  # what an earlier batch left to write is not this one's
        settle([stack_pid])
    if stack_pids:
        settle(stack_pids)
        stack_before = stack_cpu(stack_pids)
    deadline = time.monotonic() + DEADLINE_S
    cpu_before = cpu_by_process(stack_pid) if stack_pid else {}
    start = time.monotonic()
    batches = []
    for first in range(0, count, 1000):
        n = min(1000, count - first)
        batches.append(client.submit_many([{"i": first + i} for i in range(n)], task="noop"))
    submitted = time.monotonic()
    all_ids = [r for _, run_ids in batches for r in run_ids]
    client.wait(all_ids[-1], timeout=DEADLINE_S)  # ids sort by creation: queues are FIFO
    last_done = time.monotonic()
    cpu_after = cpu_by_process(stack_pid) if stack_pid else {}
    settled: dict[str, float] = {}
    if stack_pid and with_history:
        settle([stack_pid])
        settled = cpu_by_process(stack_pid)
    stack_ms = 0.0
    if stack_pids:
        settle(stack_pids)  # its tail of spans and history is its own cost
        stack_ms = (stack_cpu(stack_pids) - stack_before) / count * 1000
    # The history is written behind: how long MongoDB takes to hold every run of the burst
    # as finished (asked before the runs are read back one by one, which takes seconds).
    while time.monotonic() < deadline:
        listed = sum(
            1
            for batch_id, _ in batches
            for run in client.list_runs(batch_id=batch_id, page_size=1000)
            if run.finished
        )
        if listed >= count:
            break
        time.sleep(0.5)
    history_seconds = time.monotonic() - last_done
    done = wait_all(client, batches, deadline)
    ok = sum(r.state == "COMPLETED" for r in done.values())
    end = max(r.ended_at.timestamp() for r in done.values())
    first_created = min(r.created_at.timestamp() for r in done.values())
    found: dict[str, Any] = {
        "runs": count,
        "completed": ok,
        "submit_seconds": round(submitted - start, 3),
        "runs_per_second": round(count / (end - first_created), 1),
        "target_runs_per_second": 1250,
        "history_written_seconds_after_last_done": round(history_seconds, 1),
    }
    if cpu_after:
        found["cpu_us_per_run"] = _per_run(cpu_before, cpu_after, count)
    if settled:
        found["cpu_us_per_run_with_history"] = _per_run(cpu_before, settled, count)
    if stack_pids:
        found["stack_cpu_ms_per_run"] = round(stack_ms, 3)
    return found


def _per_run(before: dict[str, float], after: dict[str, float], runs: int) -> dict[str, float]:
    """CPU µs per run of each kind of process between two ``cpu_by_process`` readings."""
    return {
        name: round((spent - before.get(name, 0.0)) / runs * 1e6, 1)
        for name, spent in after.items()
    }


# The traced stacks' span export delay (the SDK's default is 5 s): spans left queued after a
# burst (fewer than an export batch) are sent within this, so that ``settle`` sees them out.
TRACE_FLUSH_MS = 500


def settle(pids: list[int], quiet_cpu: float = 0.1, window: float = 0.2) -> None:
    """Wait, up to 15 s, until the processes ``pids`` have finished what a burst left them
    (spans still to export, history still to write): one export delay at least, then until
    they use under ``quiet_cpu`` of a core over ``window`` seconds. Without it, a stack's
    tail ran into the next stack's burst: that burst paid for it, and the CPU figure of the
    stack that left it did not count it."""
    deadline = time.monotonic() + 15
    time.sleep(TRACE_FLUSH_MS / 1000 + 0.1)
    last = stack_cpu(pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = stack_cpu(pids)
        if now - last < quiet_cpu * window:
            return
        last = now
