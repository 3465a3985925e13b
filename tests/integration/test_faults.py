"""Faults on the real stack: an executor killed or frozen mid-step, a drain that runs out of
time, an error inside an executor slot. The session's stack has 3 s leases and 0.5 s
heartbeats, so a lapsed lease is retried within seconds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymongo
import pytest

from clients.health import assess_fleet
from clients.sdk import Client
from clients.types import ExecutorInfo
from services.localstack import Cluster
from services.localstack.processes import Child
from tests.conftest import ROOT, run_cli, shared_file
from tests.integration.executor_tasks import make_task, stop_executor, stop_executors
from tests.waiting import eventually

FIXTURES = ROOT / "tests" / "fixtures" / "tasks"

# Each execution appends "start PID T" when it begins and "end PID T" when it returns. It
# lasts "seconds", or "seconds_again" when an execution began before it (a retry, once the
# fault the test is about has been seen: the retry's own length proves nothing).
JOURNAL_TASK = """
import os
import time
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        journal = input_data["journal"]
        seconds = input_data["seconds"]
        if os.path.exists(journal) and "start" in open(journal).read():
            seconds = input_data.get("seconds_again", seconds)
        with open(journal, "a") as f:
            f.write(f"start {os.getpid()} {time.time()}\\n")
        self.report_progress(0.0, "started")
        deadline = time.time() + float(seconds)
        while time.time() < deadline:
            time.sleep(0.05)
        with open(journal, "a") as f:
            f.write(f"end {os.getpid()} {time.time()}\\n")
        return {"pid": os.getpid()}
