"""A task's concurrency limit (task.json "concurrency_limit", Hatchet's concurrency): at most
N of its steps leased at once in a namespace, over every executor — on the real stack."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clients.sdk import ApiError, Client
from tests.integration.test_executor import make_task


def test_a_task_limited_to_one_at_once_runs_its_steps_one_after_another(
    client: Client, tmp_path: Path
) -> None:
    """Four runs of a 0.3 s task limited to one at once, submitted together to an executor
    with two slots: their steps run one after another (each starts once the one before has
    ended, from the runs' own records), while a task without a limit runs on the other slot
    meanwhile; the waiting runs' events say why they wait."""
    client.register_task(make_task(tmp_path, "one_gpu", concurrency_limit=1))
    client.register_task(make_task(tmp_path, "not_limited"))
    _, run_ids = client.submit_many([{"seconds": 0.3, "n": n} for n in range(4)], task="one_gpu")
    time.sleep(0.1)
    submitted = time.monotonic()
    free = client.run(task="not_limited", input={"seconds": 0}, timeout=30)
    free_took = time.monotonic() - submitted
    runs = [client.wait(r, timeout=30) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * 4 and free.state == "COMPLETED"
    spans = sorted((r.steps[0].started_at, r.steps[0].ended_at) for r in runs)  # type: ignore[type-var]
    for (_, ended), (started, _) in zip(spans, spans[1:], strict=False):
        assert started >= ended, spans  # type: ignore[operator]
    assert free_took < 0.25  # not held behind the limited task's steps
    said = [e.message for r in runs for e in client.watch(r.run_id, timeout=10) if e.step_id]
    assert said.count("waits for a place: its task runs at most 1 at once") >= 2, said


def test_a_bad_concurrency_limit_is_refused_naming_the_field(
    client: Client, tmp_path: Path
) -> None:
    for bad in (0, 1001, "2"):
        with pytest.raises(ApiError) as err:
            client.register_task(
                make_task(tmp_path / str(bad), "badly_limited", concurrency_limit=bad)
            )
        assert err.value.code == "INVALID_ARGUMENT"
        assert err.value.message.startswith(
            "task.json: concurrency_limit: must be an integer from 1 to 1000"
        )
