"""Faults in a row, under a steady load: what the fault suite (``test_fault_suite.py``) checks
after one fault at a chosen moment, checked after eight faults a few seconds apart (about 40
s), while clients submit runs through two schedulers and cancel some.

The faults, drawn from a seeded random sequence: kill -9 of an executor (another is
started, as an autoscaler would), SIGSTOP of an executor for 0.5-6 s (longer and shorter
than the 3 s lease), kill -9 of a scheduler (restarted on its address), SIGSTOP of a
scheduler for 0.5-4 s. Afterwards:

- every run ended COMPLETED, or CANCELLED if it was cancelled, and MongoDB says the same;
- no step's executions overlapped (each journal interval ends before the next begins);
- every completed step has exactly one counted COMPLETED attempt record, and every
  execution that happened has an attempt record.

A soak like this found (2026-12-08) an executor that, thawed after its lease had lapsed,
started a step already running elsewhere (``LeaseFence``: a lease now counts from the last
heartbeat the scheduler had heard before making it). Redis flushes are left out here: an
execution killed with its executor and flushed from Redis within the same lease leaves no
record (docs/architecture.md, "Every execution has an attempt record").
"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pymongo
import pytest

from clients.errors import WtmError
from clients.sdk import Client
from services.localstack import Cluster
from services.localstack.processes import Child
from tests.conftest import shared_file
from tests.integration.ledger_fleet import Fleet, register_probe
from tests.integration.test_fault_suite import JOURNAL_TASK, PIPELINE, Execution, executions

pytestmark = pytest.mark.slow

FAULTS = 8  # 2-4 s apart; each lasts up to 6 s: about 40 s in all, at most 80
SOAK = {
    "pipeline_id": "soak_chain",
    "steps": [{**s, "task_id": "soak_probe"} for s in PIPELINE["steps"]],  # type: ignore[attr-defined]
}


class Soak:
    """The fleet, the runs submitted to it, and the faults done to it."""

    def __init__(self, fleet: Fleet, journal: Path, seed: int) -> None:
        self.fleet = fleet
        self.journal = journal
        self.random = random.Random(seed)
        self.schedulers = [fleet.start_scheduler(), fleet.start_scheduler()]
        self.executors: list[Child] = []
        self.count = 0
        for _ in range(3):
            self.start_executor()
        self.submitted: dict[str, str] = {}  # tag -> run id
        self.cancelled: set[str] = set()
        self.errors: list[str] = []
        self.faults: list[str] = []
        self.stop = threading.Event()
        self.request_ids = f"soak-{uuid.uuid4().hex[:8]}"  # this soak's own

    def start_executor(self) -> None:
        given = self.schedulers[:: self.random.choice((1, -1))]  # either one first
        self.count += 1
        self.executors.append(self.fleet.start_executor(",".join(given), f"soak-{self.count}"))

    def submit(self) -> None:
        """Runs through both schedulers until told to stop; a few cancelled at random."""
        clients = [self.fleet.client(a, retry_seconds=30) for a in self.schedulers]
        chooser = random.Random(self.random.random())  # this thread's own
        try:
            while not self.stop.is_set():
                for c in clients:
                    tag = f"t{len(self.submitted)}"
                    seconds = round(chooser.uniform(0.2, 1.2), 2)
                    document = {"tag": tag, "journal": str(self.journal), "seconds": seconds}
                    try:
                        run = c.submit(
                            pipeline="soak_chain",
                            input=document,
                            request_id=f"{self.request_ids}-{tag}",
                        )
                        self.submitted[tag] = run.run_id
                        if chooser.random() < 0.05:
                            victim = chooser.choice(list(self.submitted))
                            c.cancel(self.submitted[victim], reason="soak")
                            self.cancelled.add(victim)
                    except WtmError as exc:
                        self.errors.append(f"{tag}: {exc!r}")
                time.sleep(0.4)
        finally:
            for c in clients:
                c.close()

    def fault(self) -> None:
        kind = self.random.choice(("kill executor", "freeze executor", "kill", "freeze"))
        if kind == "kill executor":
            victim = self.random.choice(self.executors)
            victim.proc.kill()
            victim.proc.wait(10)
            self.executors.remove(victim)
            self.fleet.group.children.remove(victim)
            self.start_executor()
        elif kind == "freeze executor":
            self.freeze(self.random.choice(self.executors), self.random.uniform(0.5, 6))
        elif kind == "kill":
            address = self.random.choice(self.schedulers)
            self.fleet.kill_scheduler(address)
            time.sleep(self.random.uniform(0, 2))
            self.fleet.start_scheduler(address)
        else:
            address = self.random.choice(self.schedulers)
            self.freeze(self.fleet.schedulers[address], self.random.uniform(0.5, 4))
        self.faults.append(kind)

    @staticmethod
    def freeze(child: Child, seconds: float) -> None:
        child.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            child.proc.send_signal(signal.SIGCONT)


def test_faults_in_a_row_lose_no_run_run_no_step_twice_at_once_and_record_every_execution(
    cluster: Cluster, client: Client, tmp_path: Path, shared_tmp: Path
) -> None:
    register_probe(client, tmp_path, "soak_probe", JOURNAL_TASK, timeout=60, max_retries=20)
    client.register_pipelines(SOAK)
    fleet = Fleet(cluster, tmp_path, lease_seconds=3)
    fleet.env["WTM_RECOVERY_SCAN_SECONDS"] = "2"
    try:
        soak = Soak(fleet, shared_file(shared_tmp, "journal.txt"), seed=63)
        submitter = threading.Thread(target=soak.submit, daemon=True)
        submitter.start()
        for _ in range(FAULTS):
            time.sleep(soak.random.uniform(2, 4))
            soak.fault()
        soak.stop.set()
        submitter.join(60)
        assert not submitter.is_alive() and not soak.errors, soak.errors
        with fleet.client(soak.schedulers[0], retry_seconds=30) as c:
            ends = {t: c.wait(r, timeout=120) for t, r in soak.submitted.items()}
        check(fleet, soak, ends, executions(soak.journal))
    finally:
        fleet.group.stop_all()


def check(fleet: Fleet, soak: Soak, ends: dict[str, Any], ran: dict[Any, list[Execution]]) -> None:
    assert len(ends) >= 60, (len(ends), soak.faults)
    unfinished = {
        t: (r.state, r.error)
        for t, r in ends.items()
        if r.state != "COMPLETED" and not (t in soak.cancelled and r.state == "CANCELLED")
    }
    assert not unfinished, (unfinished, soak.faults)
    for (tag, step), found in ran.items():
        ordered = sorted(found, key=lambda e: e["start"])
        for before, after in zip(ordered, ordered[1:], strict=False):
            assert before["last"] <= after["start"], (tag, step, ordered, soak.faults)
    run_ids = [r.run_id for r in ends.values()]
    with pymongo.MongoClient(fleet.cluster.endpoints.mongodb_uri) as mongo:  # type: ignore[union-attr]
        db = mongo[fleet.env["WTM_MONGODB_DATABASE"]]
        deadline = time.monotonic() + 30
        while True:  # the history is written behind, and converges on what happened
            states = {d["_id"]: d["state"] for d in db["runs"].find({"_id": {"$in": run_ids}})}
            records: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
            for d in db["step_runs"].find({"run_id": {"$in": run_ids}}):
                records[(d["run_id"], d["step_id"])].append(d)
            differ = {r.run_id: (r.state, states.get(r.run_id)) for r in ends.values()}
            differ = {k: v for k, v in differ.items() if v[0] != v[1]}
            unrecorded = [
                (tag, step, len(found), len(records[(soak.submitted[tag], step)]))
                for (tag, step), found in ran.items()
                if len(records[(soak.submitted[tag], step)]) < len(found)
            ]
            if (not differ and not unrecorded) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert not differ, differ
    assert not unrecorded, f"executions without an attempt record: {unrecorded}"
    for r in ends.values():
        if r.state == "COMPLETED":
            for step in ("first", "second"):
                docs = records[(r.run_id, step)]
                counted = [d for d in docs if d["state"] == "COMPLETED" and not d.get("superseded")]
                assert len(counted) == 1, (
                    r.run_id,
                    step,
                    [(d["attempt"], d["state"]) for d in docs],
                )
