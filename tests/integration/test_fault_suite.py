"""The fault suite: the trials of issue #14, repeated on the real stack, bounded.

Each trial runs a batch of two-step runs on a private scheduler (its own Redis and MongoDB
databases) with two executors, injects one fault while steps are running, and then checks
what the steps' own journal says against what the system says:

- every accepted run ends COMPLETED (none lost);
- no step ever executed twice at the same time (each execution's journal interval — from
  its start to its end, or to its last tick every 0.1 s if it was killed — ends before the
  next execution of that step begins);
- every execution that happened has its attempt record in MongoDB, and each step has
  exactly one completed attempt that counts.

- MongoDB's run records converge on COMPLETED.

Trials: executor kill -9, executor frozen (SIGSTOP), scheduler kill -9, Redis flushed, one
of two schedulers killed for good, one of two frozen (its executors, given both, move on);
an executor killed during a dynamic batch, and while a concurrency-limited task's steps run.
"""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
import redis

from clients.sdk import Client
from services.localstack import Cluster
from tests.conftest import shared_file
from tests.integration.ledger_fleet import Fleet, register_probe

pytestmark = pytest.mark.slow

JOURNAL_TASK = """
import os, threading, time
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        journal = input_data["journal"]
        who = f"{input_data['tag']} {input_data['step']} {os.getpid()}"
        def line(kind):
            with open(journal, "a") as fh:
                fh.write(f"{kind} {who} {time.time()}\\n")
        seconds = input_data["seconds"]
        if os.path.exists(journal) and f"start {who.rsplit(' ', 1)[0]} " in open(journal).read():
            seconds = input_data.get("seconds_again", seconds)  # a re-run: the fault was seen
        line("start")
        deadline = time.time() + float(seconds)
        while time.time() < deadline:
            time.sleep(0.1)
            line("tick")
        line("end")
        return {"tag": input_data["tag"], "journal": journal}

    def process_batch(self, inputs):  # a dynamic batch: its items at once, in threads
        out = [None] * len(inputs)
        def one(i, data):
            try:
                out[i] = self.process(data)
            except Exception as exc:
                out[i] = exc
        threads = [threading.Thread(target=one, args=(i, d)) for i, d in enumerate(inputs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out
"""

RUNS = 6
PIPELINE = {
    "pipeline_id": "journal_chain",
    "steps": [
        {
            "step_id": "first",
            "task_id": "journal_probe",
            "input_mapping": {
                "tag": "$.tag",
                "journal": "$.journal",
                "seconds": "$.seconds",
                "seconds_again": 0.5,
                "step": "first",
            },
        },
        {
            "step_id": "second",
            "task_id": "journal_probe",
            "depends_on": ["first"],
            "input_mapping": {
                "tag": "$.first.tag",
                "journal": "$.first.journal",
                "seconds": 0.6,
                "step": "second",
            },
        },
    ],
}


# The same chain with a task that batches (issue 18): a fault hits a call of several steps.
BATCHED = {
    "pipeline_id": "journal_batch_chain",
    "steps": [{**s, "task_id": "journal_batch"} for s in PIPELINE["steps"]],  # type: ignore[attr-defined]
}


# The same chain with a task limited to three steps at once: a fault must not let more run.
LIMITED = {
    "pipeline_id": "journal_limited_chain",
    "steps": [{**s, "task_id": "journal_limited"} for s in PIPELINE["steps"]],  # type: ignore[attr-defined]
}
AT_ONCE = 3


@pytest.fixture
def suite(cluster: Cluster, client: Client, tmp_path: Path) -> Iterator[Fleet]:
    register_probe(client, tmp_path, "journal_probe", JOURNAL_TASK, timeout=60, max_retries=3)
    register_probe(
        client,
        tmp_path,
        "journal_batch",
        JOURNAL_TASK,
        timeout=60,
        max_retries=3,
        batching={"max_batch_size": 4},
    )
    register_probe(
        client,
        tmp_path,
        "journal_limited",
        JOURNAL_TASK,
        timeout=60,
        max_retries=3,
        concurrency_limit=AT_ONCE,
    )
    client.register_pipelines(PIPELINE)
    client.register_pipelines(BATCHED)
    client.register_pipelines(LIMITED)
    fleet = Fleet(cluster, tmp_path, lease_seconds=3)
    fleet.env["WTM_RECOVERY_SCAN_SECONDS"] = "2"
    try:
        yield fleet
    finally:
        fleet.group.stop_all()


Execution = dict[str, Any]


