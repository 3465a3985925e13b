"""Schedulers that restart, lose Redis, or share it: every run still completes, none twice.

Each test starts its own scheduler(s) on a Redis database and a MongoDB database of their
own (the session's stack serves them), so flushing or killing them touches nothing else.
The probe task appends one line per execution to a ledger file, so a test can count how
often, and when, each step really ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pymongo
import pytest
import redis

from clients.sdk import ApiError
from tests.conftest import shared_file
from tests.integration.ledger_fleet import PIPELINE, Fleet, ledger_counts, wait_all
from tests.waiting import eventually


def test_a_scheduler_killed_mid_run_carries_on_every_run_when_it_restarts(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    address = fleet.start_scheduler()
    fleet.start_executor(address, "durable-1")
    ledger = shared_file(shared_tmp, "ledger.txt")
    with fleet.client(address) as client:
        _, run_ids = client.submit_many(
            [{"tag": f"r{i}", "ledger": str(ledger), "seconds": 0.3} for i in range(8)],
            pipeline="ledger_chain",
        )
        time.sleep(1.0)  # some first steps done, some running, the rest queued
        fleet.kill_scheduler(address)  # SIGKILL: nothing flushed, no goodbye to executors
        fleet.start_scheduler(address)
        runs = wait_all(client, run_ids)
    assert [r.state for r in runs] == ["COMPLETED"] * 8, [r.error for r in runs]
    counts = ledger_counts(ledger)
    assert set(counts) == {f"r{i}" for i in range(8)}
    assert all(n >= 2 for n in counts.values())  # both steps of every run ran


def test_a_redis_flush_mid_run_is_rebuilt_from_mongodb(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    fleet.env["WTM_LEASE_SECONDS"] = "4"  # the rebuilt runs wait one lease period
    address = fleet.start_scheduler()
    fleet.start_executor(address, "flushed-1")
    ledger = shared_file(shared_tmp, "ledger.txt")
    with fleet.client(address) as client:
        _, run_ids = client.submit_many(
            [{"tag": f"f{i}", "ledger": str(ledger), "seconds": 0.3} for i in range(8)],
            pipeline="ledger_chain",
        )
        late = client.submit(  # a delayed start and a time limit survive the flush too
            task="ledger",
            input={"tag": "late", "ledger": str(ledger), "seconds": 0.1},
            start_delay=10,  # well past the rebuild's one lease period (4 s from the flush, at 1 s)
            run_timeout=60,
        )
        eventually(  # some first steps have completed: the rebuild must keep them
            lambda: any(client.get_run(r).steps[0].state == "COMPLETED" for r in run_ids),
            timeout=15,  # a new executor's first step, on a loaded machine: seconds
            what="a first step completed before the flush",
        )
        redis.Redis.from_url(fleet.redis_admin_url).flushdb()
        runs = wait_all(client, run_ids)
        rebuilt = [r for r in runs if r.steps and r.steps[0].attempt >= 1]
        [waited] = wait_all(client, [late.run_id])
    assert [r.state for r in runs] == ["COMPLETED"] * 8, [r.error for r in runs]
    assert len(rebuilt) == 8
    # Steps that had completed before the flush show where and when they ran, and where
    # their input came from, as before it (put back from the history).
    assert all(s.executor_id == "flushed-1" and s.started_at for r in runs for s in r.steps)
    assert all({target[:9] for _, target in r.lineage} == {"input_001", "input_002"} for r in runs)
    counts = ledger_counts(ledger)
    assert set(counts) == {f"f{i}" for i in range(8)} | {"late"} and counts["late"] == 1
    assert waited.state == "COMPLETED" and waited.steps[0].started_at is not None
    assert late.scheduled_at is not None and waited.steps[0].started_at >= late.scheduled_at
    assert (waited.scheduled_at, waited.deadline_at) == (late.scheduled_at, late.deadline_at)
    assert waited.created_at == late.created_at  # not the rebuild's time
    log = (fleet.root / "logs").glob("scheduler-*.log")
    assert any("Redis lost its data" in p.read_text() for p in log)


def fanning() -> dict[str, Any]:
    """The ledger chain whose second step runs once per item of the tags the first returns."""
    found = json.loads(json.dumps(PIPELINE))
    found["pipeline_id"] = "ledger_fan"
    found["steps"][1]["for_each"] = {"tag": "$.first.tag"}
    found["steps"][1]["input_mapping"] = {"ledger": "$.first.ledger", "seconds": "$.seconds"}
    return found


def test_a_redis_flush_mid_fan_out_runs_only_the_items_that_had_not_completed(
    fleet: Fleet, shared_tmp: Path
) -> None:
    """The rebuilt run takes the instances MongoDB has as completed as they were: those ran
    once; the others run (again, for one that was running), and the list is whole."""
    fleet.env["WTM_LEASE_SECONDS"] = "4"
    address = fleet.start_scheduler()
    fleet.start_executor(address, "fan-flushed-1")
    ledger = shared_file(shared_tmp, "fan-flush-ledger.txt")
    tags = [f"i{i}" for i in range(8)]
    with fleet.client(address) as client:
        client.register_pipelines(fanning())
        doc = {"tag": tags, "ledger": str(ledger), "seconds": 0.5}
        run_id = client.submit(pipeline="ledger_fan", input=doc).run_id

        def completed() -> set[str]:
            steps = client.get_run(run_id).steps
            return {s.step_id for s in steps if "[" in s.step_id and s.state == "COMPLETED"}

        eventually(lambda: len(completed()) >= 2, timeout=20, what="two items completed")
        before = completed()
        time.sleep(0.5)  # their records are in MongoDB (written behind every 50 ms)
        redis.Redis.from_url(fleet.redis_admin_url).flushdb()
        done = client.wait(run_id, timeout=60)
    assert done.state == "COMPLETED", done.error
    assert done.output == [{"tag": t, "ledger": str(ledger)} for t in tags]
    ran = ledger_counts(ledger)
    assert 2 <= len(before) < len(tags) and all(ran[t] >= 1 for t in tags), (before, ran)
    assert [ran[tags[int(s[7:-1])]] for s in sorted(before)] == [1] * len(before), (before, ran)


def test_a_signal_kept_before_a_redis_flush_is_taken_after_the_rebuild(
    fleet: Fleet, shared_tmp: Path
) -> None:
    """A signal sent early (its step not ready) is kept on the run's document too: the run
    rebuilt from MongoDB after the flush starts that step with it. The first step, which was
    waiting, waits again; its signal, sent while the run is being restored, is UNAVAILABLE
    until it is."""
    fleet.env["WTM_LEASE_SECONDS"] = "3"
    address = fleet.start_scheduler()
    fleet.start_executor(address, "signal-flushed-1")
    ledger = shared_file(shared_tmp, "signal-flush-ledger.txt")
    found = json.loads(json.dumps(PIPELINE))
    found["pipeline_id"] = "ledger_signals"
    found["steps"][0]["await_signal"] = {"field": "go"}
    found["steps"][1]["await_signal"] = {"field": "tag"}  # the ledger's line is the signal
    found["steps"][1]["input_mapping"] = {"ledger": "$.first.ledger", "seconds": 0.1}
    with fleet.client(address) as client:
        client.register_pipelines(found)
        doc = {"tag": "s", "ledger": str(ledger), "seconds": 0.1}
        run_id = client.submit(pipeline="ledger_signals", input=doc).run_id
        eventually(lambda: client.get_run(run_id).steps[0].awaiting_signal, timeout=10)
        deadline = client.get_run(run_id).steps[0].signal_deadline
        client.signal(run_id, "second", {"kept": "across the flush"})
        time.sleep(1)  # so that a wait timed again from the rebuild would end a second later
        redis.Redis.from_url(fleet.redis_admin_url).flushdb()

        def waiting_again() -> bool:
            with contextlib.suppress(ApiError):  # UNAVAILABLE while it is being restored
                steps = client.get_run(run_id).steps  # none, while MongoDB's is shown
                return bool(steps and steps[0].awaiting_signal)
            return False

        eventually(waiting_again, timeout=30, what="the rebuilt run's first step waiting")
        # its wait goes on from when it began, not from the rebuild (a lease, 3 s, later)
        again = client.get_run(run_id).steps[0].signal_deadline
        assert deadline is not None and again is not None
        assert abs((again - deadline).total_seconds()) < 0.5, (deadline, again)

        def go() -> bool:
            try:
                client.signal(run_id, "first", {})
            except ApiError as err:
                assert err.code in ("UNAVAILABLE", "FAILED_PRECONDITION"), err
                return False  # not yet rebuilt (or, rebuilt, not yet waiting again)
            return True

        eventually(go, timeout=30, what="the rebuilt run took the first step's signal")
        done = client.wait(run_id, timeout=60)
    assert done.state == "COMPLETED", done.error
    assert done.output == {"tag": {"kept": "across the flush"}, "ledger": str(ledger)}
    assert ledger_counts(ledger) == Counter({"s": 1, "{'kept':": 1})  # each step ran once


def test_an_executor_leaves_a_frozen_scheduler_for_the_next_one_it_was_given(
    fleet: Fleet, shared_tmp: Path
) -> None:
    """A scheduler replica frozen (SIGSTOP) keeps its executors' TCP connections up, and
    gRPC's keep-alive notices only after 80 s: its executors sat idle that long while the
    other replica had work. An executor now gives a stream up once its scheduler has
    acknowledged nothing for a lease (3 s here), and connects to the next address."""
    fleet.env["WTM_LEASE_SECONDS"] = "3"
    first, second = fleet.start_scheduler(), fleet.start_scheduler()
    executor = fleet.start_executor(f"{first},{second}", "two-homed")
    ledger = shared_file(shared_tmp, "ledger.txt")
    eventually(lambda: f"connected to {first}" in executor.log_path.read_text(), 30, "a stream")
    frozen = fleet.schedulers[first]
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        with fleet.client(second) as client:
            started = time.monotonic()
            run = client.submit(
                task="ledger", input={"tag": "f", "ledger": str(ledger), "seconds": 0}
            )
            done = client.wait(run.run_id, timeout=30)
            took = time.monotonic() - started
        assert done.state == "COMPLETED" and done.steps[0].executor_id == "two-homed"
        assert took < 15, took  # a lease, a reconnect, the run: not the keep-alive's 80 s
        log = executor.log_path.read_text()
        assert "scheduler silent for" in log and f"connected to {second}" in log
    finally:
        frozen.proc.send_signal(signal.SIGCONT)


def test_two_schedulers_on_one_redis_run_each_step_once(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    a, b = fleet.start_scheduler(), fleet.start_scheduler()
    fleet.start_executor(a, "twin-a")
    fleet.start_executor(b, "twin-b")
    ledger = shared_file(shared_tmp, "ledger.txt")
    with fleet.client(a) as ca, fleet.client(b) as cb:
        ids = []
        for i in range(12):
            c = ca if i % 2 else cb
            ids.append(
                c.submit(
                    task="ledger", input={"tag": f"t{i}", "ledger": str(ledger), "seconds": 0.1}
                )
            )
        runs = wait_all(ca, [r.run_id for r in ids])
        executors = {s.executor_id for r in runs for s in r.steps}
    assert [r.state for r in runs] == ["COMPLETED"] * 12
    assert ledger_counts(ledger) == Counter({f"t{i}": 1 for i in range(12)})
    assert executors == {"twin-a", "twin-b"}  # work flowed across replicas


def test_a_queue_paused_through_one_replica_is_held_by_every_replica(
    fleet: Fleet, shared_tmp: Path
) -> None:
    """PauseQueue through replica a; the executor is b's and the run submitted through b:
    its step waits until the queue is resumed (through a), then runs."""
    a, b = fleet.start_scheduler(), fleet.start_scheduler()
    fleet.start_executor(b, "held")
    ledger = shared_file(shared_tmp, "paused-ledger.txt")
    with fleet.client(a) as ca, fleet.client(b) as cb:
        pause = ca.pause_queue("ledger", "the model is being replaced")
        assert (pause.queue, pause.namespace) == ("ledger", "default") and pause.paused_by
        eventually(  # every replica reads the pauses each second: b has, once it lists it
            lambda: any(q.pause == pause for q in cb.list_queues()[0]),
            timeout=10,
            what="the pause read by the other replica",
        )
        run = cb.submit(task="ledger", input={"tag": "p", "ledger": str(ledger), "seconds": 0})
        time.sleep(2)
        assert cb.get_run(run.run_id).state == "QUEUED" and not ledger_counts(ledger)
        [held] = [q for q in cb.list_queues()[0] if q.queue == "ledger"]
        assert held.depth == 1 and held.executors == 1  # served, but paused
        assert held.pause == pause  # who, when and why, as every replica reads it
        # b killed and started again on its address: the executor is back at once, and the
        # new process has read the pause before its first lease round.
        fleet.kill_scheduler(b)
        fleet.start_scheduler(b)
        eventually(
            lambda: any(e.state == "CONNECTED" for e in cb.list_executors()),
            timeout=15,
            what="the executor back on the restarted replica",
        )
        time.sleep(1)
        assert cb.get_run(run.run_id).state == "QUEUED" and not ledger_counts(ledger)
        assert ca.resume_queue("ledger") is True
        assert cb.wait(run.run_id, 30).state == "COMPLETED"
        assert ledger_counts(ledger) == Counter({"p": 1})
        assert ca.resume_queue("ledger") is False  # not paused any more


def test_the_fleet_is_listed_from_any_replica_and_a_stopped_executor_shows_lost(
    fleet: Fleet,
) -> None:
    a, b = fleet.start_scheduler(), fleet.start_scheduler()
    fleet.start_executor(a, "listed-a", slots=3)
    gone = fleet.start_executor(b, "listed-b")
    with fleet.client(b) as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = {e.executor_id: e for e in client.list_executors()}
            if {"listed-a", "listed-b"} <= set(found):
                break
            time.sleep(0.2)
        assert found["listed-a"].state == "CONNECTED"
        assert found["listed-a"].slots == 3
        assert found["listed-a"].queues == ["ledger"]
        assert found["listed-a"].scheduler_id != found["listed-b"].scheduler_id
        gone.stop()
        while time.monotonic() < deadline:
            if {e.executor_id: e for e in client.list_executors()}["listed-b"].state == "LOST":
                break
            time.sleep(0.2)
        assert {e.executor_id: e.state for e in client.list_executors()}["listed-b"] == "LOST"


def busy_then_next(fleet: Fleet, ledger: Path, seconds: float, **env: str) -> tuple[str, str, str]:
    """A scheduler with prefetch and a one-slot executor, given a step that keeps the slot
    busy for ``seconds`` and a second one that the executor holds meanwhile. Returns the
    scheduler's address and the two run ids."""
    fleet.env.update(WTM_PREFETCH="1", **env)
    address = fleet.start_scheduler()
    fleet.start_executor(address, "prefetching", slots=1)
    with fleet.client(address) as client:
        busy = {"tag": "a", "ledger": str(ledger), "seconds": seconds}
        first = client.submit(task="ledger", input=busy)
        second = client.submit(task="ledger", input={"tag": "b", "ledger": str(ledger)})
    return address, first.run_id, second.run_id


