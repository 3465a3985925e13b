"""Two versions of the code side by side in one run: ``python -m bench.ab BASE [HEAD]``.

    python -m bench.ab HEAD~1                 # the last commit against the working tree
    python -m bench.ab 0199053 c8e4e4e        # two commits
    python -m bench.ab HEAD~1 --blocks 8 --bursts 8
    python -m bench.ab HEAD HEAD --head-python /other/venv/bin/python   # two interpreters

A change to the hot path is judged against the code before it, on this machine, in the same
minutes: timings here move by up to 2x from day to day, and by 5-10% within an hour. BASE
and HEAD are git revisions, each checked out into a temporary worktree (HEAD left out: the
working tree as it is, uncommitted changes included); each gets the bench's stack of its own
(``bench/ab_stack.py``, run from that checkout; the same Python and packages for both,
unless ``--base-python`` or ``--head-python`` names another venv's interpreter: then that
side's services run on it, with that venv's packages and servers).

Measured, the two stacks taking turns (which goes first alternates):
  sequential  blocks of no-op runs, each submitted and waited for (``Client.run``); per
              block, HEAD's p50 over BASE's: the median over blocks. And each version's
              p50, p95, p99 over all its runs.
  bulk        bursts of no-op runs (SubmitRuns, as ``bench.run``'s throughput): runs/s,
              HEAD's over BASE's, the median over bursts; and the CPU per run of all the
              stack's processes over each burst (first submit to last run ended), HEAD's
              over BASE's, with each kind of process's µs per run. The bursts are bound by
              the two cores, so runs/s moves by less than a change's share of the CPU, and
              by less than the bursts' spread: an executor change that took 12-14% of its
              CPU per run (2026-12-05) moved runs/s 1.006 here.

In two sittings: both stacks started BASE first, then both HEAD first. On this machine the
stack started first ran sequential runs 5-10% faster (one commit against itself, one
sitting: 1.04-1.10), so one sitting's ratio carries that bias; the figure of record is the
geometric mean of the two sittings' ratios, which cancels it. Below 1 HEAD is faster in
sequential runs and spends less CPU per run; above 1 HEAD has more bulk throughput. Every
load is bounded; the stacks and worktrees are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.figures import ms, pct
from bench.stack import burst
from clients.sdk import Client

ROOT = Path(__file__).resolve().parents[1]
STACK = Path(__file__).with_name("ab_stack.py")
SIDES = ("base", "head")
START_S = 180  # a stack's start, warm-up included


@contextlib.contextmanager
def checkout(revision: str | None, under: Path, name: str) -> Iterator[Path]:
    """A worktree of ``revision`` (None: the working tree itself), removed afterwards."""
    if revision is None:
        yield ROOT
        return
    path = under / name
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(path), revision],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False
        )


@contextlib.contextmanager
def stack(tree: Path, python: str = sys.executable) -> Iterator[tuple[Client, int]]:
    """The bench's stack of the code in ``tree``, its services run by ``python``: a client of
    it, and the PID its servers run under; stopped afterwards (the stack server stops its
    stack, by PID, when its standard input closes)."""
    proc = subprocess.Popen(
        [python, str(STACK)],
        cwd=tree,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the stack of {tree} did not start (exit {proc.wait(START_S)})")
        with Client(**json.loads(line)) as client:  # the stack server's keys are its arguments
            yield client, proc.pid
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(30)


def sequential(client: Client, runs: int) -> list[float]:
    """Seconds of each of ``runs`` no-op runs, one at a time."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.run(task="noop", timeout=30)
        times.append(time.perf_counter() - t0)
    return times


def sitting(
    stacks: dict[str, tuple[Client, int]], first: str, ns: argparse.Namespace
) -> dict[str, Any]:
    """One sitting's figures, the stacks taking turns, ``first`` leading the first turn."""
    order = [first, *(s for s in SIDES if s != first)]
    block_p50: dict[str, list[float]] = {s: [] for s in SIDES}
    every: dict[str, list[float]] = {s: [] for s in SIDES}
    for block in range(ns.blocks):
        for side in order if block % 2 == 0 else order[::-1]:
            times = sequential(stacks[side][0], ns.runs)
            block_p50[side].append(pct(times, 50))
            every[side] += times
    rates: dict[str, list[float]] = {s: [] for s in SIDES}
    cpu: dict[str, list[dict[str, float]]] = {s: [] for s in SIDES}
    for n in range(ns.bursts):
        for side in order if n % 2 == 0 else order[::-1]:
            client, pid = stacks[side]
            found = burst(client, ns.burst_runs, stack_pid=pid)
            rates[side].append(found["runs_per_second"])
            cpu[side].append(found["cpu_us_per_run"])
    return summarize(block_p50, every, rates, started_first=first, cpu=cpu)


