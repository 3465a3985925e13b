"""Benchmarks on the local stack: ``python -m bench.run`` prints one JSON document of figures.

    python -m bench.run                       # every figure, at the issues' sizes
    python -m bench.run --only face,latency   # some of them
    python -m bench.run --scale 0.1           # smaller counts, for a quick look
    python -m bench.run --compare celery      # and the same workloads on Celery: ratios
    python -m bench.run --compare celery --rounds 3   # median ratio of 3 alternating rounds

Figures (issue 4 and issue 6 name them and the targets):
  throughput  N one-step no-op runs submitted in batches (SubmitRuns): runs/s from the first
              run accepted to the last one done
  latency     sequential one-step no-op runs: submit-and-wait in one call (and submit then
              watch to the final event), p50/p95/p99 ms;
              with the warm executor's own overhead per step (issue 5)
  executor_start  cold start of an uncached package, and executor start to ready (issue 5)
  dag         a 50 ms step, then two 100 ms steps in parallel, run one at a time:
              p50 wall time minus the ideal 150 ms
  dag_burst   200 such DAGs at once on 8 executor slots: total time, per-DAG p50
  face        face_processing_pipeline on the bundled portrait: p50 wall time, and the
              speedup of its parallel branch against the same steps run one after another;
              the same on a group photo (5 faces); each step's p50 run time
  face_cache  the same pipeline with result caching on (issue 15): p50 wall time of a
              miss (every step runs and stores its output) against a hit (none runs)
  cpu         CPU milliseconds each process (scheduler, nx-27017, executors, valkey, this
              client) spends per sequential no-op run: where a run's time goes
  batching    dynamic batching (issue 18): 1,000 runs of a batchable example submitted at
              once, against the same package registered without "batching": runs/s and
              p95, and their ratios; tasks/examples/digit_recognition (a forest) gives the
              figure, speech_activity (a recurrent network) is measured beside it ("also")
  tracing     what tracing costs (issue 18): three stacks side by side with tracing off, on
              for every run, on for a tenth of the runs; bursts of 1,500 no-op runs to each
              in turn, six rounds: each traced figure's median ratio to the off one
  floors      what the parts cost by themselves (a gRPC call, a Redis round trip, valkey's
              Lua, nx-27017's CPU for the writes every run needs), no scheduling logic

Every load is bounded in count and time; all traffic stays on 127.0.0.1. The stack is
started and stopped by this command (by PID).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from bench import celery_compare, targets
from bench.cpu import cpu, cpu_by_process, stack_cpu
from bench.figures import ms, pct
from bench.floors import floors
from bench.skeleton import skeleton
from clients.sdk import Client
from common.states import TERMINAL_STATES, State
from services.localstack import Cluster
from services.localstack.otlp_receiver import Receiver
from services.localstack.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
BENCH_TASKS = Path(__file__).resolve().parent / "tasks"
DEADLINE_S = 600
WARM_UP = 6  # face: runs before the measured ones
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


def throughput(client: Client, count: int) -> dict[str, Any]:
    """Submit ``count`` no-op runs in batches of 1,000 (SubmitRuns), wait for all of them.
    Measured in steady state: a first batch of 1,000 starts a worker process on every slot
    first (a prefork pool's are forked before its first task, and Celery's are measured so;
    as ``dag_burst`` does). With the CPU per run of each kind of the stack's processes over
    the burst (they run under this one), so that a record shows which one a change moved, over
    the window and with the history written after it."""
    warm_slots(client)
    return burst(client, count, stack_pid=os.getpid(), with_history=True)


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


TRACE_SAMPLE = 0.1  # the tracing figure's sampled configuration (deploy/ sets the same)


TRACE_ROUNDS = 6
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


def tracing(count: int, env: dict[str, str]) -> dict[str, Any]:
    """What tracing costs, as ratios measured in this one invocation. Three stacks stand side by
    side — tracing off, on for every run, on for a tenth of the runs (each run a trace of
    its own, sampled on its own) — each warmed with a worker on every slot. Then a burst of
    ``count`` no-op runs goes to each in turn, ``TRACE_ROUNDS`` times, each round starting
    with the next stack, each burst followed by a wait until its stack is quiet (``settle``;
    its CPU counts with the burst's, the reading back of the runs after it does not). This
    machine's speed drifts by up to 2x within minutes, and interleaving puts the drift on
    all three alike (one stack after another, as this figure was first taken, a tenth traced
    moved throughput by -30% to +7% in one morning). Each traced figure is the median over
    the rounds of its burst's runs/s over the off stack's in the same round; and, steadier,
    the CPU per run of every process of the stack over the same bursts, as a ratio to the
    off stack's in the same round. Metrics are on in all three (a Prometheus port, and not
    over OTLP, as deployed), so that only tracing differs. Spans go to an OTLP receiver per
    traced stack, in this process, that only counts them."""
    receivers = {"every_run": Receiver(keep=False), "sampled": Receiver(keep=False)}
    configs: dict[str, dict[str, str]] = {"off": {}}
    for label, receiver in receivers.items():
        configs[label] = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.start()}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_METRICS_EXPORTER": "none",  # as deployed: metrics go to Prometheus only
        }
    for label in receivers:  # the tail of a burst's spans goes out before the next burst
        configs[label]["OTEL_BSP_SCHEDULE_DELAY"] = str(TRACE_FLUSH_MS)
    configs["sampled"] |= {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(TRACE_SAMPLE),
    }
    rates: dict[str, list[float]] = {label: [] for label in configs}
    cpu_ms: dict[str, list[float]] = {label: [] for label in configs}  # per run, all processes
    try:
        with contextlib.ExitStack() as stacks:
            clients, pids = {}, {}
            for label, extra in configs.items():
                tmp = stacks.enter_context(tempfile.TemporaryDirectory(prefix="wtm-bench-trace-"))
                c = stacks.enter_context(
                    Cluster(
                        tmp,
                        executors=EXECUTORS,
                        slots=SLOTS,
                        env=env | extra | {"WTM_METRICS_PORT": str(free_port())},
                    )
                )
                client = stacks.enter_context(
                    Client(
                        c.registry_address,
                        c.scheduler_address,
                        api_key=c.admin_key,
                        tls_ca=str(c.ca_file),
                    )
                )
                client.register_task(BENCH_TASKS / "noop")
                client.wait(client.submit(task="noop").run_id, 60)
                warm_slots(client)
                clients[label] = client
                pids[label] = [p.pid for p in c.stack.group.children + c.services.children]
            labels = list(clients)
            for r in range(TRACE_ROUNDS):  # each round starts with the next stack
                turn = r % len(labels)
                for label in labels[turn:] + labels[:turn]:
                    found = burst(clients[label], count, stack_pids=pids[label])
                    rates[label].append(found["runs_per_second"])
                    cpu_ms[label].append(found["stack_cpu_ms_per_run"])
        # the stacks have stopped: every span is flushed
        spans = {label: r.received for label, r in receivers.items()}
    finally:
        for receiver in receivers.values():
            receiver.stop()
    runs = 1 + WARM_RUNS + TRACE_ROUNDS * count  # every run a stack ran

    def to_off(figures: dict[str, list[float]], label: str) -> float:
        """The median over the rounds of ``label``'s figure over the off stack's."""
        return statistics.median(t / o for t, o in zip(figures[label], figures["off"], strict=True))

    def cost(label: str) -> float:
        return round(1 - to_off(rates, label), 3)

    def cpu_cost(label: str) -> float:
        return round(to_off(cpu_ms, label) - 1, 3)

    return {
        "runs_per_burst": count,
        "rounds": TRACE_ROUNDS,
        "runs_per_second": rates,
        "spans_per_run": {label: round(n / runs, 2) for label, n in spans.items()},
        "cost_every_run": cost("every_run"),
        "cost_sampled": cost("sampled"),
        # The same bursts' CPU per run, over every process of each stack (the OTLP receiver
        # is this process, not counted), from a quiet stack until quiet again after the
        # burst's last run (the history and the spans' export included; until 2026-12-06 the
        # bench's reading back of every run was too, which diluted the ratio about twofold):
        # steadier than runs/s from round to round.
        "cpu_ms_per_run": {k: [round(v, 3) for v in vs] for k, vs in cpu_ms.items()},
        "cpu_cost_every_run": cpu_cost("every_run"),
        "cpu_cost_sampled": cpu_cost("sampled"),
        "sample": TRACE_SAMPLE,
        "target": "cost <= 0.15",
    }


def latency(client: Client, count: int) -> dict[str, Any]:
    """Sequential no-op runs, each submitted and waited for in one call (``Client.run``:
    the scheduler answers when the run has ended); then the same with a submit followed by
    a watch of the run's events until its final one."""
    times, run_ids = [], []
    for _ in range(count):
        t0 = time.perf_counter()
        run = client.run(task="noop", timeout=30)
        times.append(time.perf_counter() - t0)
        run_ids.append(run.run_id)
    watched = []
    for _ in range(count):
        t0 = time.perf_counter()
        submitted = client.submit(task="noop")
        for event in client.watch(submitted.run_id, timeout=30):
            if event.ends_run:
                break
        watched.append(time.perf_counter() - t0)
    steps = [(client.get_run(r).processing_summary or {})["steps"][0] for r in run_ids]
    return {
        "runs": count,
        "p50_ms": ms(pct(times, 50)),
        "p95_ms": ms(pct(times, 95)),
        "p99_ms": ms(pct(times, 99)),
        "target": "p50 <= 2 ms, p99 <= 5 ms",
        "submit_then_watch": {
            "p50_ms": ms(pct(watched, 50)),
            "p95_ms": ms(pct(watched, 95)),
            "p99_ms": ms(pct(watched, 99)),
        },
        "warm_executor_overhead": {
            "assignment_received_to_process_called_p50_ms": ms(
                pct([s["pickup_seconds"] for s in steps], 50)
            ),
            "result_sent_to_scheduler_has_it_p50_ms": ms(
                pct([s["report_seconds"] for s in steps], 50)
            ),
            "step_run_minus_process_p50_ms": ms(
                pct([s["run_seconds"] - s["process_seconds"] for s in steps], 50)
            ),
        },
    }