"""


def journal(path: Path) -> list[tuple[str, int, float]]:
    if not path.exists() or not path.stat().st_size:
        return []
    return [
        (kind, int(pid), float(t))
        for kind, pid, t in (line.split() for line in path.read_text().splitlines())
    ]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent, killed, cannot reap it at once).
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


@pytest.fixture(scope="module")
def journal_task(client: Client, tmp_path_factory: pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("tasks")
    client.register_task(make_task(d, "journal", JOURNAL_TASK, queue="faultq", max_retries=2))


def no_overlap(entries: list[tuple[str, int, float]], killed_at: dict[int, float]) -> None:
    """Every execution ended (or its process died) before the next one started."""
    starts = [(pid, t) for kind, pid, t in entries if kind == "start"]
    ends = {pid: t for kind, pid, t in entries if kind == "end"}
    for (pid, _), (_, next_start) in zip(starts, starts[1:], strict=False):
        ended = ends.get(pid, killed_at.get(pid))
        assert ended is not None, f"execution in {pid} neither ended nor died"
        assert ended <= next_start, f"{pid} ran until {ended}, the retry began at {next_start}"


@pytest.mark.usefixtures("journal_task")
def test_workers_die_with_a_killed_executor_so_the_retry_never_overlaps(
    cluster: Cluster, client: Client, shared_tmp: Path
) -> None:
    log = shared_file(shared_tmp, "journal")
    first = cluster.add_executor("--queues", "faultq", slots=1)
    second = None
    try:
        r = client.submit(
            task="journal", input={"journal": str(log), "seconds": 6, "seconds_again": 0.5}
        )
        eventually(lambda: journal(log), 60, "the first execution to start")
        [(_, pid, _)] = journal(log)
        first.proc.kill()  # kill -9: no drain, no cleanup
        first.proc.wait(10)
        eventually(lambda: not alive(pid), 3, f"worker {pid} to die with its executor")
        died = time.time()
        second = cluster.add_executor("--queues", "faultq", slots=1)
        done = client.wait(r.run_id, timeout=90)
        assert done.state == "COMPLETED", done.steps[0].error
        assert done.steps[0].attempt == 2
        no_overlap(journal(log), {pid: died})
    finally:
        stop_executors(cluster, first, second)


@pytest.mark.usefixtures("journal_task")
def test_a_frozen_executor_stops_its_steps_before_their_lease_can_lapse(
    cluster: Cluster, client: Client, shared_tmp: Path
) -> None:
    """SIGSTOP: the executor is alive but silent, so only the lease fence can stop its
    worker; it must do so before the scheduler hands the step to another executor, which
    gets it, not the silent one."""
    log = shared_file(shared_tmp, "journal")
    frozen = cluster.add_executor("--queues", "faultq", slots=1)
    second = None
    try:
        r = client.submit(
            task="journal", input={"journal": str(log), "seconds": 8, "seconds_again": 0.5}
        )
        eventually(lambda: journal(log), 60, "the first execution to start")
        [(_, pid, _)] = journal(log)
        frozen.proc.send_signal(signal.SIGSTOP)
        stopped = time.time()
        second = cluster.add_executor("--queues", "faultq", slots=1)
        eventually(lambda: not alive(pid), 6, f"worker {pid} to stop at its fence")
        died = time.time()
        assert died - stopped < 3.0  # the lease (3 s) would lapse after this
        done = client.wait(r.run_id, timeout=90)
        assert done.state == "COMPLETED", done.steps[0].error
        assert done.steps[0].executor_id == second.name
        # Its retry went to the live executor at once: the frozen one, its stream still
        # open, was given it three more times, a lease each, until 2026-12-05.
        assert done.steps[0].attempt == 2
        no_overlap(journal(log), {pid: died})
        listed = lambda: {e.executor_id: e.state for e in client.list_executors()}  # noqa: E731
        eventually(lambda: listed()[frozen.name] == "LOST", 5, "the frozen one listed LOST")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
        stop_executors(cluster, frozen, second)


@pytest.mark.usefixtures("journal_task")
def test_an_assignment_read_after_its_lease_lapsed_is_handed_back_unrun(
    cluster: Cluster, client: Client, shared_tmp: Path
) -> None:
    """The executor is frozen when a step is leased to it: the assignment waits in its
    socket while the lease lapses and the step runs on another executor. Thawed, it reads
    the assignment and must not run it — its lease counts from the last heartbeat the
    scheduler had heard from it before leasing, not from when the assignment was read.
    (Found by a soak of faults in a row, 2026-12-08: the two executions overlapped.)"""
    log = shared_file(shared_tmp, "journal")
    frozen = cluster.add_executor("--queues", "faultq", slots=1)
    second = None
    try:

        def connected(name: str) -> bool:
            return any(
                e.executor_id == name and e.state == "CONNECTED" for e in client.list_executors()
            )

        eventually(lambda: connected(frozen.name), 60, "the executor to connect")
        time.sleep(0.6)  # a heartbeat heard (every 0.5 s) since the welcome
        frozen.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        r = client.submit(
            task="journal", input={"journal": str(log), "seconds": 4, "seconds_again": 4}
        )
        eventually(
            lambda: client.get_run(r.run_id).steps[0].executor_id == frozen.name,
            10,
            "the step leased to the frozen executor",
        )
        second = cluster.add_executor("--queues", "faultq", slots=1)
        eventually(lambda: journal(log), 60, "the step to start on the second executor")
        assert time.monotonic() - stopped > 3  # the lease (3 s) had lapsed
        frozen.proc.send_signal(signal.SIGCONT)
        done = client.wait(r.run_id, timeout=60)
        assert done.state == "COMPLETED", done.steps[0].error
        assert done.steps[0].executor_id == second.name
        starts = [pid for kind, pid, _ in journal(log) if kind == "start"]
        assert len(starts) == 1, journal(log)  # the thawed executor ran nothing
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
        stop_executors(cluster, frozen, second)


def test_a_drain_that_runs_out_of_time_gives_the_step_back_without_using_a_retry(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "drain_giveback", queue="giveq", max_retries=0))
    draining = cluster.add_executor("--queues", "giveq", "--drain-seconds", "0.5", slots=1)
    other = None
    try:
        r = client.submit(task="drain_giveback", input={"seconds": 4})
        for event in client.watch(r.run_id, timeout=60):
            if event.kind == "PROGRESS":
                break
        draining.proc.send_signal(signal.SIGTERM)
        assert draining.proc.wait(30) == 0
        other = cluster.add_executor("--queues", "giveq", slots=1)
        done = client.wait(r.run_id, timeout=60)
        assert done.state == "COMPLETED", done.steps[0].error  # no retries were left to use
        assert done.steps[0].executor_id == other.name
        assert done.steps[0].attempt == 1
        messages = [e.message for e in client.watch(r.run_id, timeout=10)]
        assert any("draining executor" in m for m in messages), messages
    finally:
        stop_executors(cluster, draining, other)


def test_an_error_inside_a_slot_fails_the_step_and_the_slot_goes_on(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "slot_probe", queue="slotq", max_retries=0))
    cache = tmp_path / "slot-cache"
    child = cluster.add_executor("--queues", "slotq", "--cache-dir", str(cache), slots=1)
    try:
        eventually(lambda: (cache / "packages").is_dir(), 30, "the executor's cache")
        shutil.rmtree(cache / "packages")
        (cache / "packages").write_text("not a directory")  # unpacking will fail (OSError)
        broken = client.wait(client.submit(task="slot_probe", input={}).run_id, timeout=60)
        assert broken.state == "FAILED"
        assert "executor error" in broken.steps[0].error
        (cache / "packages").unlink()
        (cache / "packages").mkdir()
        healed = client.wait(client.submit(task="slot_probe", input={}).run_id, timeout=60)
        assert healed.state == "COMPLETED", healed.steps[0].error
        assert "failed in the executor" in child.log_tail(200)
        deadline = time.monotonic() + 10
        while True:  # the next heartbeats carry the count to ListExecutors
            found = [e for e in client.list_executors() if e.executor_id == child.name]
            if (found and found[0].slot_errors) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found, [e.executor_id for e in client.list_executors()]
        assert found[0].slot_errors == 1 and "executor error" in found[0].last_slot_error
    finally:
        stop_executor(cluster, child)


def break_package_cache(cache: Path) -> None:
    """Put a file where the executor's package cache is: unpacking fails (OSError), in the
    executor's own code, while its start-up check (a file written in ``cache``) passes."""
    eventually(lambda: (cache / "packages").is_dir(), 30, "the executor's cache")
    shutil.rmtree(cache / "packages")
    (cache / "packages").write_text("not a directory")


