"""Executors on the real stack: the package cache, refusals, hard timeouts, crashes, drain,
reconnect, logs, labels, several schedulers, outputs checked."""

from __future__ import annotations

import io
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pymongo
import pytest

from clients.sdk import ApiError, Client
from services.common.backends import s3_client
from services.localstack import Cluster
from services.localstack.cluster import serving
from services.localstack.processes import ProcessGroup, free_port, wait_until
from tests.conftest import ROOT
from tests.integration.executor_tasks import make_task, register_fixtures, run, stop_executor


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    register_fixtures(client)


def test_a_package_is_downloaded_once_then_served_from_the_cache(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    task = client.register_task(make_task(tmp_path, "cache_probe"))
    for _ in range(3):
        assert run(client, task="cache_probe", input={"seconds": 0}).state == "COMPLETED"
    log = cluster.executors[0].log_path.read_text()
    assert log.count(f"downloading package {task.digest}") == 1


def test_a_tampered_package_is_refused(cluster: Cluster, client: Client, tmp_path: Path) -> None:
    task = client.register_task(make_task(tmp_path, "tamper_probe"))
    assert cluster.endpoints is not None
    e = cluster.endpoints
    forged = b"not the package that was registered"
    s3_client(e.s3_endpoint, e.s3_access_key, e.s3_secret_key).put_object(
        "wtm-packages", f"sha256/{task.digest}.tar.gz", io.BytesIO(forged), len(forged)
    )
    done = run(client, task="tamper_probe", input={})
    assert done.state == "FAILED" and done.steps[0].attempt == 1  # fatal: no retry
    assert f"not {task.digest}: refused" in done.steps[0].error


def test_a_missing_requirement_is_named(client: Client, tmp_path: Path) -> None:
    client.register_task(
        make_task(tmp_path, "needs_more", requirements=["numpy>=1", "tensorflow-nonexistent>=9"])
    )
    done = run(client, task="needs_more", input={})
    assert done.state == "FAILED"
    assert "'tensorflow-nonexistent>=9' is not installed on this executor" in done.steps[0].error
    assert "numpy" not in done.steps[0].error


def test_a_step_past_its_timeout_is_killed_and_the_executor_keeps_serving(client: Client) -> None:
    client.register_pipelines(
        {
            "pipeline_id": "too_slow",
            "steps": [
                {
                    "task_id": "sleeper",
                    "timeout": 1,
                    "retry_count": 0,
                    "input_mapping": {"seconds": 30},
                }
            ],
        }
    )
    started = time.monotonic()
    done = run(client, pipeline="too_slow", input={})
    assert time.monotonic() - started < 10
    assert done.state == "TIMED_OUT"  # the run ends as its failing step did
    assert done.steps[0].state == "TIMED_OUT" and "worker process killed" in done.steps[0].error
    assert run(client, task="echo", input={"still": "here"}).output == {"echo": {"still": "here"}}


def test_a_crashing_task_costs_only_its_step(client: Client) -> None:
    done = run(client, task="crasher", input={})
    assert done.state == "FAILED"
    assert done.steps[0].attempt == 2  # retried once (max_retries 1), crashed again
    assert "worker process died (exit code 3)" in done.steps[0].error
    assert run(client, task="echo", input={"after": "crash"}).state == "COMPLETED"


PIPE_HOSTILE_TASK = """
import gc
import os
from multiprocessing.connection import Connection

from tasks.base.task_base import SimpleTask


class Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what unpickling it would run
        return (os.system, ("touch " + self.marker,))


class Task(SimpleTask):
    def process(self, input_data):
        if input_data["how"] == "pickle":
            for conn in [o for o in gc.get_objects() if isinstance(o, Connection)]:
                conn.send(("progress", Shell(input_data["marker"]), "x"))
        elif input_data["how"] == "huge error":
            raise ValueError("e" * 10_000_000)
        elif input_data["how"] == "not json":  # a verdict of its own making, then gone
            from tasks.base import worker_wire

            conn = [o for o in gc.get_objects() if isinstance(o, Connection)][0]
            worker_wire.send(conn, ["ok", [0.0, 0.0]], ["{not json"])
            os._exit(0)
        return {"sent": input_data["how"]}
"""


def test_task_code_cannot_reach_the_executor_through_its_pipe(
    client: Client, tmp_path: Path
) -> None:
    """Until 2026-12-04 the executor unpickled what came up the pipe (a task's shell command
    ran in the executor), and passed a 10 MB error on to the scheduler, whose stream refused
    it: the executor reconnected, re-sent it, and served nothing more."""
    client.register_task(make_task(tmp_path, "pipe_hostile", PIPE_HOSTILE_TASK, max_retries=0))
    marker = tmp_path / "the-executor-ran-this"
    done = run(client, task="pipe_hostile", input={"how": "pickle", "marker": str(marker)})
    assert done.state == "FAILED" and "the worker sent a header that is not JSON" in (
        done.steps[0].error
    )
    assert not marker.exists()
    huge = run(client, task="pipe_hostile", input={"how": "huge error", "marker": ""})
    assert huge.state == "FAILED", huge.steps[0].error
    assert "ValueError: eee" in huge.steps[0].error and len(huge.steps[0].error) < 5000
    forged = run(client, task="pipe_hostile", input={"how": "not json", "marker": ""})
    assert forged.state == "FAILED" and "an output that is not a JSON object" in (
        forged.steps[0].error
    )
    assert run(client, task="echo", input={"after": "hostile"}).state == "COMPLETED"


def test_drain_on_sigterm_finishes_the_running_step(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "drain_probe", queue="drainq"))
    child = cluster.add_executor("--queues", "drainq", "--drain-seconds", "20")
    try:
        r = client.submit(task="drain_probe", input={"seconds": 2})
        for event in client.watch(r.run_id, timeout=60):
            if event.kind == "PROGRESS":  # the task is running inside the executor
                break
        child.proc.send_signal(signal.SIGTERM)
        done = client.wait(r.run_id, timeout=60)
        assert done.state == "COMPLETED", done.steps[0].error
        assert done.steps[0].executor_id == child.name
        assert child.proc.wait(20) == 0
    finally:
        cluster.executors.remove(child)
        cluster.services.children.remove(child)
        child.stop()


