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

Where each figure is measured: here (throughput, latency, executor_start, dag, dag_burst),
``bench.face``, ``bench.batching``, ``bench.tracing``, ``bench.cpu``, ``bench.floors``; the
stack, its bursts and waits are ``bench.stack``; ``--compare celery`` is
``bench.celery_compare`` (and ``bench.skeleton`` for the parts alone).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import celery_compare, targets
from bench.batching import batching
from bench.cpu import cpu
from bench.face import FACE_SERIAL, face, face_cache
from bench.figures import ms, pct
from bench.floors import floors
from bench.skeleton import skeleton
from bench.stack import (
    BENCH_TASKS,
    DEADLINE_S,
    EXECUTORS,
    PREFETCH_PER_SLOT,
    ROOT,
    SLOTS,
    bench_stack,
    burst,
    wait_all,
    warm_slots,
)
from bench.tracing import tracing
from clients.sdk import Client
from services.localstack import Cluster
from services.localstack.otlp_receiver import Receiver

# bench/ab_stack.py reads BENCH_TASKS and warm_slots from this module, in either side's checkout.


def throughput(client: Client, count: int) -> dict[str, Any]:
    """Submit ``count`` no-op runs in batches of 1,000 (SubmitRuns), wait for all of them.
    Measured in steady state: a first batch of 1,000 starts a worker process on every slot
    first (a prefork pool's are forked before its first task, and Celery's are measured so;
    as ``dag_burst`` does). With the CPU per run of each kind of the stack's processes over
    the burst (they run under this one), so that a record shows which one a change moved, over
    the window and with the history written after it."""
    warm_slots(client)
    return burst(client, count, stack_pid=os.getpid(), with_history=True)


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


def _arguments(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The command line, checked, and the figures it chose (with --compare, Celery's too)."""
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
    return ns, chosen


def main(argv: list[str] | None = None) -> int:
    ns, chosen = _arguments(argv)
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
