"""The dynamic batching figure of ``python -m bench.run`` (issue 18): a batchable example's
runs submitted at once, against the same package registered without ``batching``."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.figures import ms, pct
from bench.stack import DEADLINE_S, ROOT, wait_all
from clients.sdk import Client

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
