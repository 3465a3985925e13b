"""Dynamic batching on the real stack (issue 18): steps of one task version that are ready at
once, from different runs, are leased together and run in one ``process_batch`` call; each
keeps its own run, attempt, lineage ids and retries."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.batching import example_bench
from clients.scaffold import create_task
from clients.sdk import Client
from services.localstack import Cluster
from services.localstack.cluster import Child
from tasks.base.runtime import load_task, run_once
from tests.conftest import ROOT
from tests.integration.executor_tasks import make_task
from tests.waiting import eventually

BATCH_TASK = """
import os
import time
from tasks.base.task_base import FatalError, SimpleTask

def one(data, size, call, output_id):
    if data.get("explode") and size == 1:  # alone, it fails as its call would
        raise RuntimeError("the whole call failed")
    if data.get("fail"):
        raise ValueError(f"item {data['n']} refused")
    if data.get("fatal"):
        raise FatalError(f"item {data['n']} is hopeless")
    return {"n": data["n"], "size": size, "call": call, "pid": os.getpid(),
            "output_id": output_id}

class Task(SimpleTask):
    def setup(self):
        self.calls = 0

    def process(self, input_data):  # a step leased alone
        return one(input_data, 1, -1, self.context.output_id)

    def process_batch(self, inputs):
        self.calls += 1
        time.sleep(max(d.get("sleep", 0) for d in inputs))
        if any(d.get("explode") for d in inputs):
            raise RuntimeError("the whole call failed")
        out = []
        for data, meta in zip(inputs, self.context.batch):
            try:
                out.append(one(data, len(inputs), self.calls, meta["output_id"]))
            except Exception as exc:
                out.append(exc)
        return out
