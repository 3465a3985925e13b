"""A task's rate limit (task.json "rate_limit", Celery's): at most N of its steps start per
second, minute or hour in a namespace, over every executor, one per interval — on the real
stack."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clients.sdk import ApiError, Client, RunInfo
from tests.integration.test_registry import make_task


def _limited_trial(
    client: Client, tmp_path: Path, name: str
) -> tuple[list[float], RunInfo, RunInfo]:
    """Six runs of a task limited to 4 a second, submitted at once once both tasks' workers
    are warm, and a task without a limit run meanwhile: each limited step's start after the
    first's (from the runs' own records), the free run, and the limited run that started
    last. Every start is checked to be on or after its turn (whole ms, one scheduler's
    clock): never early."""
    client.register_task(make_task(tmp_path / name, name, rate_limit="4/s"))
    # Warm first: a new task version's first step starts a worker process, and on a loaded
    # machine two such cold starts held both of the executor's slots past the third step's
    # turn (seen in CI on 2026-12-07: the third step half a second late, three trials of
    # three). Then a quiet interval, so the six start from an empty bucket.
    assert client.run(task=name, input={"n": -1}, timeout=30).state == "COMPLETED"
    assert client.run(task="free_call", input={}, timeout=30).state == "COMPLETED"
    time.sleep(0.3)
    _, run_ids = client.submit_many([{"n": n} for n in range(6)], task=name)
    free = client.run(task="free_call", input={}, timeout=30)
    runs = [client.wait(r, timeout=30) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * 6 and free.state == "COMPLETED"
    starts = sorted(r.steps[0].started_at for r in runs)  # type: ignore[type-var]
    after = [(s - starts[0]).total_seconds() for s in starts]  # type: ignore[operator]
    assert all(t >= 0.25 * i for i, t in enumerate(after)), after
    # not held behind the limited task's steps (from the records, not a stopwatch: the
    # suite's other worker shares the cores)
    assert free.steps[0].started_at < starts[-1], (free.steps[0].started_at, starts)  # type: ignore[operator]
    last = max(runs, key=lambda r: r.steps[0].started_at)  # type: ignore[arg-type, return-value]
    return after, free, last


def _on_time(after: list[float]) -> bool:
    """One every 250 ms, not several together a reaper's second late (a step that started
    late by a few ms makes the gap after it shorter by as much: the median)."""
    gaps = sorted(b - a for a, b in zip(after, after[1:], strict=False))
    return 0.24 <= gaps[2] <= 0.5 and after[-1] < 1.25 + 1.0


def test_a_rate_limited_tasks_steps_start_one_per_interval_and_others_pass(
    client: Client, tmp_path: Path
) -> None:
    """Six runs of a task limited to 4 a second, submitted at once to a fleet with room for
    them: the n-th step starts n × 250 ms after the first or later, in about the 1.25 s the
    limit needs, while a task without a limit runs at once meanwhile. Never early, in every
    trial; on time in one of three: on a loaded machine (the suite's other workers share the
    two cores) a step can start half a second late and the next ones, whose turns have come,
    then start together (seen in CI on 2026-12-07, twice in a row once), while a scheduler
    that waited for the reaper's second would be late in all three."""
    client.register_task(make_task(tmp_path, "free_call"))
    after, _, last = _limited_trial(client, tmp_path, "api_call")
    trials = [after]
    for name in ("api_call_again", "api_call_third"):
        if _on_time(trials[-1]):
            break
        again, _, last = _limited_trial(client, tmp_path, name)
        trials.append(again)
    assert _on_time(trials[-1]), trials
    said = [e.message for e in client.watch(last.run_id, timeout=10) if e.step_id]
    assert any(m.endswith(" ms for its task's rate limit") for m in said), said


def test_a_burst_starts_that_many_at_once_and_an_operator_can_set_it(
    client: Client, tmp_path: Path
) -> None:
    """task.json "rate_burst" 3 over a rate of one a minute: of five runs submitted at once,
    three start together and two wait for their starts, a minute and two away (their events
    say so). An operator raises the burst to 6 (listed as set): a sixth run starts at once
    (the two waiting keep the starts they reserved); reset, the burst is task.json's again."""
    client.register_task(make_task(tmp_path, "partner_call", rate_limit="1/m", rate_burst=3))
    _, run_ids = client.submit_many([{"n": n} for n in range(5)], task="partner_call")
    done = [client.wait(r, timeout=30) for r in run_ids[:3]]
    assert [r.state for r in done] == ["COMPLETED"] * 3
    waiting = [client.get_run(r) for r in run_ids[3:]]
    assert [r.state for r in waiting] == ["QUEUED", "QUEUED"]
    for r in waiting:
        client.cancel(r.run_id, "the test has seen them wait")
    said = [[e.message for e in client.watch(r.run_id, timeout=10)] for r in waiting]
    delays = sorted(
        int(m.split()[1]) for msgs in said for m in msgs if m.endswith("for its task's rate limit")
    )
    assert len(delays) == 2 and 50_000 < delays[0] <= 60_000 < 110_000 < delays[1] <= 120_000
    limits = client.set_task_limits("partner_call", rate_burst=6)
    assert limits is not None and (limits.rate_limit, limits.rate_burst) == (None, 6)
    listed = {t.task_id: t.rate_burst for t in client.task_limits()}
    assert listed["partner_call"] == 6
    # (the replica that took the call published it to Redis before answering)
    assert client.run(task="partner_call", input={"n": 6}, timeout=30).state == "COMPLETED"
    assert client.set_task_limits("partner_call", reset=["rate_burst"]) is None


def test_a_bad_rate_limit_is_refused_naming_the_field(client: Client, tmp_path: Path) -> None:
    for bad in ("10/d", "0/s", 5):
        with pytest.raises(ApiError) as err:
            client.register_task(make_task(tmp_path / str(bad), "badly_limited", rate_limit=bad))
        assert err.value.code == "INVALID_ARGUMENT"
        assert err.value.message.startswith("task.json: rate_limit: must be 'N/s', 'N/m' or")
    with pytest.raises(ApiError) as err:
        client.register_task(make_task(tmp_path / "burst", "burst_alone", rate_burst=5))
    assert err.value.message.startswith("task.json: rate_burst: needs a rate_limit")
