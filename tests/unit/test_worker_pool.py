"""Warm workers: reused per task version across slots, least recently used retired first."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from services.executor.sandbox import Sandbox
from services.executor.worker_disk import usage
from services.executor.worker_pool import WorkerPool
from tests.conftest import ROOT

ECHO = ROOT / "tests" / "fixtures" / "tasks" / "echo"
WORDS = ROOT / "tests" / "fixtures" / "tasks" / "word_count"
SLEEPER = ROOT / "tests" / "fixtures" / "tasks" / "sleeper"


async def run_on(
    pool: WorkerPool, package: Path, doc: dict[str, object], timeout: float = 20
) -> str:
    worker = await pool.acquire(package, "task.Task")
    try:
        outcome = await worker.run(json.dumps(doc), {}, timeout, lambda f, m: None, asyncio.Event())
    finally:
        pool.release(worker)
    return outcome.outcome


def test_a_worker_is_reused_for_the_same_task_version() -> None:
    async def scenario() -> tuple[int, list[str]]:
        pool = WorkerPool(capacity=2, sandbox=Sandbox(Path(tempfile.mkdtemp())))
        try:
            outcomes = [await run_on(pool, ECHO, {"i": i}) for i in range(3)]
            return pool.started, outcomes
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == (1, ["SUCCEEDED"] * 3)


def test_a_full_pool_retires_the_least_recently_used_idle_worker() -> None:
    async def scenario() -> tuple[int, int]:
        pool = WorkerPool(capacity=2, sandbox=Sandbox(Path(tempfile.mkdtemp())))
        try:
            await run_on(pool, ECHO, {})
            await run_on(pool, WORDS, {"text": "a b"})
            await run_on(pool, ECHO, {})  # echo is now the most recently used
            await run_on(pool, SLEEPER, {"seconds": 0})  # evicts word_count, not echo
            before = pool.started
            await run_on(pool, ECHO, {})
            return before, pool.started
        finally:
            await pool.close()

    before, after = asyncio.run(scenario())
    assert (before, after) == (3, 3)  # echo was still warm


def test_a_timed_out_worker_is_killed_and_not_reused() -> None:
    async def scenario() -> tuple[str, str, int]:
        pool = WorkerPool(capacity=2, sandbox=Sandbox(Path(tempfile.mkdtemp())))
        try:
            slow = await run_on(pool, SLEEPER, {"seconds": 5}, timeout=1.5)
            fast = await run_on(pool, SLEEPER, {"seconds": 0})
            return slow, fast, pool.started
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == ("TIMED_OUT", "SUCCEEDED", 2)


def test_an_idle_worker_holding_more_files_than_the_pool_allows_is_killed_by_the_sweep() -> None:
    async def scenario() -> tuple[int, int, int, int]:
        pool = WorkerPool(capacity=2, sandbox=Sandbox(Path(tempfile.mkdtemp())), max_files=50)
        try:
            await run_on(pool, ECHO, {})
            [worker] = pool._idle.values()
            # What a worker's directory holds of its own (its /tmp and the like, and what is
            # bound back beneath them) depends on where the checkout is: well under 50.
            baseline = usage(worker.confinement.workdir).files
            await pool.sweep()  # within the count: kept
            kept = pool.size
            for i in range(50):  # as a thread the task left running might
                (Path(worker.confinement.workdir) / f"f{i}").write_text("x")
            await pool.sweep()
            after = pool.size
            await run_on(pool, ECHO, {})
            return baseline, kept, after, pool.started
        finally:
            await pool.close()

    baseline, *rest = asyncio.run(scenario())
    assert baseline < 50 and rest == [1, 0, 2]
