"""Executors on the real stack: package cache, refusals, hard timeouts, crashes, drain,
reconnect."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pymongo
import pytest

from clients.sdk import ApiError, Client
from common.artifacts import parse_uri
from services.common.backends import s3_client
from services.localstack import Cluster
from services.localstack.cluster import serving
from services.localstack.processes import ProcessGroup, free_port, wait_until
from tests.conftest import ROOT
from tests.waiting import eventually
from tests.wheels import build_sdist, build_wheel

FIXTURES = ROOT / "tests" / "fixtures" / "tasks"

SLEEP_TASK = """
import time
import zipfile
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        self.report_progress(0.0, "started")
        time.sleep(float(input_data.get("seconds", 0)))
        return {"slept": input_data.get("seconds", 0)}
"""


def make_task(tmp: Path, task_id: str, code: str = SLEEP_TASK, **manifest: Any) -> Path:
    d = tmp / task_id
    d.mkdir(parents=True)
    doc = {"task_id": task_id, "version": "1.0.0", "category": "testing", **manifest}
    (d / "task.json").write_text(json.dumps(doc))
    (d / "task.py").write_text(code)
    return d


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    for d in sorted(FIXTURES.iterdir()):
        client.register_task(d)


def run(client: Client, timeout: float = 60, **submit: Any) -> Any:
    return client.wait(client.submit(**submit).run_id, timeout=timeout)


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


USES_PROBE_LIB = """
import wtm_probe_lib
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        return {"value": wtm_probe_lib.VALUE, "from": wtm_probe_lib.__file__}
"""


def stop_executor(cluster: Cluster, child: Any) -> None:
    cluster.executors.remove(child)
    cluster.services.children.remove(child)
    child.stop()


def installing_executor(cluster: Cluster, wheels: Path, queue: str) -> Any:
    """An executor of ``queue`` that installs missing requirements, from ``wheels`` only."""
    cluster.extra_env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    try:
        return cluster.add_executor("--queues", queue, "--install-requirements", "true")
    finally:
        del cluster.extra_env["PIP_NO_INDEX"], cluster.extra_env["PIP_FIND_LINKS"]


def test_missing_requirements_are_installed_once_into_the_cache_when_allowed(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheelhouse"
    build_wheel(wheels, "wtm-probe-lib", "1.0", "VALUE = 42\n")
    client.register_task(
        make_task(
            tmp_path,
            "probe_lib_user",
            USES_PROBE_LIB,
            queue="installq",
            requirements=["wtm-probe-lib==1.0", "numpy"],
        )
    )
    client.register_task(
        make_task(tmp_path, "unfindable_user", queue="installq", requirements=["wtm-absent-lib>=1"])
    )
    child = installing_executor(cluster, wheels, "installq")
    try:
        first = run(client, task="probe_lib_user", input={}, timeout=120)
        second = run(client, task="probe_lib_user", input={})
        assert first.state == second.state == "COMPLETED", first.steps[0].error
        assert first.output["value"] == 42
        assert "executor-" in first.output["from"] and "/requirements/" in first.output["from"]
        assert child.log_path.read_text().count("installing wtm-probe-lib==1.0") == 1
        failed = run(client, task="unfindable_user", input={}, timeout=120)
        assert failed.state == "FAILED" and failed.steps[0].attempt == 1
        assert "could not install wtm-absent-lib>=1" in failed.steps[0].error
    finally:
        stop_executor(cluster, child)


USES_LIB = """
import os