def executor_start(client: Client, cluster: Cluster, count: int) -> dict[str, Any]:
    """Cold start of a package no executor has, and executor start to ready."""
    colds, readies = [], []
    for i in range(count):
        with tempfile.TemporaryDirectory() as tmp:
            pkg = Path(tmp) / "cold"
            shutil.copytree(BENCH_TASKS / "noop", pkg)
            manifest = json.loads((pkg / "task.json").read_text())
            manifest.update(task_id=f"cold_{uuid.uuid4().hex[:8]}", queue=f"cold{i}")
            (pkg / "task.json").write_text(json.dumps(manifest))
            task = client.register_task(pkg)
        started = time.time()
        child = cluster.add_executor("--queues", f"cold{i}", slots=1)
        try:
            run = client.wait(client.submit(task=task.task_id).run_id, 60)
            assert run.state == "COMPLETED", run.error
            colds.append((run.processing_summary or {})["steps"][0]["pickup_seconds"])
            line = next(
                ln for ln in child.log_path.read_text().splitlines() if "connected to" in ln
            )
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            readies.append(at.astimezone().timestamp() - started)
        finally:
            cluster.executors.remove(child)
            cluster.services.children.remove(child)
            child.stop()
    return {
        "executors": count,
        "cold_start_p50_ms": ms(pct(colds, 50)),
        "cold_start_is": "assignment received -> process() called, package not cached: "
        "download, verify, extract, worker process start, import, setup()",
        "executor_start_to_ready_p50_ms": ms(pct(readies, 50)),
        "ready_is": "process spawned -> stream to the scheduler open",
    }