def summarize(
    block_p50: dict[str, list[float]],
    every: dict[str, list[float]],
    rates: dict[str, list[float]],
    started_first: str,
    cpu: dict[str, list[dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """A sitting's ratios (HEAD over BASE; median over blocks and over bursts) and each
    side's own figures. ``cpu``: per burst, the µs of CPU per run each kind of process
    spent (``burst``'s ``cpu_us_per_run``); a burst's ratio of all of it is finer than its
    runs/s, which a few percent of the CPU moves by less than the bursts' spread."""
    found: dict[str, Any] = {"started_first": started_first}
    if block_p50["base"]:  # each block's ratio too: the spread is the noise
        blocks = _ratios(block_p50["head"], block_p50["base"])
        found["sequential_p50_ratio"] = round(statistics.median(blocks), 3)
        found["sequential_block_ratios"] = [round(r, 3) for r in blocks]
    if rates["base"]:
        bursts = _ratios(rates["head"], rates["base"])
        found["bulk_runs_per_second_ratio"] = round(statistics.median(bursts), 3)
        found["bulk_burst_ratios"] = [round(r, 3) for r in bursts]
    if cpu and cpu["base"]:
        totals = {s: [sum(b.values()) for b in cpu[s]] for s in SIDES}
        found["bulk_cpu_per_run_ratio"] = round(
            statistics.median(_ratios(totals["head"], totals["base"])), 3
        )
    for side in SIDES:
        mine: dict[str, Any] = {}
        if every[side]:
            mine |= {f"p{q}_ms": ms(pct(every[side], q)) for q in (50, 95, 99)}
            mine["block_p50_ms"] = [ms(t) for t in block_p50[side]]
        if rates[side]:
            mine["bulk_runs_per_second"] = rates[side]
        if cpu and cpu[side]:
            names = sorted({name for b in cpu[side] for name in b})
            mine["bulk_cpu_us_per_run"] = {
                name: round(statistics.median(b.get(name, 0.0) for b in cpu[side]), 1)
                for name in names
            }
        found[side] = mine
    return found


def _ratios(head: list[float], base: list[float]) -> list[float]:
    return [h / b for h, b in zip(head, base, strict=True)]


def combine(sittings: list[dict[str, Any]]) -> dict[str, float]:
    """Each ratio's geometric mean over the sittings (one each way round, so the bias of
    the stack started first cancels)."""
    combined = {}
    for key in ("sequential_p50_ratio", "bulk_runs_per_second_ratio", "bulk_cpu_per_run_ratio"):
        values = [s[key] for s in sittings if key in s]
        if values:
            combined[key] = round(math.exp(statistics.fmean(math.log(v) for v in values)), 3)
    return combined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the git revision to compare against")
    parser.add_argument("head", nargs="?", help="a git revision (default: the working tree)")
    parser.add_argument("--blocks", type=int, default=6, help="sequential blocks per side")
    parser.add_argument("--runs", type=int, default=200, help="no-op runs per block")
    parser.add_argument("--bursts", type=int, default=6, help="bulk bursts per side")
    parser.add_argument("--burst-runs", type=int, default=3000, help="no-op runs per burst")
    parser.add_argument(
        "--sittings", type=int, choices=(1, 2), default=2, help="2: both start orders"
    )
    for side in SIDES:  # one revision on two interpreters: BASE and HEAD the same
        parser.add_argument(
            f"--{side}-python",
            default=sys.executable,
            help=f"the Python that runs {side.upper()}'s services (its venv has this "
            "project's packages; default: this one's)",
        )
    ns = parser.parse_args(argv)
    for name, low, high in (("blocks", 1, 50), ("runs", 1, 5000), ("bursts", 0, 50)):
        if not low <= getattr(ns, name) <= high:  # every load bounded
            parser.error(f"--{name}: from {low} to {high}")
    if not 1 <= ns.burst_runs <= 20000:
        parser.error("--burst-runs: from 1 to 20000")
    report: dict[str, Any] = {"base": ns.base, "head": ns.head or "working tree", "sittings": []}
    for side in SIDES:
        python = getattr(ns, f"{side}_python")
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            parser.error(f"--{side}-python: {python} is not an executable file")
        if python != sys.executable:
            report[f"{side}_python"] = python
    with tempfile.TemporaryDirectory(prefix="wtm-ab-trees-") as tmp:
        trees = {"base": ns.base, "head": ns.head}
        with contextlib.ExitStack() as done:
            paths = {s: done.enter_context(checkout(trees[s], Path(tmp), s)) for s in SIDES}
            for first in SIDES[: ns.sittings]:
                with contextlib.ExitStack() as stacks:
                    order = [first, *(s for s in SIDES if s != first)]
                    sides = {
                        s: stacks.enter_context(stack(paths[s], getattr(ns, f"{s}_python")))
                        for s in order
                    }
                    found = sitting(sides, first, ns)
                report["sittings"].append(found)
                print(json.dumps(found), file=sys.stderr)
    report["ratios"] = combine(report["sittings"])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