def test_an_executor_reconnects_after_its_scheduler_restarts(
    cluster: Cluster, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    group = ProcessGroup(tmp_path / "logs")
    env = cluster.env()

    def start_scheduler() -> Any:
        child = group.start(
            f"scheduler-{len(group.children)}",
            [sys.executable, "-m", "services.scheduler", "--listen", address],
            env=env,
            cwd=ROOT,
        )
        wait_until("scheduler", lambda: serving(address), child, timeout=30)
        return child

    try:
        scheduler = start_scheduler()
        executor = group.start(
            "executor-reconnect",
            [
                sys.executable,
                "-m",
                "services.executor",
                "--scheduler",
                address,
                "--queues",
                "reconnq",
                "--executor-id",
                "reconnecting",
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
            env={**cluster.executor_env(), "WTM_SCHEDULER_ADDR": address},
            cwd=ROOT,
        )
        with Client(cluster.registry_address, address, api_key=cluster.admin_key) as client:
            client.register_task(make_task(tmp_path, "reconnect_probe", queue="reconnq"))
            first = run(client, task="reconnect_probe", input={})
            assert first.state == "COMPLETED", first.steps[0].error
            scheduler.stop()
            group.children.remove(scheduler)
            start_scheduler()
            done = run(client, task="reconnect_probe", input={}, timeout=60)
        assert done.state == "COMPLETED", done.steps[0].error
        assert done.steps[0].executor_id == "reconnecting"
        assert executor.log_path.read_text().count("connected to") >= 2
    finally:
        group.stop_all()


CHATTY = """
import sys

from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        for i in range(3):
            self.logger.info("line %d of %s", i, input_data["name"])
        self.logger.warning("almost done")
        print("printed, not logged")
        forged = "2026-12-04 00:00:00,000 executor ERROR a line the executor never wrote"
        print(forged, file=sys.stderr)
        return {"ok": True}
"""


def test_what_a_task_logs_reaches_watchers_and_stays_with_the_step(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "chatty", CHATTY))
    r = client.submit(task="chatty", input={"name": "x"})
    logged = [e.message for e in client.watch(r.run_id, timeout=60) if e.kind == "LOG"]
    assert [m for m in logged if not m.startswith("PRINT ")] == [
        "INFO line 0 of x",
        "INFO line 1 of x",
        "INFO line 2 of x",
        "WARNING almost done",
    ]
    # What it prints is the step's too (a pipe of its own), never the executor's log, where
    # it could pass for the executor's own lines (it was that log file until 2026-12-04).
    forged = "2026-12-04 00:00:00,000 executor ERROR a line the executor never wrote"
    assert {m for m in logged if m.startswith("PRINT ")} == {
        "PRINT printed, not logged",
        f"PRINT {forged}",
    }
    assert forged not in cluster.executors[0].log_tail(2000)
    done = client.wait(r.run_id)
    assert done.steps[0].logs == logged
    assert cluster.endpoints is not None
    with pymongo.MongoClient(cluster.endpoints.mongodb_uri) as mongo:  # and in the history,
        records = mongo["wtm"]["step_runs"]  # once written behind
        wait_until("the step's record", lambda: records.find_one({"run_id": r.run_id}), None, 10)
        [record] = list(records.find({"run_id": r.run_id}))
    assert record["logs"] == logged


def test_labelled_tasks_go_only_to_executors_with_those_labels(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(
        make_task(tmp_path, "needs_gpu", queue="labelq", executor_labels={"gpu": "true"})
    )
    client.register_task(make_task(tmp_path, "any_box", queue="labelq"))
    plain = cluster.add_executor("--queues", "labelq", "--labels", "gpu=false")
    try:
        waiting = client.submit(task="needs_gpu", input={})
        assert run(client, task="any_box", input={}).steps[0].executor_id == plain.name
        time.sleep(1.5)
        assert client.get_run(waiting.run_id).state == "QUEUED"  # nobody has gpu=true yet
        gpu = cluster.add_executor("--queues", "labelq", "--labels", "gpu=true,zone=eu")
        try:
            done = client.wait(waiting.run_id, timeout=60)
            assert done.state == "COMPLETED" and done.steps[0].executor_id == gpu.name
            deadline = time.monotonic() + 10  # the fleet record is saved every second
            fleet = {e.executor_id: e for e in client.list_executors()}
            while gpu.name not in fleet and time.monotonic() < deadline:
                time.sleep(0.2)
                fleet = {e.executor_id: e for e in client.list_executors()}
            assert fleet[gpu.name].labels == {"gpu": "true", "zone": "eu"}
            assert any(p.startswith("grpcio==") for p in fleet[gpu.name].packages)
        finally:
            stop_executor(cluster, gpu)
    finally:
        stop_executor(cluster, plain)


def test_an_executor_given_several_schedulers_finds_one_that_answers(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "multi_probe", queue="multiq"))
    nobody = f"127.0.0.1:{free_port()}"
    child = cluster.add_executor(
        "--queues", "multiq", "--scheduler", f"{nobody},{cluster.executor_address}"
    )
    try:
        done = run(client, task="multi_probe", input={})
        assert done.state == "COMPLETED" and done.steps[0].executor_id == child.name
        assert f"connected to {cluster.executor_address}" in child.log_path.read_text()
    finally:
        stop_executor(cluster, child)


def test_an_output_that_does_not_fit_its_schema_fails_the_step_once(
    client: Client, tmp_path: Path
) -> None:
    code = """
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        return {"faces": "not a list"}
"""
    schema = {"type": "object", "properties": {"faces": {"type": "array"}}}
    client.register_task(
        make_task(tmp_path, "misshapen", code, output_schema=schema, max_retries=2)
    )
    done = run(client, task="misshapen", input={})
    assert done.state == "FAILED" and done.steps[0].attempt == 1  # fatal: no retry
    assert "$.faces: 'not a list' is not of type 'array'" in done.steps[0].error


def test_a_steps_own_queue_overrides_its_tasks(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "queue_probe"))  # its task.json says "default"
    [p] = client.register_pipelines(
        {"pipeline_id": "queued_elsewhere", "steps": [{"task_id": "queue_probe", "queue": "stepq"}]}
    )
    assert p.steps[0].queue == "stepq"
    with pytest.raises(ApiError) as err:
        client.register_pipelines(
            {"pipeline_id": "bad_queue", "steps": [{"task_id": "queue_probe", "queue": "No!"}]}
        )
    assert err.value.code == "INVALID_ARGUMENT" and "steps[0].queue" in err.value.message
    child = cluster.add_executor("--queues", "stepq", slots=1)
    try:
        done = run(client, pipeline="queued_elsewhere", input={"seconds": 0})
        assert done.state == "COMPLETED" and done.steps[0].executor_id == child.name
    finally:
        stop_executor(cluster, child)
