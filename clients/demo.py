"""``make demo``: the main job on the local stack, from nothing to a printed result."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from clients import render
from clients.sdk import Client
from services.localstack import Cluster

EXAMPLES = Path(__file__).resolve().parents[1] / "tasks" / "examples"
DEMO_INPUT = {"text": "The new release is really fast and I love it, but the docs are not great."}


def run_demo(root: Path) -> int:
    console = render.console
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop everything on kill, too
    t0 = time.monotonic()
    console.print(
        "[bold]Starting[/] valkey, SeaweedFS S3, nx-27017, registry, scheduler, executor…"
    )
    with Cluster(root, executors=1, slots=2, fresh=True) as cluster:
        console.print(
            f"  up in {time.monotonic() - t0:.1f}s · registry {cluster.registry_address}"
            f" · scheduler {cluster.scheduler_address} · logs {root}/logs"
        )
        with Client(cluster.registry_address, cluster.scheduler_address) as client:
            for task_dir in sorted(p for p in EXAMPLES.iterdir() if (p / "task.json").exists()):
                t = client.register_task(task_dir)
                console.print(f"  registered {t.task_id}@{t.version} sha256:{t.digest[:12]}")
            console.print(f"\n[bold]Running[/] text_sentiment on {DEMO_INPUT}")
            run = client.submit(task="text_sentiment", input=DEMO_INPUT)
            for event in client.watch(run.run_id, timeout=120):
                console.print(render.event_line(event))
            result = client.get_run(run.run_id)
            console.print()
            console.print(render.run_summary(result))
    console.print("\nStopped everything.")
    return 0 if result.state == "COMPLETED" else 1
