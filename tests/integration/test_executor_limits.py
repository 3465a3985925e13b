"""Workers over their limits on the real stack: memory, CPU seconds, disk; the executor
keeps serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.sdk import Client
from services.localstack import Cluster
from tests.integration.executor_tasks import make_task, register_fixtures, run, stop_executor
from tests.waiting import eventually


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    register_fixtures(client)


MEMORY_HOG = """
import time
import zipfile
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        hog = bytearray(400 * 1024 * 1024)
        for i in range(0, len(hog), 4096):
            hog[i] = 1  # touch every page, so it is really resident
        time.sleep(5)
        return {"kept": len(hog)}
"""


def test_a_worker_over_its_memory_limit_is_killed_and_the_executor_keeps_serving(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "memory_hog", MEMORY_HOG, queue="hogq"))
    client.register_task(make_task(tmp_path, "after_hog", queue="hogq"))
    child = cluster.add_executor("--queues", "hogq", "--worker-memory-mb", "200")
    try:
        done = run(client, task="memory_hog", input={})
        assert done.state == "FAILED"
        assert "over the limit of 200 MiB; worker process killed" in done.steps[0].error
        assert run(client, task="after_hog", input={"seconds": 0}).state == "COMPLETED"
    finally:
        stop_executor(cluster, child)


CPU_HOG = """
import time

from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        end, n = time.process_time() + input_data["cpu_seconds"], 0
        while time.process_time() < end:
            n += 1
        return {"spun": n}
"""


def test_a_step_over_its_cpu_seconds_is_stopped_and_a_warm_worker_counts_each_step_apart(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """WTM_WORKER_MAX_CPU_SECONDS: a step that spins past it fails naming the limit (the
    executor reads the worker's CPU time while it waits); steps under it pass, each counted
    from its own start — two of 0.6 s in a row on one warm worker under a limit of 1 s."""
    client.register_task(make_task(tmp_path, "cpu_hog", CPU_HOG, queue="cpuq"))
    child = cluster.add_executor("--queues", "cpuq", "--worker-max-cpu-seconds", "1")
    try:
        for _ in range(2):
            assert run(client, task="cpu_hog", input={"cpu_seconds": 0.6}).state == "COMPLETED"
        done = run(client, task="cpu_hog", input={"cpu_seconds": 5})
        assert done.state == "FAILED"
        assert "CPU seconds, over its limit of 1" in done.steps[0].error, done.steps[0].error
        assert run(client, task="cpu_hog", input={"cpu_seconds": 0}).state == "COMPLETED"
    finally:
        stop_executor(cluster, child)


DISK_FILLER = """
import os
import threading
import time

from tasks.base.task_base import SimpleTask

def fill(seconds):
    if not seconds:
        return
    end = time.monotonic() + seconds
    with open("fill.bin", "ab") as f:
        while time.monotonic() < end:
            f.write(b"x" * 2**20)
            f.flush()
            time.sleep(0.05)

class Task(SimpleTask):
    def process(self, input_data):
        if input_data["behind"]:  # a thread that writes on after the step has ended
            threading.Thread(target=fill, args=(input_data["seconds"],), daemon=True).start()
        else:
            fill(input_data["seconds"])
        return {"pid": os.getpid(), "cwd": os.getcwd(), "found": os.path.exists("fill.bin")}
"""


def test_a_worker_over_its_disk_limit_is_killed_and_its_files_removed(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE bounds each file a worker writes, not their sum: a task could fill the
    executor's volume (on Kubernetes its emptyDir limit then evicts the pod, every team's
    steps with it). ``resources.disk_mb`` holds the worker's directory to a total, walked
    once a second, during a step and while the worker sits idle."""
    manifest = {"queue": "diskq", "max_retries": 0, "resources": {"disk_mb": 8}}
    client.register_task(make_task(tmp_path, "disk_filler", DISK_FILLER, **manifest))
    child = cluster.add_executor("--queues", "diskq", slots=1)
    try:
        # During a step: 1 MiB every 50 ms is past 8 MiB by the first walk, a second in.
        done = run(client, task="disk_filler", input={"behind": False, "seconds": 30})
        assert done.state == "FAILED"
        error = done.steps[0].error
        assert "over its limit of 8 MiB (task.json resources.disk_mb); worker process killed" in (
            error
        )
        assert (done.ended_at - done.created_at).total_seconds() < 15  # not the 30 s of writing
        # The next step has a fresh worker and an empty directory.
        fresh = run(client, task="disk_filler", input={"behind": False, "seconds": 0})
        assert fresh.state == "COMPLETED" and fresh.output["found"] is False
        # Between steps: a thread the step left writing; the idle worker is killed and its
        # directory removed with nothing else submitted.
        left = run(client, task="disk_filler", input={"behind": True, "seconds": 30})
        assert left.state == "COMPLETED" and left.output["pid"] == fresh.output["pid"]
        workdir = Path(left.output["cwd"])
        eventually(lambda: not workdir.exists(), timeout=20, what="the idle worker's removal")
        assert "killed: the worker's files took" in child.log_tail(200)
        again = run(client, task="disk_filler", input={"behind": False, "seconds": 0})
        assert again.state == "COMPLETED" and again.output["pid"] != left.output["pid"]
    finally:
        stop_executor(cluster, child)
