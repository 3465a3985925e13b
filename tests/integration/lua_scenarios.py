"""What the tests of the scheduler's Lua scripts share (``test_lua_*.py``): steps and
runs as the scheduler queues them, on a real valkey-server (database 1 of the session's
stack); the ``on_valkey`` fixture is in ``conftest.py``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from services.scheduler.queue_records import QueuedStep, Submission
from services.scheduler.run_queue import RunQueue

Scenario = Callable[[RunQueue], Awaitable[Any]]


def step(
    step_id: str,
    deps: list[str] = (),
    dependents: list[str] = (),
    queue: str = "q",  # type: ignore[assignment]
    max_retries: int = 0,
) -> QueuedStep:
    return QueuedStep(
        step_id,
        list(deps),
        list(dependents),
        {
            "task_id": step_id,
            "task_version": "1.0.0",
            "digest": "d" * 64,
            "entry_point": "task.Task",
            "queue": queue,
            "timeout": "10",
            "max_retries": str(max_retries),
            "input_id": f"input_{step_id}",
            "output_id": f"output_{step_id}",
            "mapping": "{}",
            "reads": json.dumps(list(deps)),
        },
    )


async def submit(
    q: RunQueue,
    run_id: str,
    steps: list[QueuedStep],
    priority: int = 5,
    also: dict[str, str] | None = None,
    done: dict[str, str] | None = None,
) -> None:
    """Create the run (``done``: rebuild it, those steps' outputs already there)."""
    fields = {
        "run_id": run_id,
        "input_json": json.dumps({"run": run_id}),
        "priority": str(priority),
        "sinks": json.dumps([steps[-1].step_id]),
        **(also or {}),
    }
    [(created, _)] = await q.submit_many([Submission(run_id, fields, steps, done=done or {})])
    assert created


def limited_step(
    step_id: str, interval_ms: float, key: str = "default/api_call", burst: int = 1
) -> QueuedStep:
    """A step of a task with a rate limit (task.json rate_limit: one start every interval;
    rate_burst: up to that many at once)."""
    s = step(step_id)
    fields = {**s.fields, "rate": repr(interval_ms), "rate_key": key}
    if burst > 1:
        fields["rate_burst"] = str(burst)
    return QueuedStep(s.step_id, s.deps, s.dependents, fields)
