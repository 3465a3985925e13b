"""Each worker's numeric libraries get a share of the CPUs (``sandbox.thread_share``), so that
workers running at once do not each start a thread per core and fight over them."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

import pytest

from services.executor.sandbox import Sandbox, scrubbed_env, thread_share
from services.executor.worker_pool import WorkerPool
from tests.conftest import ROOT

REPORT = ROOT / "tests" / "fixtures" / "tasks" / "thread_report"


def test_the_cpus_are_shared_among_the_slots() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert thread_share(slots=1) == cpus
    assert thread_share(slots=cpus * 4) == 1  # never none
    assert thread_share(slots=4, asked=3) == 3  # WTM_WORKER_THREADS


def test_the_executors_own_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    env = scrubbed_env("/tmp/w", threads=2)
    assert env["OMP_NUM_THREADS"] == "7"
    assert env["OPENBLAS_NUM_THREADS"] == env["OPENCV_FOR_THREADS_NUM"] == "2"
    assert "OPENBLAS_NUM_THREADS" not in scrubbed_env("/tmp/w")  # 0: the libraries' default


def test_a_worker_process_runs_with_its_share_and_each_steps_opencv_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)

    async def scenario() -> list[dict[str, object]]:
        sandbox = Sandbox(Path(tempfile.mkdtemp()), threads=1)
        pool = WorkerPool(capacity=1, sandbox=sandbox)
        reports = []
        try:
            worker = await pool.acquire(REPORT, "task.Task")
            for meta in ({}, {"threads": 2}, {"threads": 1}):  # the executor's per-step count
                outcome = await worker.run("{}", meta, 30, lambda f, m: None, asyncio.Event())
                assert outcome.outcome == "SUCCEEDED", outcome.error
                reports.append(dict(json.loads(outcome.output_json)))
            pool.release(worker)
            return reports
        finally:
            await pool.close()

    alone, given_two, given_one = asyncio.run(scenario())
    assert alone["env"] == {
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENCV_FOR_THREADS_NUM": "1",
    }
    assert alone["opencv"] == 1  # the library took it
    assert given_two["opencv"] == 2 and given_one["opencv"] == 1  # and a step's own count