def resting(client: Client, executor_id: str) -> list[ExecutorInfo]:
    """The executor, listed, when it rests (else nothing)."""
    return [e for e in client.list_executors() if e.executor_id == executor_id and e.resting()]


def tired_executor(
    cluster: Cluster, client: Client, tmp_path: Path, prefix: str, rest_seconds: int
) -> tuple[Child, Path]:
    """An executor of a queue of its own (``<prefix>q``), and its cache: the cache broken,
    three steps of two task versions have failed in it, so it is to rest."""
    queue = f"{prefix}q"
    for name in (f"{prefix}_a", f"{prefix}_b"):
        client.register_task(make_task(tmp_path, name, queue=queue, max_retries=0))
    cache = tmp_path / f"{prefix}-cache"
    child = cluster.add_executor(
        "--queues", queue, "--cache-dir", str(cache), "--rest-seconds", str(rest_seconds), slots=1
    )
    try:
        break_package_cache(cache)
        for name in (f"{prefix}_a", f"{prefix}_b", f"{prefix}_a"):
            failed = client.wait(client.submit(task=name, input={}).run_id, timeout=60)
            assert failed.state == "FAILED" and "executor error" in failed.steps[0].error
    except BaseException:
        stop_executor(cluster, child)
        raise
    return child, cache


