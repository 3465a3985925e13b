"""The tracing figure of ``python -m bench.run``: what tracing costs, three stacks side by
side (off, every run traced, a tenth traced), as ratios measured in one invocation."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from typing import Any

from bench.stack import (
    BENCH_TASKS,
    EXECUTORS,
    SLOTS,
    TRACE_FLUSH_MS,
    WARM_RUNS,
    burst,
    warm_slots,
)
from clients.sdk import Client
from services.localstack import Cluster
from services.localstack.otlp_receiver import Receiver
from services.localstack.processes import free_port

TRACE_SAMPLE = 0.1  # the tracing figure's sampled configuration (deploy/ sets the same)


TRACE_ROUNDS = 6


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