import {module}
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        return {{"pid": os.getpid(), "from": {module}.__file__}}
"""


def test_installed_requirements_keep_to_their_cap_and_an_install_over_it_is_refused(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """Every set of requirements any task version named was kept for good: a team could
    fill the executor's volume. Over ``--requirements-cache-max-mb`` the least recently used
    set goes (its idle workers with it); one bigger than the cap is refused."""
    wheels = tmp_path / "wheelhouse"
    for name, kb in (("a", 600), ("b", 600), ("huge", 1500)):
        build_wheel(wheels, f"wtm-lib-{name}", "1.0", "", data=os.urandom(kb * 1024))
        code = USES_LIB.format(module=f"wtm_lib_{name}")
        requirements = [f"wtm-lib-{name}==1.0"]
        client.register_task(
            make_task(tmp_path, f"lib_{name}_user", code, queue="capq", requirements=requirements)
        )
    cluster.extra_env["WTM_REQUIREMENTS_CACHE_MAX_MB"] = "1"
    try:
        child = installing_executor(cluster, wheels, "capq")
    finally:
        del cluster.extra_env["WTM_REQUIREMENTS_CACHE_MAX_MB"]
    try:
        first = run(client, task="lib_a_user", input={}, timeout=120)
        assert first.state == "COMPLETED", first.steps[0].error
        assert run(client, task="lib_b_user", input={}, timeout=120).state == "COMPLETED"
        cached = cluster.root / f"{child.name}-cache" / "requirements"
        [kept] = [p for p in cached.iterdir() if not p.name.startswith(".")]
        assert (kept / "wtm_lib_b").is_dir()  # 1 MiB holds one set: a's went
        log = child.log_path.read_text()
        assert "evicted requirements" in log
        again = run(client, task="lib_a_user", input={}, timeout=120)
        assert again.state == "COMPLETED", again.steps[0].error
        # Installed afresh, in a new worker: the idle one that had a's set went with it.
        assert child.log_path.read_text().count("installing wtm-lib-a==1.0") == 2
        assert again.output["pid"] != first.output["pid"]
        huge = run(client, task="lib_huge_user", input={}, timeout=120)
        assert huge.state == "FAILED" and huge.steps[0].attempt == 1
        assert "took over 1 MiB of disk" in huge.steps[0].error
        assert "WTM_REQUIREMENTS_CACHE_MAX_MB" in huge.steps[0].error
        assert not any("huge" in str(p) for p in cached.rglob("*"))
    finally:
        stop_executor(cluster, child)


def test_a_requirement_is_installed_from_a_wheel_only_never_built_here(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """A task's requirements are as untrusted as its code: building a source distribution
    runs code it brings, and pip ran it in the executor, as the executor's user (root in
    the local stack), with the executor's environment."""
    marker = tmp_path / "built-in-the-executor"
    backend = f"import os\nopen({str(marker)!r}, 'w').write(os.environ.get('WTM_API_KEY', '-'))\n"
    wheels = tmp_path / "wheelhouse"
    build_sdist(wheels, "wtm-sdist-only", "1.0", backend)
    client.register_task(
        make_task(tmp_path, "sdist_user", queue="sdistq", requirements=["wtm-sdist-only==1.0"])
    )
    child = installing_executor(cluster, wheels, "sdistq")
    try:
        failed = run(client, task="sdist_user", input={}, timeout=120)
        assert failed.state == "FAILED", failed.steps[0].error
        assert "could not install wtm-sdist-only==1.0" in failed.steps[0].error
        assert not marker.exists(), marker.read_text()
    finally:
        stop_executor(cluster, child)


def test_the_package_cache_keeps_to_its_cap_evicting_the_least_recently_used(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    digests = []
    for i in range(3):  # three packages of ~600 KB each (random bytes do not compress)
        d = make_task(tmp_path, f"bulky_{i}", queue="bulkyq")
        (d / "weights.bin").write_bytes(os.urandom(600 * 1024))
        digests.append(client.register_task(d).digest)
    child = cluster.add_executor("--queues", "bulkyq", "--cache-max-mb", "1")
    try:
        for i in range(3):
            assert run(client, task=f"bulky_{i}", input={}).state == "COMPLETED"
        packages = cluster.root / f"{child.name}-cache" / "packages"
        kept = {p.name for p in packages.iterdir() if not p.name.startswith(".")}
        # 1 MiB holds one 600 KB package: each new one evicts the one used before it.
        assert kept == {digests[2]}
        log = child.log_path.read_text()
        assert f"evicted package {digests[0]}" in log and f"evicted package {digests[1]}" in log
        # An evicted package comes back on demand.
        assert run(client, task="bulky_0", input={}).state == "COMPLETED"
    finally:
        stop_executor(cluster, child)


ARTIFACT_READER = """
import hashlib

from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        path = self.context.local_path(input_data["blob"], "blob")
        return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
"""


def test_the_artifact_cache_keeps_to_its_cap_least_recently_used_first(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """Every step's input artifacts were kept for good: a long-lived executor filled its
    volume. Over ``--artifact-cache-max-mb`` the least recently used go."""
    client.register_task(make_task(tmp_path, "artifact_reader", ARTIFACT_READER, queue="artq"))
    blobs = [os.urandom(600 * 1024) for _ in range(3)]  # random bytes do not compress
    uris = [client.upload_artifact_data(f"blob{i}.bin", b) for i, b in enumerate(blobs)]
    child = cluster.add_executor("--queues", "artq", "--artifact-cache-max-mb", "1", slots=1)
    try:
        for uri, blob in [*zip(uris, blobs, strict=True), (uris[0], blobs[0])]:
            done = run(client, task="artifact_reader", input={"blob": uri})
            assert done.state == "COMPLETED", done.steps[0].error
            assert done.output["sha256"] == hashlib.sha256(blob).hexdigest()
        cached = cluster.root / f"{child.name}-cache" / "artifacts" / "default"
        # 1 MiB holds one: each new one evicted the one before; the first came back on demand.
        assert {p.name for p in cached.iterdir()} == {parse_uri(uris[0])[0]}
    finally:
        stop_executor(cluster, child)


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