def test_a_prefetched_step_keeps_its_lease_while_held_and_runs_once(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    """With WTM_PREFETCH, a busy executor holds the next step; heartbeats renew its lease
    while it waits longer than the lease, so it runs once, on the slot that frees."""
    ledger = shared_file(shared_tmp, "ledger.txt")
    address, first, second = busy_then_next(fleet, ledger, 3, WTM_LEASE_SECONDS="2")
    with fleet.client(address) as client:
        a, b = wait_all(client, [first, second])
    assert (a.state, b.state) == ("COMPLETED", "COMPLETED")
    assert ledger_counts(ledger) == Counter({"a": 1, "b": 1})
    assert b.steps[0].attempt == 1  # its lease never expired
    held = b.processing_summary["steps"][0]["pickup_seconds"]
    assert held > 2.0  # it waited at the executor, past a whole lease, for the slot


def test_a_held_step_that_is_cancelled_never_runs(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    ledger = shared_file(shared_tmp, "ledger.txt")
    address, first, second = busy_then_next(fleet, ledger, 2)
    with fleet.client(address) as client:
        deadline = time.monotonic() + 10
        while client.get_run(second).state != "RUNNING":  # leased, so held
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.cancel(second, reason="not needed").state == "CANCELLED"
        assert client.wait(first, timeout=30).state == "COMPLETED"
        time.sleep(0.5)
    assert ledger_counts(ledger) == Counter({"a": 1})


def test_a_finished_run_leaves_redis_once_mongodb_has_it(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    fleet.env["WTM_FINISHED_RETENTION_SECONDS"] = "1"
    address = fleet.start_scheduler()
    fleet.start_executor(address, "retention-1")
    with fleet.client(address) as client:
        run = client.run(
            pipeline="ledger_chain",
            input={
                "tag": "kept",
                "ledger": str(shared_file(shared_tmp, "ledger.txt")),
                "seconds": 0,
            },
            timeout=60,
        )
        assert run.state == "COMPLETED"
        r = redis.Redis.from_url(fleet.redis_admin_url)
        deadline = time.monotonic() + 15
        while r.keys(f"wtm:*{run.run_id}*"):
            assert time.monotonic() < deadline, r.keys(f"wtm:*{run.run_id}*")
            time.sleep(0.2)
        again = client.get_run(run.run_id)  # from MongoDB now, whole
        assert again.state == "COMPLETED"
        assert again.output == run.output
        assert [s.state for s in again.steps] == [s.state for s in run.steps]
        # Its events, told again from the history (a watch gave the run's end alone).
        told = list(client.watch(run.run_id, timeout=30))
        assert told[0].message.startswith("told from the run's history") and told[-1].ends_run
        assert told[-1].state == "COMPLETED" and told[0].time == run.created_at
        for step in run.steps:
            lived = [(e.state, e.attempt) for e in told if e.step_id == step.step_id]
            assert lived == [("QUEUED", 0), ("RUNNING", 1), ("COMPLETED", 1)], lived
        times = [e.time for e in told]
        assert times == sorted(times)  # type: ignore[type-var]
        rest = list(client.watch(run.run_id, after_event_id=told[2].event_id, timeout=30))
        assert [e.event_id for e in rest] == [e.event_id for e in told[3:]]
        # A step its skip_if skipped is in the history too (a record of attempt 0, written
        # at the run's end), SKIPPED with its condition, and told so: one on the run's input,
        # decided at submit, and one on the first step's output, decided by complete.lua.
        conditions = {
            "ledger_skip": {"path": "$.tag", "op": "==", "value": "skip"},
            "ledger_skip_on": {"path": "$.first.tag", "op": "==", "value": "skip"},
        }
        for pipeline_id, condition in conditions.items():
            skipping = json.loads(json.dumps(PIPELINE))
            skipping["pipeline_id"] = pipeline_id
            skipping["steps"][1]["skip_if"] = condition
            client.register_pipelines(skipping)
        ledger = str(shared_file(shared_tmp, "skip-ledger.txt"))
        runs = [
            client.run(
                pipeline=pipeline_id,
                input={"tag": "skip", "ledger": ledger, "seconds": 0},
                timeout=60,
            )
            for pipeline_id in conditions
        ]
        for done in runs:
            assert [s.state for s in done.steps] == ["COMPLETED", "SKIPPED"]
        deadline = time.monotonic() + 15
        while any(r.keys(f"wtm:*{done.run_id}*") for done in runs):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for done, said in zip(runs, ['$.tag == "skip"', '$.first.tag == "skip"'], strict=True):
            kept = client.get_run(done.run_id)
            assert [(s.state, s.error) for s in kept.steps] == [
                ("COMPLETED", ""), ("SKIPPED", f"skip_if {said}")
            ]  # fmt: skip
            told = list(client.watch(done.run_id, timeout=30))
            assert ("second", "SKIPPED") in [(e.step_id, e.state) for e in told]
        # A for_each step's instances are steps of the run in the history too, after it, and
        # the step itself (never leased) with the gathered list.
        client.register_pipelines(fanning())
        fan_ledger = shared_file(shared_tmp, "fan-ledger.txt")
        ledger = str(fan_ledger)
        fanned = client.run(
            pipeline="ledger_fan", input={"tag": ["p", "q"], "ledger": ledger, "seconds": 0}
        )
        assert fanned.state == "COMPLETED", fanned.error
        deadline = time.monotonic() + 15
        while r.keys(f"wtm:*{fanned.run_id}*"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        kept = client.get_run(fanned.run_id)
        assert [(s.step_id, s.state) for s in kept.steps] == [
            ("first", "COMPLETED"), ("second", "COMPLETED"),
            ("second[0]", "COMPLETED"), ("second[1]", "COMPLETED"),
        ]  # fmt: skip
        assert kept.output == [{"tag": "p", "ledger": ledger}, {"tag": "q", "ledger": ledger}]
        ran = ledger_counts(fan_ledger)  # first's line, then one for each item, once each
        assert (ran["p"], ran["q"], sum(ran.values())) == (1, 1, 3)


class ThreadedForwarder:
    """The run store tests' TCP forwarder on a thread of its own, for a scheduler process."""

    def __init__(self, target_port: int) -> None:
        from tests.integration.test_run_store import Forwarder

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.forwarder = Forwarder(target_port)
        asyncio.run_coroutine_threadsafe(self.forwarder.start(), self.loop).result(10)

    def off(self) -> None:
        self.loop.call_soon_threadsafe(self.forwarder.off)

    def on(self) -> None:
        self.loop.call_soon_threadsafe(self.forwarder.on)

    def stall(self) -> None:
        self.loop.call_soon_threadsafe(self.forwarder.stall)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.forwarder.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def behind_a_switch(
    fleet: Fleet, executor_id: str, shared_tmp: Path
) -> Iterator[tuple[str, ThreadedForwarder, Path]]:
    """A scheduler whose MongoDB is reached through a forwarder the test can switch off, an
    executor, and the ledger file; all stopped at the end."""
    mongo_port = urlparse(fleet.cluster.endpoints.mongodb_uri).port  # type: ignore[union-attr]
    forwarder = ThreadedForwarder(int(mongo_port or 27017))
    try:
        fleet.env["WTM_MONGODB_URI"] = f"mongodb://127.0.0.1:{forwarder.forwarder.port}"
        address = fleet.start_scheduler()
        fleet.start_executor(address, executor_id)
        yield address, forwarder, shared_file(shared_tmp, "ledger.txt")
    finally:
        fleet.group.stop_all()
        forwarder.close()


def test_one_request_id_makes_one_run_across_a_mongodb_outage(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    """While MongoDB is out of reach a submit with a request id is refused (UNAVAILABLE) and
    nothing is queued; once it is back, concurrent retries of that submit make one run."""
    with behind_a_switch(fleet, "outage-1", shared_tmp) as (address, forwarder, ledger):
        doc = {"tag": "once", "ledger": str(ledger), "seconds": 0}
        forwarder.off()
        # Not retried (the SDK would retry UNAVAILABLE for 10 s): the refusal is the point.
        with fleet.client(address, retry_seconds=0) as client, pytest.raises(ApiError) as err:
            client.submit(task="ledger", input=doc, request_id="outage-key")
        assert err.value.code == "UNAVAILABLE"
        forwarder.on()

        def submit(_: int) -> str:
            with fleet.client(address) as c:
                return c.submit(task="ledger", input=doc, request_id="outage-key").run_id

        with ThreadPoolExecutor(6) as pool:
            run_ids = set(pool.map(submit, range(6)))
        assert len(run_ids) == 1
        with fleet.client(address) as client:
            assert client.wait(run_ids.pop(), timeout=60).state == "COMPLETED"
        time.sleep(1.0)
        assert ledger_counts(ledger) == Counter({"once": 1})
        with pymongo.MongoClient(fleet.cluster.endpoints.mongodb_uri) as mongo:
            runs = mongo[fleet.env["WTM_MONGODB_DATABASE"]]["runs"]
            assert runs.count_documents({"request_id": "outage-key"}) == 1


def test_batches_submitted_while_mongodb_is_out_of_reach_fail_and_later_ones_run_nothing(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    """A submit queues its runs while MongoDB writes them. When MongoDB is out of reach the
    first batch's insert fails: the submit is refused (UNAVAILABLE) and its runs are
    withdrawn. From then on submits write first, so the next batch is refused with nothing
    run at all; once MongoDB is back, batches run again."""
    with behind_a_switch(fleet, "outage-2", shared_tmp) as (address, forwarder, ledger):

        def batch(tag: str, n: int = 5) -> list[dict[str, object]]:
            return [{"tag": f"{tag}{i}", "ledger": str(ledger), "seconds": 0} for i in range(n)]

        with fleet.client(address) as client:
            forwarder.off()
            for tag in ("first", "second"):
                with pytest.raises(ApiError) as err:
                    client.submit_many(batch(tag), task="ledger")
                assert err.value.code == "UNAVAILABLE", err.value
            forwarder.on()
            deadline = time.monotonic() + 30
            while True:  # UNAVAILABLE asks for a retry: the driver may not have seen it back
                try:
                    _, run_ids = client.submit_many(batch("after"), task="ledger")
                    break
                except ApiError as exc:
                    if exc.code != "UNAVAILABLE" or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            assert {r.state for r in wait_all(client, run_ids)} == {"COMPLETED"}
        time.sleep(1.0)
        counts = ledger_counts(ledger)
        assert not [t for t in counts if t.startswith("second")]  # written first: none ran
        assert [counts[f"after{i}"] for i in range(5)] == [1] * 5


def test_a_stalled_mongodb_fails_a_submit_in_its_time_and_loses_nothing(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    """MongoDB that stops answering without closing anything (stopped, partitioned): a
    submit fails UNAVAILABLE, naming MongoDB, within WTM_MONGODB_TIMEOUT — not at the
    client's deadline — and so does a listing; the next submit writes first and runs
    nothing; once MongoDB answers, submits run again and every run is recorded."""
    fleet.env["WTM_MONGODB_TIMEOUT"] = "1.5"
    with behind_a_switch(fleet, "stall-1", shared_tmp) as (address, forwarder, ledger):

        def doc(tag: str) -> dict[str, object]:
            return {"tag": tag, "ledger": str(ledger), "seconds": 0}

        with fleet.client(address, retry_seconds=0) as client:
            assert client.run(task="ledger", input=doc("before")).state == "COMPLETED"
            forwarder.stall()  # the key checked above stays cached: the calls reach MongoDB
            for tag in ("stalled", "written-first"):
                started = time.monotonic()
                with pytest.raises(ApiError) as err:
                    client.submit(task="ledger", input=doc(tag))
                waited = time.monotonic() - started
                assert err.value.code == "UNAVAILABLE", err.value
                assert "MongoDB" in err.value.message, err.value.message
                assert 1.0 < waited < 6.0, waited  # the client's deadline is 30 s
            started = time.monotonic()
            with pytest.raises(ApiError) as err:
                list(client.list_runs(task_id="ledger"))
            assert err.value.code == "UNAVAILABLE" and time.monotonic() - started < 6.0
            forwarder.on()
            deadline = time.monotonic() + 30
            while True:  # UNAVAILABLE asks for a retry; the driver reconnects
                try:
                    after = client.run(task="ledger", input=doc("after"))
                    break
                except ApiError as exc:
                    if exc.code != "UNAVAILABLE" or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            assert after.state == "COMPLETED"
        time.sleep(1.0)
        counts = ledger_counts(ledger)
        assert counts["before"] == 1 and counts["after"] == 1
        assert counts["stalled"] <= 1  # leased beside its insert; withdrawn when that failed
        assert counts["written-first"] == 0  # after a failed insert, inserts go first
        with pymongo.MongoClient(fleet.cluster.endpoints.mongodb_uri) as mongo:
            runs = mongo[fleet.env["WTM_MONGODB_DATABASE"]]["runs"]
            assert runs.count_documents({"_id": after.run_id, "state": "COMPLETED"}) == 1


@pytest.mark.slow
def test_a_run_whose_replica_died_before_its_insert_landed_is_recorded_and_outlives_a_flush(
    fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    """A submit queues its run in Redis and inserts its document beside: a replica killed
    between the two leaves a run that runs with no record (found by CI: a schedule's run that
    ran and was never listed). Made here by holding replica A's insert (its MongoDB stalled
    behind a switch) and killing A: replica B records the run whole from Redis once it is
    WTM_UNRECORDED_AFTER_SECONDS old — its labels, its state, its plan — so that a Redis
    flush while it still runs rebuilds it from MongoDB, and it completes."""
    fleet.env["WTM_UNRECORDED_AFTER_SECONDS"] = "1"
    fleet.env["WTM_LEASE_SECONDS"] = "3"  # the rebuilt run waits one lease period
    direct = fleet.env["WTM_MONGODB_URI"]
    b = fleet.start_scheduler()
    fleet.start_executor(b, "unrecorded-b")
    mongo_port = urlparse(direct).port
    forwarder = ThreadedForwarder(int(mongo_port or 27017))
    ledger = shared_file(shared_tmp, "ledger.txt")
    admin = redis.Redis.from_url(fleet.redis_admin_url)
    try:
        fleet.env["WTM_MONGODB_URI"] = f"mongodb://127.0.0.1:{forwarder.forwarder.port}"
        fleet.env["WTM_KEY_CACHE_SECONDS"] = "120"  # A's key check is not what stalls
        a = fleet.start_scheduler()
        labels = {"case": "unrecorded"}
        with fleet.client(a, retry_seconds=0) as client_a:
            client_a.list_executors()  # A has checked the key: its next call needs no MongoDB
            forwarder.stall()
            with ThreadPoolExecutor(1) as pool:
                held = pool.submit(
                    client_a.submit,
                    task="ledger",
                    input={"tag": "unrecorded", "ledger": str(ledger), "seconds": 10},
                    labels=labels,
                )
                indexed = eventually(
                    lambda: admin.zrange("wtm:unrecorded", 0, -1), timeout=15, what="run queued"
                )
                fleet.kill_scheduler(a)  # its insert never lands
                with pytest.raises(ApiError):
                    held.result(30)
        [run_id] = [r.decode() for r in indexed]
        with pymongo.MongoClient(direct) as mongo:
            runs = mongo[fleet.env["WTM_MONGODB_DATABASE"]]["runs"]
            doc = eventually(lambda: runs.find_one({"_id": run_id}), timeout=20, what="recorded")
        assert doc["recorded"] == "from_redis" and doc["labels"] == labels, doc
        assert doc["state"] in {"QUEUED", "RUNNING"} and doc["plan"], doc  # recorded running
        eventually(  # forgotten once recorded (just after the insert this test saw)
            lambda: (
                not admin.zrange("wtm:unrecorded", 0, -1) and not admin.exists(f"wtm:plan:{run_id}")
            ),
            timeout=10,
            what="the entry forgotten",
        )
        admin.flushdb()  # the run is in MongoDB only now
        with fleet.client(b) as client_b:
            done = client_b.wait(run_id, timeout=90)
            assert done.state == "COMPLETED", done.error
            assert [r.run_id for r in client_b.list_runs(labels=labels)] == [run_id]
        assert ledger_counts(ledger)["unrecorded"] >= 1
    finally:
        admin.close()
        fleet.group.stop_all()
        forwarder.close()