DAG = {
    "pipeline_id": "bench_dag",
    "steps": [
        {"step_id": "first", "task_id": "sleep_ms", "input_mapping": {"ms": 50}},
        {
            "step_id": "left",
            "task_id": "sleep_ms",
            "depends_on": ["first"],
            "parallel_group": "p",
            "input_mapping": {"ms": 100},
        },
        {
            "step_id": "right",
            "task_id": "sleep_ms",
            "depends_on": ["first"],
            "parallel_group": "p",
            "input_mapping": {"ms": 100},
        },
    ],
}


def dag(client: Client, count: int) -> dict[str, Any]:
    """The 3-step DAG run one at a time, each submitted and waited for in one call."""
    walls = []
    for _ in range(count):
        t0 = time.perf_counter()
        client.run(pipeline="bench_dag", timeout=30)
        walls.append(time.perf_counter() - t0)
    return {
        "runs": count,
        "p50_wall_ms": ms(pct(walls, 50)),
        "p50_overhead_ms": ms(pct(walls, 50) - 0.150),
        "target_overhead_ms": 8,
    }


def dag_burst(client: Client, count: int) -> dict[str, Any]:
    """``count`` DAGs submitted at once, measured in steady state: a first wave of 8 DAGs
    warms a worker process on every slot (as a prefork pool's workers are warm)."""
    warm = client.submit_many([{}] * 8, pipeline="bench_dag")
    wait_all(client, [warm], time.monotonic() + 60)
    deadline = time.monotonic() + DEADLINE_S
    start = time.monotonic()
    batch = client.submit_many([{}] * count, pipeline="bench_dag")  # all at once
    submitted = time.monotonic()
    done = wait_all(client, [batch], deadline)
    total = max(r.ended_at.timestamp() for r in done.values()) - min(
        r.created_at.timestamp() for r in done.values()
    )
    walls = [(r.ended_at - r.created_at).total_seconds() for r in done.values()]
    return {
        "dags": count,
        "slots": 8,
        "ideal_total_seconds": round(count * 0.250 / 8, 3),
        "total_seconds": round(total, 3),
        "per_dag_p50_seconds": round(pct(walls, 50), 3),
        "submit_seconds": round(submitted - start, 3),
        "target": "total <= 6.6 s, per-DAG p50 <= 4 s",
    }


