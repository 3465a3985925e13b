"""The Celery side of ``python -m bench.run --compare celery``: the same two tasks as
``bench/tasks`` (a no-op, and a sleep of ``ms`` milliseconds), on the local stack's valkey
as broker and result backend (``WTM_BENCH_CELERY_URL``). Started as a worker by
``bench/celery_compare.py``; a dev-only dependency (``celery[redis]`` in the dev extra)."""

from __future__ import annotations

import os
import time

from celery import Celery

URL = os.environ.get("WTM_BENCH_CELERY_URL", "redis://127.0.0.1:6379/2")

app = Celery("wtm_bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=3600,
)


@app.task(name="noop")
def noop() -> dict[str, object]:
    return {}


@app.task(name="sleep_ms")
def sleep_ms(ms: float) -> dict[str, object]:
    time.sleep(ms / 1000)
    return {"slept_ms": ms}