def executions(journal: Path) -> dict[tuple[str, str], list[Execution]]:
    """Per (tag, step): each execution's pid, start, last sign of life, and whether it ended."""
    found: dict[tuple[str, str, int], Execution] = {}
    for line in journal.read_text().splitlines():
        kind, tag, step, pid, t = line.split()
        e = found.setdefault((tag, step, int(pid)), {"pid": int(pid), "start": float(t)})
        e["last"] = float(t)
        e["ended"] = e.get("ended", False) or kind == "end"
    by_step: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for (tag, step, _), e in found.items():
        by_step[(tag, step)].append(e)
    return by_step


def most_alive(ran: dict[tuple[str, str], list[Execution]]) -> int:
    """The most executions alive at one moment (from start to last sign of life)."""
    moments = sorted(
        (t, change)
        for found in ran.values()
        for e in found
        for t, change in ((e["start"], 1), (e["last"], -1))
    )
    alive = most = 0
    for _, change in moments:  # an end at the same moment as a start is counted first
        alive += change
        most = max(most, alive)
    return most


def run_trial(
    suite: Fleet,
    shared: Path,
    fault: Callable[[Fleet, str], None],
    schedulers: int = 1,
    pipeline: str = "journal_chain",
    seconds: float = 4,
    alive_first: int = 0,
) -> tuple[list[Any], dict[tuple[str, str], list[Execution]], dict[str, str]]:
    """Submits through the first scheduler, waits through the last (with two, the fault
    kills the first). The fault comes once three executions have started, and (with
    ``alive_first``) once that many have been alive at one moment."""
    addresses = [suite.start_scheduler() for _ in range(schedulers)]
    address = addresses[0]
    for n, first in ((1, 0), (2, len(addresses) - 1)):  # each given every replica, as deployed
        at = ",".join(addresses[first:] + addresses[:first])
        suite.start_executor(at, f"suite-{n}", slots=2)
    journal = shared_file(shared, "journal.txt")
    with suite.client(address) as client, suite.client(addresses[-1]) as survivor:
        _, run_ids = client.submit_many(
            [{"tag": f"t{i}", "journal": str(journal), "seconds": seconds} for i in range(RUNS)],
            pipeline=pipeline,
        )
        deadline = time.monotonic() + 30
        while len(found := executions(journal)) < 3 or most_alive(found) < alive_first:
            assert time.monotonic() < deadline, f"{len(found)} started, {most_alive(found)} at once"
            time.sleep(0.05)
        fault(suite, address)
        runs = [survivor.wait(r, timeout=120) for r in run_ids]
    return runs, executions(journal), {f"t{i}": r for i, r in enumerate(run_ids)}


def check(
    suite: Fleet,
    runs: list[Any],
    ran: dict[tuple[str, str], list[Execution]],
    run_of_tag: dict[str, str],
) -> None:
    assert [r.state for r in runs] == ["COMPLETED"] * RUNS, [r.error for r in runs]
    for (tag, step), found in ran.items():
        ordered = sorted(found, key=lambda e: e["start"])
        for before, after in zip(ordered, ordered[1:], strict=False):
            assert before["last"] <= after["start"], (
                f"{tag}/{step}: pid {before['pid']} ran until {before['last']:.3f}, "
                f"pid {after['pid']} started at {after['start']:.3f}"
            )
    with pymongo.MongoClient(suite.cluster.endpoints.mongodb_uri) as mongo:
        db = mongo[suite.env["WTM_MONGODB_DATABASE"]]
        records = _records(db, ran, run_of_tag)
        deadline = time.monotonic() + 20
        while True:  # the history converges on what happened, whoever was killed
            states = {d["_id"]: d["state"] for d in db["runs"].find({"batch_id": runs[0].batch_id})}
            if set(states.values()) == {"COMPLETED"} or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(states) == RUNS and set(states.values()) == {"COMPLETED"}, states
    for (run_id, step), docs in records.items():
        counted = [d for d in docs if d["state"] == "COMPLETED" and not d.get("superseded")]
        assert len(counted) == 1, (run_id, step, [(d["attempt"], d["state"]) for d in docs])


