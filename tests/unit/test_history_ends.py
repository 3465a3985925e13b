"""The history's writer of run ends (``History._write_ended``), on a real valkey: what it
hands the write-behind (``RunStore``) when runs end."""

from __future__ import annotations

from typing import Any

import pytest

from services.scheduler.history import History
from services.scheduler.models import Run
from services.scheduler.run_store import RunStore
from tests.unit.scheduler_core import Core, assignments, scenario


def test_a_run_whose_summary_fails_still_has_its_end_written_and_so_do_the_others(
    valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until 2026-12-08 a run whose summary raised (a no-op's step that started and ended in
    one millisecond did) made the writer drop its end and the ends of the runs after it in
    the same batch: MongoDB kept them QUEUED once Redis let them go."""
    summary = Run.summary

    def failing_for_r1(run: Run) -> Any:
        if run.run_id == "r1":
            raise IndexError("list index out of range")
        return summary(run)

    monkeypatch.setattr(Run, "summary", failing_for_r1)

    async def body(c: Core) -> dict[str, dict[str, Any]]:
        worker = c.executor("worker", slots=3)
        for run_id in ("r0", "r1", "r2"):
            await c.submit(run_id)
        for a in assignments(worker):
            await c.report(worker, a, "SUCCEEDED")
        # MongoDB is not asked here: the ends wait in the write-behind (RunStore's pending)
        store = RunStore("mongodb://127.0.0.1:9", "unused", timeout_s=0.1)
        history = History(c.queue, store, c.listeners)
        for run_id in ("r0", "r1", "r2"):
            history.run_ended(run_id)  # read back from Redis, as after a failover
        await history._write_ended()
        return store._pending_runs

    pending = scenario(valkey_url, body)
    assert sorted(pending) == ["r0", "r1", "r2"]
    assert {r: f["state"] for r, f in pending.items()} == dict.fromkeys(pending, "COMPLETED")
    assert pending["r1"]["processing_summary"] is None
    assert pending["r0"]["processing_summary"]["steps"][0]["step_id"] == "a"
    assert pending["r2"]["processing_summary"]["steps"][0]["step_id"] == "a"