def test_an_executor_whose_steps_of_different_tasks_keep_failing_in_it_rests(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """Three steps in a row, of two task versions, failing in the executor itself (its
    package cache is broken): it rests — the scheduler gives it nothing new, the fleet
    listing and the health report say so — and steps queued meanwhile wait instead of
    failing; once healed and rested it takes them."""
    child, cache = tired_executor(cluster, client, tmp_path, "rest", rest_seconds=6)
    try:
        found = eventually(lambda: resting(client, child.name), 10, "a rest")
        assert found[0].state == "CONNECTED" and found[0].slot_errors == 3
        report = assess_fleet(client.list_executors(), client.list_queues())
        assert any("resting until" in c.detail for c in report), report
        (cache / "packages").unlink()
        (cache / "packages").mkdir()
        waiting = client.submit(task="rest_b", input={}).run_id
        time.sleep(1.0)
        assert client.get_run(waiting).state == "QUEUED"  # not leased to the resting one
        [restq] = [q for q in client.list_queues()[0] if q.queue == "restq"]
        assert restq.depth == 1 and restq.executors == 0 and restq.stranded  # none takes it
        done = client.wait(waiting, timeout=60)
        assert done.state == "COMPLETED", done.steps[0].error
        assert done.steps[0].executor_id == child.name
        started, rest_over = done.steps[0].started_at, found[0].resting_until
        assert started is not None and rest_over is not None
        assert (started - rest_over).total_seconds() > -0.5, (started, rest_over)
        assert "taking nothing new" in child.log_tail(200)
        assert not resting(client, child.name)
    finally:
        stop_executor(cluster, child)


def test_an_executor_that_cannot_write_its_cache_stops_at_start_saying_why(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Broken from its start (here a file where its cache directory should be; a full disk
    is the same): it exits at once, status 1, naming the directory, rather than connecting
    and failing every step it would be given."""
    where = tmp_path / "not-a-dir"
    where.write_text("a file")
    child = cluster.add_executor("--queues", "preflightq", "--cache-dir", str(where), slots=1)
    try:
        assert child.proc.wait(30) == 1  # as any setting it cannot start with
        assert f"cache directory '{where}' cannot be written" in child.log_tail(50)
    finally:
        stop_executor(cluster, child)


def test_an_executor_failing_the_one_task_it_ran_well_before_rests_too(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """A fleet serving one task: its package ran here, then the executor broke (its cache
    gone bad); three steps of that one task failing in it are enough."""
    client.register_task(make_task(tmp_path, "rest_one", queue="restoneq", max_retries=0))
    cache = tmp_path / "rest-one-cache"
    child = cluster.add_executor(
        "--queues", "restoneq", "--cache-dir", str(cache), "--rest-seconds", "30", slots=1
    )
    try:
        ran = client.wait(client.submit(task="rest_one", input={}).run_id, timeout=60)
        assert ran.state == "COMPLETED"
        break_package_cache(cache)
        for _ in range(3):
            failed = client.wait(client.submit(task="rest_one", input={}).run_id, timeout=60)
            assert failed.state == "FAILED" and "executor error" in failed.steps[0].error
        eventually(lambda: resting(client, child.name), 10, "a rest")
    finally:
        stop_executor(cluster, child)


def test_an_executor_broken_from_its_start_failing_a_task_that_ran_elsewhere_rests(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """A fleet serving one task; a new executor whose cache breaks unpacking (its start-up
    check passed) never ran that task, and fails it three times in a row. The task's code
    did start on another executor, and the scheduler says so in the assignments
    (``proven``): the new executor is the broken one, and rests. Once its cache is mended an
    operator ends the rest (``wtm executor resume``), and it takes work at once."""
    client.register_task(make_task(tmp_path, "rest_new", queue="restnewq", max_retries=0))
    first = cluster.add_executor("--queues", "restnewq", slots=1)
    try:
        ran = client.wait(client.submit(task="rest_new", input={}).run_id, timeout=60)
        assert ran.state == "COMPLETED" and ran.steps[0].executor_id == first.name
    finally:
        stop_executor(cluster, first)
    cache = tmp_path / "rest-new-cache"
    child = cluster.add_executor(
        "--queues", "restnewq", "--cache-dir", str(cache), "--rest-seconds", "30", slots=1
    )
    try:
        break_package_cache(cache)
        for _ in range(3):
            failed = client.wait(client.submit(task="rest_new", input={}).run_id, timeout=60)
            assert failed.state == "FAILED" and "executor error" in failed.steps[0].error
            assert failed.steps[0].executor_id == child.name
        found = eventually(lambda: resting(client, child.name), 10, "a rest")
        assert found[0].slot_errors == 3 and found[0].resting_until is not None
        (cache / "packages").unlink()  # an operator mends the cache, then ends the rest
        (cache / "packages").mkdir()
        said = run_cli(cluster, "executor", "resume", child.name).stdout
        assert f"executor {child.name}'s rest is ended" in " ".join(said.split()), said
        eventually(lambda: not resting(client, child.name), 10, "the rest to end")
        done = client.wait(client.submit(task="rest_new", input={}).run_id, timeout=60)
        assert done.state == "COMPLETED" and done.steps[0].executor_id == child.name
        started = done.steps[0].started_at
        assert started is not None and (found[0].resting_until - started).total_seconds() > 10
        assert "rest ended by" in child.log_tail(200)
    finally:
        stop_executor(cluster, child)


def test_an_input_naming_a_file_no_executor_can_write_fails_the_step_not_the_executor(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """An artifact URI whose file name is ".." (or too long), or an input by reference to a
    file that is no JSON object — from a submit, or from task code as an upstream output —
    fails its step FATAL as the input's fault. Each used to fail in the executor's own code
    (a slot error), which steps of two tasks made into a rest: a way for one team's inputs
    to idle a shared fleet."""
    for name in ("dot_a", "dot_b"):
        client.register_task(make_task(tmp_path, name, queue="dotq", max_retries=2))
    child = cluster.add_executor("--queues", "dotq", slots=1)
    try:
        (tmp_path / "ok.txt").write_text("fine")
        good = client.upload_artifact(tmp_path / "ok.txt")
        binary = client.upload_artifact_data("blob.bin", bytes(range(256)))
        not_json = client.upload_artifact_data("notes.json", b"not json at all")
        array = client.upload_artifact_data("list.json", b"[1, 2, 3]")
        bad_inputs = [
            ({"seconds": 0, "file": good.rsplit("/", 1)[0] + "/.."}, "must not be '.' or '..'"),
            # an input by reference (as the scheduler sends a large one) to what is no input
            ({"wtm_ref": binary, "bytes": 256}, "is not UTF-8"),
            ({"wtm_ref": not_json, "bytes": 15}, "is not valid JSON"),
            ({"wtm_ref": array, "bytes": 9}, "is not a JSON object"),
        ]
        for i, (given, why) in enumerate(bad_inputs):
            name = ("dot_a", "dot_b")[i % 2]
            done = client.wait(client.submit(task=name, input=given).run_id, timeout=60)
            assert done.state == "FAILED" and done.steps[0].attempt == 1  # FATAL: no retry
            assert why in done.steps[0].error, done.steps[0].error
        document = client.upload_artifact_data("in.json", json.dumps({"seconds": 0}).encode())
        for given in ({"seconds": 0, "file": good}, {"wtm_ref": document, "bytes": 14}):
            fine = client.wait(client.submit(task="dot_a", input=given).run_id, timeout=60)
            assert fine.state == "COMPLETED", fine.steps[0].error
        [me] = eventually(
            lambda: [e for e in client.list_executors() if e.executor_id == child.name],
            10,
            "the executor's record",
        )
        assert me.slot_errors == 0 and not me.resting(), me.last_slot_error
    finally:
        stop_executor(cluster, child)


def test_concurrent_submits_with_one_request_id_make_one_run_that_runs_once(
    cluster: Cluster, client: Client
) -> None:
    client.register_task(FIXTURES / "word_count")
    key = f"same-request-{time.time_ns()}"

    def submit(_: int) -> str:
        with Client(
            cluster.registry_address, cluster.scheduler_address, api_key=cluster.admin_key
        ) as c:
            return c.submit(task="word_count", input={"text": "once only"}, request_id=key).run_id

    with ThreadPoolExecutor(6) as pool:
        run_ids = set(pool.map(submit, range(6)))
    assert len(run_ids) == 1
    [run_id] = run_ids
    assert client.wait(run_id, 60).state == "COMPLETED"
    again = client.submit(task="word_count", input={"text": "once only"}, request_id=key)
    assert again.run_id == run_id
    with pymongo.MongoClient(cluster.endpoints.mongodb_uri) as mongo:
        db = mongo["wtm"]
        assert db["runs"].count_documents({"request_id": key}) == 1
        deadline = time.monotonic() + 10
        while db["step_runs"].count_documents({"run_id": run_id}) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert db["step_runs"].count_documents({"run_id": run_id}) == 1


BIG_OUTPUT_TASK = """
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        return {"blob": "x" * 300_000, "tag": input_data.get("tag", "")}
"""


def test_an_object_store_outage_during_a_step_costs_no_retry(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """The output (over the inline limit) goes to the object store through the registry; with
    the registry down for a few seconds, the executor waits it out instead of failing a step
    that has no retries left (with --store-retry-seconds 0 this run FAILS)."""
    client.register_task(
        make_task(tmp_path, "big_output", BIG_OUTPUT_TASK, queue="storeq", max_retries=0)
    )
    child = cluster.add_executor("--queues", "storeq", slots=1)
    try:
        warm = client.run(task="big_output@1.0.0", input={"tag": "warm"}, timeout=60)
        assert warm.state == "COMPLETED", warm.steps[0].error  # package cached, version known
        assert cluster.registry is not None
        cluster.registry.stop()
        cluster.services.children.remove(cluster.registry)
        r = client.submit(task="big_output@1.0.0", input={"tag": "through an outage"})
        time.sleep(4)  # the step has run; storing its output is being retried
        cluster.registry = cluster._service(
            "registry", "services.registry", "--listen", cluster.registry_address
        )
        eventually(lambda: serving(cluster.registry_address), 30, "the registry to be back")
        done = client.wait(r.run_id, timeout=90)
        assert done.state == "COMPLETED", done.steps[0].error
        assert done.steps[0].attempt == 1
        assert done.output["tag"] == "through an outage" and len(done.output["blob"]) == 300_000
    finally:
        stop_executor(cluster, child)


def serving(address: str) -> bool:
    from services.localstack.cluster import serving as check

    try:
        return check(address)
    except Exception:  # noqa: BLE001 - not up yet
        return False