"""


@pytest.fixture(scope="module")
def batcher(cluster: Cluster, client: Client, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("batching")
    client.register_task(
        make_task(
            tmp,
            "batcher",
            BATCH_TASK,
            queue="batchq",
            max_retries=1,
            batching={"max_batch_size": 8},
        )
    )
    client.register_task(
        make_task(
            tmp,
            "waiter",
            BATCH_TASK,
            queue="waitq",
            batching={"max_batch_size": 4, "max_wait_ms": 1500},
        )
    )


@pytest.fixture
def one_slot(cluster: Cluster, batcher: Any) -> Iterator[Any]:
    """Starts an executor of one slot on the batching queues, when the test says."""
    started: list[Child] = []

    def start() -> Child:
        child = cluster.add_executor("--queues", "batchq,waitq", slots=1)
        started.append(child)
        return child

    yield start
    for child in started:
        cluster.executors.remove(child)
        cluster.services.children.remove(child)
        child.stop()


def submit_all(client: Client, inputs: list[dict[str, Any]], task: str = "batcher") -> list[str]:
    return [client.submit(task=task, input=i).run_id for i in inputs]


def test_steps_ready_at_once_run_in_one_call_each_with_its_own_run(
    client: Client, one_slot: Any
) -> None:
    run_ids = submit_all(client, [{"n": n} for n in range(12)])  # queued: no executor yet
    child = one_slot()
    runs = [client.wait(r, timeout=60) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * 12
    outputs = [r.output for r in runs]
    assert [o["n"] for o in outputs] == list(range(12))  # each run got its own output back
    # One slot, up to 8 per call: 12 ready steps take two calls (8 and 4), in one process.
    assert sorted(o["size"] for o in outputs) == [4] * 4 + [8] * 8
    assert len({o["call"] for o in outputs}) == 2 and len({o["pid"] for o in outputs}) == 1
    for r in runs:
        step = r.steps[0]
        assert step.executor_id == child.name and step.attempt == 1
        assert r.output["output_id"] == step.output_id  # the lineage id of its own step


def test_a_failed_item_fails_alone_and_retries_by_its_own_policy(
    client: Client, one_slot: Any
) -> None:
    inputs = [{"n": 0}, {"n": 1, "fail": True}, {"n": 2}, {"n": 3, "fatal": True}]
    run_ids = submit_all(client, inputs)
    one_slot()
    runs = {i: client.wait(r, timeout=60) for i, r in enumerate(run_ids)}
    assert runs[0].state == runs[2].state == "COMPLETED"
    assert runs[0].output["size"] == 4  # the four were one call
    failed, fatal = runs[1].steps[0], runs[3].steps[0]
    assert runs[1].state == "FAILED" and failed.attempt == 2  # max_retries 1: tried twice
    assert "ValueError: item 1 refused" in failed.error
    assert runs[3].state == "FAILED" and fatal.attempt == 1  # FatalError: no retry
    assert "item 3 is hopeless" in fatal.error
    assert runs[0].steps[0].attempt == runs[2].steps[0].attempt == 1


def test_a_call_that_raises_fails_every_step_in_it(client: Client, one_slot: Any) -> None:
    run_ids = submit_all(client, [{"n": 0}, {"n": 1, "explode": True}, {"n": 2}])
    one_slot()
    runs = [client.wait(r, timeout=60) for r in run_ids]
    # Every step's first attempt failed with the call (n=0 and n=2 have nothing wrong with
    # them), and each was retried by its own policy (max_retries 1).
    assert [r.steps[0].attempt for r in runs] == [2, 2, 2]
    assert runs[1].state == "FAILED"
    assert "RuntimeError: the whole call failed" in runs[1].steps[0].error
    for r in (runs[0], runs[2]):  # retried with it again (failed), or alone (completed)
        assert r.state == "COMPLETED" or "the whole call failed" in r.steps[0].error


def test_a_short_batch_waits_up_to_max_wait_for_more(client: Client, one_slot: Any) -> None:
    one_slot()
    # warm: the worker process is started and set up before the timing matters
    assert client.wait(client.submit(task="waiter", input={"n": -1}).run_id, 60).output["size"]
    first = client.submit(task="waiter", input={"n": 0}).run_id
    later = submit_all(client, [{"n": n} for n in (1, 2, 3)], task="waiter")
    runs = [client.wait(r, timeout=60) for r in [first, *later]]
    assert [r.state for r in runs] == ["COMPLETED"] * 4
    # The first waited (max_wait_ms 1.5 s) and the three submitted after it joined its call.
    assert [r.output["size"] for r in runs] == [4] * 4
    assert len({r.output["call"] for r in runs}) == 1
    started = time.monotonic()
    lone = client.wait(client.submit(task="waiter", input={"n": 9}).run_id, timeout=60)
    assert lone.output["size"] == 1  # a batch that never fills goes once its wait is over
    assert time.monotonic() - started >= 1.0


def test_the_speech_example_batches_recordings_of_different_runs(client: Client) -> None:
    """The shipped batchable example on the stack's own executors: runs submitted together
    share model calls, and each gets the speech of its own recording."""
    client.register_task(ROOT / "tasks" / "examples" / "speech_activity")
    speech = client.upload_artifact(ROOT / "tasks" / "data" / "speech.wav")
    spans = json.loads((ROOT / "tasks" / "data" / "speech.json").read_text())["speech"]
    inputs = [{"audio_path": speech}] * 6 + [{"audio_path": speech, "threshold": 0.95}]
    _, run_ids = client.submit_many(inputs, task="speech_activity")
    runs = [client.wait(r, timeout=120) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * 7, runs[0].error
    assert max(r.output["batch_size"] for r in runs) > 1
    for r in runs:
        segments = r.output["segments"]
        assert len(segments) == 2 and abs(segments[0]["start_seconds"] - spans[0][0]) < 0.15
        assert r.output["threshold"] == r.steps[0].output["threshold"]
    assert runs[-1].output["threshold"] == 0.95 and runs[0].output["threshold"] == 0.5


def test_the_digit_example_batches_images_of_different_runs(client: Client, tmp_path: Path) -> None:
    """The forest example on the stack's own executors: images of runs submitted together
    share the forest's calls, and each run gets the digit of its own image."""
    example = ROOT / "tasks" / "examples" / "digit_recognition"
    client.register_task(example)
    digits = example_bench(example).held_out_images(tmp_path, 8)
    inputs = [{"image_path": client.upload_artifact(path)} for path, _ in digits]
    _, run_ids = client.submit_many(inputs, task="digit_recognition")
    runs = [client.wait(r, timeout=120) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * 8, runs[0].error
    assert max(r.output["batch_size"] for r in runs) > 1
    task = load_task(example)  # the same forest (a fixed seed), here, one image at a time
    task.setup()
    for run, (path, _) in zip(runs, digits, strict=True):
        verdict, alone = run_once(task, json.dumps({"image_path": str(path)}))
        assert verdict == "ok" and {**run.output, "batch_size": 1} == json.loads(alone)


def test_the_batching_template_batches_as_created_and_a_misfit_fails_alone(
    client: Client, tmp_path: Path
) -> None:
    """``wtm task create --template batching`` as it comes: only ``process_batch``, runs of
    it submitted together share calls, and an input of the wrong size fails by itself."""
    path = create_task("my_batcher", "batching", tmp_path)
    client.register_task(path)
    inputs = [{"features": [n, n]} for n in range(11)] + [{"features": [1, 2, 3]}]
    _, run_ids = client.submit_many(inputs, task="my_batcher")
    runs = [client.wait(r, timeout=120) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * 11 + ["FAILED"]
    labels = [r.output["label"] for r in runs[:11]]
    assert labels == ["small"] * 6 + ["large"] * 5  # (5, 5) is a tie: the first centroid
    assert max(r.output["batch_size"] for r in runs[:11]) > 1
    assert "must have 2 numbers, got 3" in runs[-1].steps[0].error


def test_a_call_takes_one_slot_however_many_steps_it_has(client: Client, one_slot: Any) -> None:
    child = one_slot()
    run_ids = submit_all(client, [{"n": n, "sleep": 2} for n in range(3)])

    def shown() -> Any:
        for e in client.list_executors():
            if e.executor_id == child.name and e.in_flight == 3:
                return e
        return None

    e = eventually(shown, timeout=30, what="the executor running the call")
    assert (e.busy_slots, e.slots, len(e.running_steps)) == (1, 1, 3)
    assert [client.wait(r, 60).output["size"] for r in run_ids] == [3, 3, 3]


def test_cancelling_one_run_of_a_call_leaves_the_others_running(
    client: Client, one_slot: Any
) -> None:
    """The call goes on for the steps still wanted; the cancelled one ends CANCELLED (its
    worker is not killed under the others)."""
    child = one_slot()
    run_ids = submit_all(client, [{"n": n, "sleep": 3} for n in range(3)])

    def running() -> bool:
        return any(
            e.executor_id == child.name and e.in_flight == 3 for e in client.list_executors()
        )

    eventually(running, timeout=30, what="the call running")
    client.cancel(run_ids[1])
    runs = [client.wait(r, timeout=60) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED", "CANCELLED", "COMPLETED"]
    assert runs[0].output["size"] == runs[2].output["size"] == 3
    assert runs[0].output["pid"] == runs[2].output["pid"]