def _records(
    db: Any, ran: dict[tuple[str, str], list[Execution]], run_of_tag: dict[str, str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The attempt records of the trial's runs, once every execution has one (or 20 s)."""
    deadline = time.monotonic() + 20
    while True:  # the history is written behind: give it a moment to catch up
        records: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for doc in db["step_runs"].find({"run_id": {"$in": list(run_of_tag.values())}}):
            records[(doc["run_id"], doc["step_id"])].append(doc)
        missing = [
            (tag, step, len(found), len(records[(run_of_tag[tag], step)]))
            for (tag, step), found in ran.items()
            if len(records[(run_of_tag[tag], step)]) < len(found)
        ]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, (
        f"executions without an attempt record (tag, step, ran, recorded): {missing}"
    )
    return records


def kill_an_executor(suite: Fleet, address: str) -> None:
    victim = next(c for c in suite.group.children if c.name == "suite-1")
    victim.proc.kill()
    victim.proc.wait(10)
    suite.group.children.remove(victim)
    suite.start_executor(address, "suite-3", slots=2)


def freeze_an_executor(suite: Fleet, address: str) -> None:
    victim = next(c for c in suite.group.children if c.name == "suite-1")
    victim.proc.send_signal(signal.SIGSTOP)  # thawed and stopped by the fleet's cleanup
    suite.frozen = victim  # type: ignore[attr-defined]
    suite.start_executor(address, "suite-3", slots=2)  # as an autoscaler would


def kill_the_scheduler(suite: Fleet, address: str) -> None:
    suite.kill_scheduler(address)
    suite.start_scheduler(address)


def flush_redis(suite: Fleet, address: str) -> None:
    redis.Redis.from_url(suite.redis_admin_url).flushdb()


def kill_one_of_two_schedulers(suite: Fleet, address: str) -> None:
    suite.kill_scheduler(address)  # the one the runs were submitted to; not restarted


def freeze_one_of_two_schedulers(suite: Fleet, address: str) -> None:
    frozen = suite.schedulers[address]  # the one the runs were submitted to; its TCP stays up
    frozen.proc.send_signal(signal.SIGSTOP)  # thawed and stopped by the fleet's cleanup
    suite.frozen = frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "fault",
    [
        kill_an_executor,
        freeze_an_executor,
        kill_the_scheduler,
        flush_redis,
        kill_one_of_two_schedulers,
        freeze_one_of_two_schedulers,
    ],
    ids=lambda f: f.__name__,
)
def test_a_fault_loses_no_run_runs_no_step_twice_at_once_and_keeps_every_execution(
    suite: Fleet, shared_tmp: Path, fault: Callable[[Fleet, str], None]
) -> None:
    two = fault in (kill_one_of_two_schedulers, freeze_one_of_two_schedulers)
    try:
        runs, ran, run_of_tag = run_trial(suite, shared_tmp, fault, schedulers=2 if two else 1)
        check(suite, runs, ran, run_of_tag)
    finally:
        frozen = getattr(suite, "frozen", None)
        if frozen is not None and frozen.alive():
            os.kill(frozen.pid, signal.SIGCONT)


@pytest.mark.parametrize("fault", [kill_an_executor, flush_redis], ids=lambda f: f.__name__)
def test_a_fault_during_a_dynamic_batch_loses_nothing_and_runs_nothing_twice_at_once(
    suite: Fleet, shared_tmp: Path, fault: Callable[[Fleet, str], None]
) -> None:
    """The same trial with a task that batches: the steps of a call are leased together,
    and a fault must cost each of them no more than it costs a step leased alone."""
    runs, ran, run_of_tag = run_trial(suite, shared_tmp, fault, pipeline="journal_batch_chain")
    check(suite, runs, ran, run_of_tag)
    # Batched for real: some steps of different runs ran at once in one worker process.
    every = [e for found in ran.values() for e in found]
    assert any(
        a is not b and a["pid"] == b["pid"] and a["start"] < b["start"] < a["last"]
        for a in every
        for b in every
    )


def test_a_killed_executor_lets_no_more_than_a_tasks_concurrency_limit_run_at_once(
    suite: Fleet, shared_tmp: Path
) -> None:
    """The trial with a task limited to three steps at once, an executor killed -9 while
    they run: nothing lost, nothing run twice at once, and at no moment more than three of
    its executions alive (from start to last sign of life) — the killed executor's places
    come back only when their leases lapse, and then go to the steps that waited."""
    runs, ran, run_of_tag = run_trial(
        suite, shared_tmp, kill_an_executor, pipeline="journal_limited_chain", seconds=1.5,
        alive_first=AT_ONCE,  # the limit reached before the fault, whatever the machine's pace
    )  # fmt: skip
    check(suite, runs, ran, run_of_tag)
    assert most_alive(ran) == AT_ONCE  # the limit, reached and never passed
