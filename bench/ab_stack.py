"""One side of ``python -m bench.ab``: the bench's stack (eight slots on one executor, or
shared among ``WTM_BENCH_EXECUTORS``, as ``bench.run``'s; the no-op task registered, a worker
warm on every slot) of the checkout this process runs in — its working directory, whose code
comes first on ``sys.path`` — up until its standard input closes. It prints one line of
JSON: the stack's addresses, its admin key and its CA, as ``Client``'s keyword arguments.

Run by path from the newer checkout, so it needs only what the older one has too:
``Cluster``, ``Client`` and ``bench.run``'s ``BENCH_TASKS`` and ``warm_slots``. The stack's
shape is this file's, not the checkout's ``bench.run``'s (which gave two executors of four
slots until session 43): both sides of a comparison get the same."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

sys.path[0] = os.getcwd()  # the checkout's code, not this file's directory's


def main() -> None:
    import bench.run as bench
    from clients.sdk import Client
    from services.localstack import Cluster

    executors = int(os.environ.get("WTM_BENCH_EXECUTORS", "1"))  # as bench.run's
    if executors not in (1, 2, 4, 8):
        raise SystemExit(f"WTM_BENCH_EXECUTORS={executors}: 1, 2, 4 or 8 (they share 8 slots)")
    slots = 8 // executors
    env = {"WTM_PREFETCH": str(4 * slots)}  # Celery's default prefetch: four a slot
    with (
        tempfile.TemporaryDirectory(prefix="wtm-ab-") as tmp,
        Cluster(tmp, executors=executors, slots=slots, env=env) as cluster,
    ):
        address: dict[str, Any] = {
            "registry": cluster.registry_address,
            "scheduler": cluster.scheduler_address,
            "api_key": cluster.admin_key,
            "tls_ca": str(cluster.ca_file),
        }
        with Client(**address) as client:  # the keys are Client's arguments
            client.register_task(bench.BENCH_TASKS / "noop")
            bench.warm_slots(client)
        print(json.dumps(address), flush=True)
        sys.stdin.read()  # until bench.ab closes it


if __name__ == "__main__":
    main()