FACE_SERIAL = {
    "pipeline_id": "bench_face_serial",
    "steps": [
        {
            "step_id": "face_detection",
            "task_id": "face_detection",
            "input_mapping": {"image_path": "$.image_path"},
        },
        {
            "step_id": "attributes",
            "task_id": "face_attribute",
            "depends_on": ["face_detection"],
            "input_mapping": {"image_path": "$.image_path", "faces": "$.face_detection.faces"},
        },
        {
            "step_id": "features",
            "task_id": "face_extractor",
            "depends_on": ["attributes"],
            "input_mapping": {"image_path": "$.image_path", "faces": "$.face_detection.faces"},
        },
        {
            "step_id": "merge",
            "task_id": "face_merge",
            "depends_on": ["features"],
            "input_mapping": {
                "detection": "$.face_detection",
                "attributes": "$.attributes",
                "features": "$.features",
            },
        },
    ],
}


def face(client: Client, count: int) -> dict[str, Any]:
    portrait = client.upload_artifact(ROOT / "tasks" / "data" / "astronaut.jpg")
    group = client.upload_artifact(ROOT / "tests" / "data" / "photos" / "group5.jpg")
    results: dict[str, Any] = {}
    for label, pipeline, uri in (
        ("face_processing_pipeline", "face_processing_pipeline", portrait),
        ("bench_face_serial", "bench_face_serial", portrait),
        ("group_photo_5_faces", "face_processing_pipeline", group),
    ):
        walls, speedups = [], []
        steps: dict[str, list[float]] = {}
        # Warm: six runs first, so that each executor has a worker (started, its models
        # loaded, its first call made) for every step's task; two left some cold (with two
        # executors).
        for i in range(count + WARM_UP):
            run = client.wait(
                client.submit(pipeline=pipeline, input={"image_path": uri}).run_id, 60
            )
            assert run.state == "COMPLETED", run.error
            if i >= WARM_UP:
                summary = run.processing_summary or {}
                walls.append(summary["wall_seconds"])
                speedups.append(summary["parallel_speedup"])
                for step in summary["steps"]:
                    steps.setdefault(step["step_id"], []).append(step["run_seconds"])
        results[label] = {
            "p50_wall_ms": ms(pct(walls, 50)),
            "p50_parallel_speedup": round(statistics.median(speedups), 3),
            "p50_step_ms": {name: ms(pct(times, 50)) for name, times in steps.items()},
        }
    parallel = results["face_processing_pipeline"]["p50_wall_ms"]
    serial = results["bench_face_serial"]["p50_wall_ms"]
    return {
        "runs": count,
        "parallel_p50_wall_ms": parallel,
        "serial_p50_wall_ms": serial,
        "speedup_vs_serial": round(serial / parallel, 3) if parallel else None,
        "group_photo_p50_wall_ms": results["group_photo_5_faces"]["p50_wall_ms"],
        "detail": results,
    }


