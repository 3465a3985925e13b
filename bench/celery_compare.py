"""``python -m bench.run --compare celery``: the bench's workloads run on Celery in the same
invocation, on the same valkey, so each of our figures can be read as a ratio to Celery's
(issue 18: ratios in one run are the figures of record; absolute ones vary 2x by the day).

Workloads, as ``bench/run.py`` runs them on our stack:
  (a) throughput  N no-op tasks submitted at once (a group): tasks/s from the first submit
                  to the last result stored (the worker's ``date_done``)
  (b) latency     sequential no-ops, submit and wait for the result (``.get()``): p50/p95/p99
                  of 1,000 runs a pool (the p99 is the tenth slowest: of 300, until session
                  48, it was the third, and moved by +-15% from round to round)
  (c) dag         a 50 ms task, then two 100 ms tasks in parallel (a chain into a group),
                  one at a time: p50 wall minus the ideal 150 ms
  (d) dag_burst   200 such DAGs at once on 8 worker slots: total time, per-DAG p50

Celery runs with each pool (prefork with 2 and 8 processes, threads with 8); the best of
them is what we are compared with. The workers are started and stopped here, by PID (each
in a session of its own, so a prefork worker's children stop with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.figures import ms, pct, reaches, target_table

ROOT = Path(__file__).resolve().parents[1]
POOLS = (("prefork", 2), ("prefork", 8), ("threads", 8))
DEADLINE_S = 600


@contextlib.contextmanager
def worker(url: str, pool: str, concurrency: int, log_dir: Path) -> Iterator[Any]:
    """A Celery worker with ``pool``, ready (it has answered a task) until the block ends."""
    os.environ["WTM_BENCH_CELERY_URL"] = url
    from bench import celery_app

    log_path = log_dir / f"celery-{pool}-{concurrency}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
             "--pool", pool, "--concurrency", str(concurrency), "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
            cwd=ROOT,
            env={**os.environ, "WTM_BENCH_CELERY_URL": url},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        celery_app.app.control.purge()
        celery_app.noop.apply_async().get(timeout=60)
        yield celery_app
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _done_at(meta: dict[str, Any]) -> float:
    done = meta["date_done"]
    return (done if isinstance(done, datetime) else datetime.fromisoformat(done)).timestamp()


def throughput(app: Any, count: int) -> dict[str, Any]:
    from celery import group

    start = time.time()
    result = group(app.noop.s() for _ in range(count)).apply_async()
    submitted = time.time()
    ids = [r.id for r in result.results]
    ends = [
        _done_at(meta)
        for _, meta in app.app.backend.get_many(ids, timeout=DEADLINE_S, interval=0.01)
    ]
    return {
        "runs": count,
        "submit_seconds": round(submitted - start, 3),
        "runs_per_second": round(count / (max(ends) - start), 1),
    }


BLOCKS = 10  # the latency workload's alternating blocks, when ours is measured alongside


def _timed(call: Callable[[], Any], count: int) -> list[float]:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def _latency_figures(times: list[float]) -> dict[str, Any]:
    return {
        "runs": len(times),
        "p50_ms": ms(pct(times, 50)),
        "p95_ms": ms(pct(times, 95)),
        "p99_ms": ms(pct(times, 99)),
    }


def latency(
    app: Any,
    count: int,
    ours: Callable[[], Any] | None = None,
    parts: Mapping[str, Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """Sequential round trips. With ``ours`` (one of our sequential runs), both systems are
    measured in BLOCKS blocks taking turns, the order rotated every block, and our figures
    taken alongside go in ``ours_alongside``: the machine's speed drifts within minutes, and
    a ratio of two figures measured minutes apart moves with it. ``parts`` (``PARTS``: runs
    of ``bench.skeleton``, this design's hops with no logic) take their turns as well, each
    in ``<name>_alongside``."""
    from bench.skeleton import alternate

    def theirs() -> Any:
        return app.noop.apply_async().get(timeout=30)

    for _ in range(10):  # warm the result consumer and the pool
        theirs()
    if ours is None:
        return _latency_figures(_timed(theirs, count))
    systems = {"ours": ours, "theirs": theirs, **(parts or {})}
    times = alternate(systems, count, BLOCKS)
    found = {**_latency_figures(times["theirs"]), "ours_alongside": _latency_figures(times["ours"])}
    for name in parts or {}:
        found[f"{name}_alongside"] = _latency_figures(times[name])
    return found


def _dag(app: Any) -> Any:
    from celery import chain, group

    return chain(app.sleep_ms.si(50), group(app.sleep_ms.si(100), app.sleep_ms.si(100)))


def dag(app: Any, count: int) -> dict[str, Any]:
    walls = []
    for _ in range(count):
        t0 = time.perf_counter()
        _dag(app).apply_async().get(timeout=30, interval=0.005)
        walls.append(time.perf_counter() - t0)
    return {
        "runs": count,
        "p50_wall_ms": ms(pct(walls, 50)),
        "p50_overhead_ms": ms(pct(walls, 50) - 0.150),
    }


def dag_burst(app: Any, count: int) -> dict[str, Any]:
    for r in [_dag(app).apply_async() for _ in range(8)]:  # warm every slot, as ours
        r.get(timeout=60)
    start = time.time()
    submitted = [(time.time(), _dag(app).apply_async()) for _ in range(count)]
    deadline = time.monotonic() + DEADLINE_S
    walls, ends = [], []
    for at, result in submitted:
        result.get(timeout=max(deadline - time.monotonic(), 1), interval=0.005)
        # The DAG ended when the last of its group's two tasks did.
        end = max(_done_at(r._get_task_meta()) for r in result.results)
        walls.append(end - at)
        ends.append(end)
    return {
        "dags": count,
        "slots": 8,
        "total_seconds": round(max(ends) - start, 3),
        "per_dag_p50_seconds": round(pct(walls, 50), 3),
    }


WORKLOADS = {
    "throughput": (throughput, 5000),
    "latency": (latency, 1000),
    "dag": (dag, 20),
    "dag_burst": (dag_burst, 200),
}


def measure(
    url: str,
    scale: float,
    log_dir: Path,
    ours: Callable[[], Any] | None = None,
    parts: Mapping[str, Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """Every workload on every pool: {pool: {workload: figures}}. ``ours`` (one of our
    sequential runs), and ``parts`` (``bench.skeleton``'s, by ``PARTS`` name), are measured
    alongside each pool's latency (``latency``)."""
    found: dict[str, Any] = {}
    for pool, concurrency in POOLS:
        with worker(url, pool, concurrency, log_dir) as app:
            found[f"{pool}x{concurrency}"] = {
                name: latency(app, max(1, int(count * scale)), ours, parts)
                if name == "latency"
                else fn(app, max(1, int(count * scale)))
                for name, (fn, count) in WORKLOADS.items()
            }
        print(f"celery {pool}x{concurrency}: {found[f'{pool}x{concurrency}']}", file=sys.stderr)
    return found


# bench.skeleton's runs measured beside the latency workload, and how the ratio table says
# them: the design's hops with no logic, and the same with each run's MongoDB insert.
PARTS = {"parts": "the parts alone:", "parts_recorded": "with the run's insert:"}
# (our figure's path, whether higher is better) per compared figure
COMPARED = {
    "throughput runs/s": (("throughput", "runs_per_second"), True),
    "latency p50 ms": (("latency", "p50_ms"), False),
    "latency p99 ms": (("latency", "p99_ms"), False),
    "dag overhead p50 ms": (("dag", "p50_overhead_ms"), False),
    "dag_burst total s": (("dag_burst", "total_seconds"), False),
    "dag_burst per-DAG p50 s": (("dag_burst", "per_dag_p50_seconds"), False),
}
# Issue 18's ratios: what each figure must reach, and what it aims for (None: no aim given).
TARGETS: dict[str, tuple[float, float | None]] = {
    "throughput runs/s": (1.5, 2.0),
    "latency p50 ms": (1.25, 1.0),
    "latency p99 ms": (1.5, 1.0),
    "dag overhead p50 ms": (1.0, 0.5),
    "dag_burst total s": (1.0, None),
    "dag_burst per-DAG p50 s": (0.6, None),
}


def ratios(ours: dict[str, Any], celery: dict[str, Any]) -> dict[str, Any]:
    """Each figure: ours, Celery's best pool's, ours / theirs (throughput: above 1 is
    better; times: below 1 is better), and whether the ratio reaches issue 18's target."""
    table = {}
    for name, ((workload, key), higher_better) in COMPARED.items():
        if workload not in ours:
            continue
        theirs = {pool: figures[workload][key] for pool, figures in celery.items()}
        best_pool = (max if higher_better else min)(theirs, key=lambda p: theirs[p])
        # Ours as measured alongside that pool, where it was (the latency workload's blocks)
        alongside = celery[best_pool][workload].get("ours_alongside")
        mine = (alongside or ours[workload])[key]
        best = theirs[best_pool]
        ratio = round(mine / best, 3) if best else None
        must, aim = TARGETS[name]
        table[name] = {
            "ours": mine,
            "celery_best": best,
            "celery_best_pool": best_pool,
            "ratio": ratio,
            "better_is": "higher" if higher_better else "lower",
            "must_reach": must,
            "aim": aim,
            "reached": None if ratio is None else reaches(ratio, must, higher_better),
            "measured_alongside": alongside is not None,
            "celery_all": theirs,
        }
        for part in PARTS:  # this design's hops with no logic, beside the same pool
            alone = celery[best_pool][workload].get(f"{part}_alongside")
            if alone and best:
                table[name][f"{part}_ratio"] = round(alone[key] / best, 3)
    return table


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds' ratio tables (``ratios``) as one: each figure's median ratio over the rounds,
    every round's ratio beside it, and whether the median reaches the target. A median of
    rounds that alternate which system goes first is what the figure of record is: one
    round's ratio moves with the machine's state between its two halves."""
    table = {}
    for name in rounds[0] if rounds else {}:
        each = [r[name] for r in rounds if name in r and r[name]["ratio"] is not None]
        if not each:
            continue
        first = each[0]
        ratio = round(statistics.median(e["ratio"] for e in each), 3)
        higher_better = first["better_is"] == "higher"
        table[name] = {
            "ours": statistics.median(e["ours"] for e in each),
            "celery_best": statistics.median(e["celery_best"] for e in each),
            "ratio": ratio,
            "round_ratios": [e["ratio"] for e in each],
            "better_is": first["better_is"],
            "must_reach": first["must_reach"],
            "aim": first["aim"],
            "reached": reaches(ratio, first["must_reach"], higher_better),
        }
        for part in PARTS:
            alone = [e[f"{part}_ratio"] for e in each if f"{part}_ratio" in e]
            if alone:
                table[name][f"{part}_ratio"] = round(statistics.median(alone), 3)
    return table


def summary(table: dict[str, Any]) -> str:
    """The ratio table as lines a person reads at the end of the run: each figure, ours over
    Celery's best, its ratio (each round's too, when there were several) and the target."""
    rows = []
    for name, row in table.items():
        rounds = row.get("round_ratios")
        each = f"  (rounds {', '.join(f'{r:g}' for r in rounds)})" if rounds else ""
        floors = [
            f"{said} {row[f'{p}_ratio']:g}" for p, said in PARTS.items() if f"{p}_ratio" in row
        ]
        if floors:  # bench.skeleton's: the design's hops with no logic
            each += f"  [{'; '.join(floors)}]"
        figures = f"{row['ours']:g} / {row['celery_best']:g} = {row['ratio']:g}"
        rows.append((name, figures, row, each))
    return target_table(rows, "ours / Celery best = ratio")