def face_cache(client: Client, cluster: Cluster, count: int) -> dict[str, Any]:
    """The face pipeline with result caching on: a miss (the cache emptied first: every
    step runs and stores its output) against a hit (the same input again: no step runs)."""
    assert cluster.endpoints is not None
    admin = redis.Redis.from_url(cluster.endpoints.redis_admin_url)
    uri = client.upload_artifact(ROOT / "tasks" / "data" / "astronaut.jpg")
    misses, hits = [], []
    try:
        for i in range(count + 1):  # one warm-up pair
            pair = []
            for _ in ("miss", "hit"):
                run = client.run(
                    pipeline="face_processing_pipeline",
                    input={"image_path": uri},
                    cache=True,
                    timeout=60,
                )
                assert run.state == "COMPLETED", run.error
                pair.append(run)
            miss, hit = pair
            assert not any(s.cached_from for s in miss.steps), "the miss found a cached step"
            assert all(s.cached_from for s in hit.steps), "the hit ran a step"
            if i:
                misses.append((miss.processing_summary or {})["wall_seconds"])
                hits.append((hit.processing_summary or {})["wall_seconds"])
            for key in admin.scan_iter("wtm:cache:*", count=1000):
                admin.delete(key)
    finally:
        admin.close()
    miss_ms, hit_ms = ms(pct(misses, 50)), ms(pct(hits, 50))
    return {
        "runs": count,
        "miss_p50_wall_ms": miss_ms,
        "hit_p50_wall_ms": hit_ms,
        "hit_speedup": round(miss_ms / hit_ms, 1) if hit_ms else None,
    }


# The batchable examples (directories under tasks/examples, each with a bench.py giving its
# inputs): the first gives the figure of record, the others are measured beside it.
BATCHING_EXAMPLES = [
    ROOT / "tasks" / "examples" / name
    for name in os.environ.get("WTM_BENCH_BATCHING", "digit_recognition,speech_activity").split(",")
]


def example_bench(example: Path) -> ModuleType:
    """A batchable example's ``bench.py`` (its ``bench_inputs(upload, count)`` and whatever
    else makes its inputs), loaded by path: the examples are packages, not modules."""
    spec = importlib.util.spec_from_file_location(f"{example.name}_bench", example / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batching_inputs(client: Client, example: Path, count: int) -> list[dict[str, Any]]:
    """The inputs of a batchable example: its own bench_inputs(upload, count)."""
    return example_bench(example).bench_inputs(client.upload_artifact, count)  # type: ignore[no-any-return]


def batching(client: Client, count: int) -> dict[str, Any]:
    """Dynamic batching (issue 18): the figure of the first batchable example, with the
    others' under ``also``."""
    first, *others = (batching_example(client, example, count) for example in BATCHING_EXAMPLES)
    return {**first, "also": {figure["task"]: figure for figure in others}}


def batching_example(client: Client, example: Path, count: int) -> dict[str, Any]:
    """``count`` runs of a batchable example submitted at once, against the same runs of
    the same package registered without ``batching``: runs/s from the first run created to
    the last ended, and p95 of each run's time from created to ended."""
    manifest = json.loads((example / "task.json").read_text())
    task_id = manifest["task_id"]  # registered with the other examples
    with tempfile.TemporaryDirectory(prefix="wtm-bench-unbatched-") as tmp:
        copy = Path(tmp) / task_id
        shutil.copytree(example, copy)
        unbatched = {k: v for k, v in manifest.items() if k != "batching"}
        unbatched["task_id"] = f"{task_id}_unbatched"
        (copy / "task.json").write_text(json.dumps(unbatched))
        client.register_task(copy)
    inputs = batching_inputs(client, example, count)
    figures: dict[str, Any] = {}
    size = manifest["batching"]["max_batch_size"]
    for label, task, warm in (
        ("unbatched", f"{task_id}_unbatched", 16),
        ("batched", task_id, 8 * size),  # 8 calls at once: a warm worker on every slot
    ):
        warming = [inputs[i % len(inputs)] for i in range(warm)]  # however few the runs
        for run_id in client.submit_many(warming, task=task)[1]:
            assert client.wait(run_id, 120).state == "COMPLETED"
        batch = client.submit_many(inputs, task=task)
        done = wait_all(client, [batch], time.monotonic() + DEADLINE_S)
        failed = [r for r in done.values() if r.state != "COMPLETED"]
        assert not failed, failed[0].error
        created = min(r.created_at.timestamp() for r in done.values())
        ended = max(r.ended_at.timestamp() for r in done.values())
        waits = [(r.ended_at - r.created_at).total_seconds() for r in done.values()]
        figures[label] = {
            "runs_per_second": round(count / (ended - created), 1),
            "p50_ms": ms(pct(waits, 50)),
            "p95_ms": ms(pct(waits, 95)),
        }
    b, u = figures["batched"], figures["unbatched"]
    return {
        "task": task_id,
        "runs": count,
        "batching": manifest["batching"],
        **figures,
        "runs_per_second_ratio": round(b["runs_per_second"] / u["runs_per_second"], 2),
        "p95_ratio": round(b["p95_ms"] / u["p95_ms"], 2),
        "target": "runs/s ratio >= 3, p95 ratio <= 1.5",
    }


FIGURES: dict[str, tuple[Callable[..., dict[str, Any]], int]] = {
    "throughput": (throughput, 5000),
    "latency": (latency, 300),
    "executor_start": (executor_start, 3),
    "dag": (dag, 20),
    "dag_burst": (dag_burst, 200),
    "face": (face, 20),
    "face_cache": (face_cache, 10),
    "floors": (floors, 500),
    "cpu": (cpu, 400),
    "batching": (batching, 1000),
    "tracing": (tracing, 1500),
}


def measure(
    names: list[str], client: Client, cluster: Cluster, env: dict[str, str], scale: float
) -> dict[str, Any]:
    """Our figures ``names``, each at its count times ``scale``, on the stack ``cluster``."""
    found: dict[str, Any] = {}
    for name in names:
        fn, count = FIGURES[name]
        n = max(1, int(count * scale))
        t0 = time.monotonic()
        if name == "floors":
            found[name] = fn(cluster, n)
        elif name == "tracing":  # stacks of its own, one per configuration
            found[name] = fn(n, env)
        elif name in ("executor_start", "face_cache"):
            found[name] = fn(client, cluster, n)
        else:
            found[name] = fn(client, n)
        found[name]["bench_seconds"] = round(time.monotonic() - t0, 1)
        print(f"{name}: {json.dumps(found[name])}", file=sys.stderr)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--only", default=",".join(FIGURES), help="comma-separated figures")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run with OpenTelemetry export on (to an in-process OTLP receiver), to measure "
        "what tracing costs",
    )
    parser.add_argument(
        "--trace-sample",
        type=float,
        default=1.0,
        help="with --trace: the share of runs traced (OTEL_TRACES_SAMPLER="
        "parentbased_traceidratio; 1: every run)",
    )
    parser.add_argument(
        "--compare",
        choices=["celery"],
        help="also run the throughput, latency, dag and dag_burst workloads on Celery (same "
        "valkey, prefork and threads pools) and print each of our figures as a ratio to "
        "Celery's best",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --compare: measure both systems this many times, alternating which goes "
        "first, and report each figure's median ratio (the machine's speed drifts within "
        "minutes; one round's ratio moves with it)",
    )
    ns = parser.parse_args(argv)
    if ns.rounds < 1 or (ns.rounds > 1 and not ns.compare):
        parser.error("--rounds: a positive count, and more than 1 only with --compare")
    chosen = [f.strip() for f in ns.only.split(",") if f.strip()]
    if ns.compare:  # the compared figures, ours first
        chosen = list(dict.fromkeys([*chosen, *celery_compare.WORKLOADS]))
    unknown = set(chosen) - set(FIGURES)
    if unknown:
        parser.error(f"--only: unknown figures {sorted(unknown)}; choose from {list(FIGURES)}")
    # Short steps: each executor holds four steps per slot ahead, so a freed slot starts the
    # next at once; that is Celery's default prefetch (4 messages per worker process), which
    # the Celery workers of --compare celery have too. The scheduler's default is 0, which
    # suits long AI tasks better. 4 per slot against 1: +27% bulk runs/s (8 pairs, 2026-12-03).
    env = {"WTM_PREFETCH": os.environ.get("WTM_PREFETCH", str(PREFETCH_PER_SLOT * SLOTS))}
    # Whether this invocation's stack traces is config's "traced" ("tracing" is a figure).
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count()},
        "config": {
            "executors": EXECUTORS,
            "slots_each": SLOTS,
            "traced": ns.trace,
            "trace_sample": ns.trace_sample if ns.trace else None,
            **env,
        },
    }
    receiver = Receiver(keep=False)  # counts: turning spans into objects here is not our cost
    if ns.trace:
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.start()}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
        }
        if ns.trace_sample < 1:
            env |= {
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": str(ns.trace_sample),
            }
    with (
        bench_stack(env) as (tmp, c, client),
        contextlib.ExitStack() as stack,  # stopped first: what --compare starts beside it
    ):
        os.environ["WTM_TLS_CA"] = str(c.ca_file)  # the stack's CA, for the floors' calls
        for d in [*BENCH_TASKS.iterdir(), *(ROOT / "tasks" / "examples").iterdir()]:
            if (d / "task.json").exists():
                client.register_task(d)
        client.register_pipelines(ROOT / "tasks" / "pipelines" / "config_pipeline.json")
        client.register_pipelines(DAG)
        client.register_pipelines(FACE_SERIAL)
        client.wait(client.submit(task="noop").run_id, 60)  # warm a worker
        report.update(measure(chosen, client, c, env, ns.scale))
        if ns.compare == "celery":
            assert c.endpoints is not None
            url = c.endpoints.redis_admin_url.rsplit("/", 1)[0] + "/2"  # a database of its own
            compared = [n for n in chosen if n in celery_compare.WORKLOADS]

            def one_run() -> None:  # ours, measured alongside Celery's sequential latency
                client.run(task="noop", timeout=30)

            # This design's hops with no logic (bench.skeleton), in the same turns: what the
            # parts alone cost beside Celery, so that ours less it is what our work adds.
            skeletons = url.rsplit("/", 1)[0] + "/3"
            parts = {
                "parts": stack.enter_context(skeleton(skeletons, True, c.ca_file.parent)),
                "parts_recorded": stack.enter_context(  # and each run inserted into MongoDB
                    skeleton(skeletons, True, c.ca_file.parent, c.endpoints.mongodb_uri)
                ),
            }
            rounds = []
            for r in range(ns.rounds):
                # Round 1 reuses the figures above (ours went first); then Celery goes first
                # in every other round, so a drift of the machine's speed favours neither.
                if r == 0:
                    ours = {n: report[n] for n in compared}
                    celery = celery_compare.measure(url, ns.scale, Path(tmp), one_run, parts)
                elif r % 2:
                    celery = celery_compare.measure(url, ns.scale, Path(tmp), one_run, parts)
                    ours = measure(compared, client, c, env, ns.scale)
                else:
                    ours = measure(compared, client, c, env, ns.scale)
                    celery = celery_compare.measure(url, ns.scale, Path(tmp), one_run, parts)
                table = celery_compare.ratios(ours, celery)
                rounds.append({"ours": ours, "celery": celery, "ratios": table})
                summary = {k: v["ratio"] for k, v in table.items()}
                print(f"round {r + 1} ratios: {json.dumps(summary)}", file=sys.stderr)
            report["compare_celery"] = (
                {"ratios": rounds[0]["ratios"], "celery": rounds[0]["celery"]}
                if ns.rounds == 1
                else {
                    "ratios": celery_compare.combine([r["ratios"] for r in rounds]),
                    "rounds": rounds,
                }
            )
            shape = f"{EXECUTORS} executor(s) of {SLOTS} slots"
            print(f"ours: {shape}, WTM_PREFETCH={env['WTM_PREFETCH']}", file=sys.stderr)
            print(celery_compare.summary(report["compare_celery"]["ratios"]), file=sys.stderr)
    report["targets"] = targets.reached(report)
    if report["targets"]:
        print(targets.summary(report["targets"]), file=sys.stderr)
    receiver.stop()
    if ns.trace:
        report["spans_received"] = receiver.received
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
