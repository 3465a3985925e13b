"""Task code is untrusted: a spy task tries what an attacker's would, on the real stack, and
every attempt fails or is contained; the executor and other runs carry on."""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from clients.sdk import Client
from services.localstack import Cluster
from services.localstack.cluster import serving
from services.localstack.processes import ProcessGroup, free_port, wait_until
from tests.conftest import ROOT
from tests.deployments import executor_capabilities
from tests.integration.executor_tasks import make_task, stop_executor
from tests.waiting import eventually

FIXTURES = ROOT / "tests" / "fixtures" / "tasks"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="isolation needs root (uids, namespaces); CI runs as root"
)


# Linux capability numbers (linux/capability.h) of the names the deployments use.
CAPABILITY_BITS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SYS_ADMIN": 21,
}


def as_deployed() -> list[str]:
    """A command line that starts a process with only the deployments' capabilities and no
    way to gain others (``no_new_privs``, what ``allowPrivilegeEscalation: false`` sets)."""
    keep = ",".join(f"+{name.lower()}" for name in executor_capabilities())
    return ["setpriv", f"--bounding-set=-all,{keep}", "--no-new-privs", "--"]


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@pytest.mark.parametrize("deployed", [False, True], ids=["root", "as-deployed"])
def test_a_spy_task_reaches_nothing_it_should_not(
    cluster: Cluster, client: Client, tmp_path: Path, deployed: bool
) -> None:
    """Also under exactly the capabilities the deployments grant (deploy/k8s, compose),
    which cannot be run here: a sandbox step that needs one they leave out fails this."""
    assert cluster.endpoints is not None
    spy = client.register_task(FIXTURES / "spy")
    other = client.register_task(FIXTURES / "word_count")
    cache = tmp_path / "spy-cache"
    launcher = as_deployed() if deployed else []
    child = cluster.add_executor(
        "--queues", "spyq,default", "--cache-dir", str(cache), slots=1, launcher=launcher
    )
    try:
        if deployed:  # once both setprivs have exec'd the executor in their place
            cmdline = Path(f"/proc/{child.pid}/cmdline")
            python = os.fsencode(sys.executable)
            eventually(lambda: cmdline.read_bytes().startswith(python + b"\0"), what="exec")
            status = status_of(child.pid)
            granted = sum(1 << CAPABILITY_BITS[name] for name in executor_capabilities())
            assert int(status["CapEff"], 16) == granted and status["NoNewPrivs"] == "1"
        # The executor has another task's package in its cache.
        assert client.run(task="word_count", input={"text": "warm"}, timeout=60).state == (
            "COMPLETED"
        )
        e = cluster.endpoints
        ports = {
            "redis": urlparse(e.redis_url).port,
            "mongodb": urlparse(e.mongodb_uri).port,
            "s3": urlparse(e.s3_endpoint).port,
            "registry": cluster.registry_address.rsplit(":", 1)[1],
            "scheduler": cluster.scheduler_address.rsplit(":", 1)[1],
        }
        done = client.run(
            task="spy",
            input={"ports": ports, "cache_root": str(cache), "other_digest": other.digest},
            timeout=90,
        )
        assert done.state == "COMPLETED", done.steps[0].error
        report = done.output
        assert report["env"] == [] and report["proc_environ"] == []  # no secrets
        for name in ports:
            assert report[f"connect_{name}"].startswith("refused"), report  # no network
        assert report["list_packages"] == f"worked: ['{spy.digest}']"  # only its own
        assert report["other_package"].startswith("refused: FileNotFoundError")
        assert report["write_cache"].startswith("refused: OSError"), report["write_cache"]
        assert report["signal_executor"].startswith("refused: PermissionError")
        assert report["executor_environ"].startswith("refused: FileNotFoundError")  # hidden
        assert report["memory"].startswith("refused: MemoryError")
        assert report["fork_bomb"].startswith("refused: BlockingIOError"), report["fork_bomb"]
        assert report["own_workdir"] == "worked: 4" and report["home_is_cwd"] is True
        assert report["uid"] != 0
        assert report["interrupts"] == "worked: 0"  # masked, as in a container
        assert report["kernel_knob"].startswith("refused: OSError"), report["kernel_knob"]
        assert report["shared_writable"] == []  # nothing shared with the executor to write
        assert report["resource_tracker_fd"] is None  # not the executor's tracker's pipe
        # Nothing else was hurt: the executor serves on, other runs complete.
        assert child.alive()
        again = client.run(task="word_count", input={"text": "still fine"}, timeout=60)
        assert again.state == "COMPLETED"
        assert child.alive() and "Traceback" not in child.log_tail(200)
    finally:
        stop_executor(cluster, child)


def test_each_executor_says_how_it_confines_task_code(cluster: Cluster, client: Client) -> None:
    """An executor that cannot isolate task code (not root, or WTM_SANDBOX=false) says so:
    in its hello, so in the fleet's list, and in a warning as it starts. Until 2026-12-04
    docker-compose.yml ran every executor as the image's user, and nothing showed it."""
    child = cluster.add_executor("--queues", "limitsq", "--sandbox", "false", slots=1)
    try:

        def fleet() -> dict[str, str]:
            listed = client.list_executors()
            return {e.executor_id: e.sandbox for e in listed if e.state == "CONNECTED"}

        found = eventually(lambda: child.name in fleet() and fleet(), timeout=30, what="listed")
        assert found[child.name] == "limits"
        assert [found[e.name] for e in cluster.executors if e is not child] == ["isolated"] * (
            len(cluster.executors) - 1
        )  # the session's, run as root
        assert "resource limits only" in child.log_tail(200)
    finally:
        stop_executor(cluster, child)


def test_a_scheduler_that_requires_isolation_turns_away_an_executor_that_lacks_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """With WTM_REQUIRE_ISOLATION (as deploy/k8s and compose set it) an executor that would
    run task code as its own user, on its network, is refused at its hello and exits (a
    crash loop an operator sees); an isolating one is taken and runs the steps. A
    namespace listed in WTM_ISOLATION_OPTIONAL_NAMESPACES (a team's own trusted code) may
    have executors of its own that do not isolate; one serving any other is refused."""
    address = f"127.0.0.1:{free_port()}"
    group = ProcessGroup(tmp_path / "logs")
    env = {**cluster.executor_env(), "WTM_SCHEDULER_ADDR": address}

    def executor(name: str, *args: str) -> Any:
        argv = [sys.executable, "-m", "services.executor", "--executor-id", name]
        argv += ["--queues", "isoq", "--cache-dir", str(tmp_path / name), *args]
        return group.start(name, argv, env=env, cwd=ROOT)

    try:
        argv = ["--listen", address, "--require-isolation", "true"]
        argv += ["--isolation-optional-namespaces", "trusted-team"]
        scheduler = group.start(
            "scheduler-isolating",
            [sys.executable, "-m", "services.scheduler", *argv],
            env=cluster.env(),
            cwd=ROOT,
        )
        wait_until("scheduler", lambda: serving(address), scheduler, timeout=30)
        refused = executor("limits-only", "--sandbox", "false")
        taken = executor("isolating")
        trusted = executor("limits-trusted", "--sandbox", "false", "--namespaces", "trusted-team")
        mixed = executor("limits-mixed", "--sandbox", "false", "--namespaces", "trusted-team,x")
        assert refused.proc.wait(30) == 2 and mixed.proc.wait(30) == 2
        log = refused.log_path.read_text()
        assert "scheduler refused this executor" in log and "WTM_REQUIRE_ISOLATION" in log
        assert "Task exception was never retrieved" not in log  # it ends as it means to
        assert "WTM_ISOLATION_OPTIONAL_NAMESPACES (trusted-team; it serves *)" in log
        assert "it serves trusted-team, x)" in mixed.log_path.read_text()
        with Client(cluster.registry_address, address, api_key=cluster.admin_key) as client:
            client.register_task(make_task(tmp_path, "isolation_probe", queue="isoq"))
            done = client.run(task="isolation_probe", input={}, timeout=60)
            assert done.state == "COMPLETED", done.steps[0].error
            assert done.steps[0].executor_id == "isolating"
        welcomed = f"connected to {address} as limits-trusted"
        eventually(lambda: welcomed in trusted.log_path.read_text(), what="the trusted one in")
        assert scheduler.alive() and taken.alive() and trusted.alive() and serving(address)
    finally:
        group.stop_all()


QUOTA_TASK = """
import threading

from tasks.base.task_base import TaskBase


class Task(TaskBase):
    def process(self, data):
        release, held = threading.Event(), []
        try:
            while len(held) < 10:
                thread = threading.Thread(target=release.wait)
                thread.start()
                held.append(thread)
        except RuntimeError as exc:
            refused = str(exc)
        else:
            refused = ""
        release.set()
        for thread in held:
            thread.join()
        return {"held": len(held), "refused": refused}
"""


def test_processes_counts_what_the_task_starts_not_the_runtimes_watchdog(
    client: Client, tmp_path: Path
) -> None:
    """``"processes": N`` is the worker's main thread and N - 1 more of its own. The
    runtime's watchdog thread is not the task's: at 1 it once could not start, and the
    worker died (exit code 1) before the task ran."""
    for n in (1, 3):
        package = tmp_path / f"quota{n}"
        package.mkdir()
        manifest = {"task_id": f"thread_quota_{n}", "version": "1.0.0", "name": "quota"}
        manifest |= {"entry_point": "task.Task", "max_retries": 0, "resources": {"processes": n}}
        (package / "task.json").write_text(json.dumps(manifest))
        (package / "task.py").write_text(QUOTA_TASK)
        client.register_task(package)
        done = client.run(task=f"thread_quota_{n}", input={}, timeout=60)
        assert done.state == "COMPLETED", done.steps[0].error
        assert done.output == {"held": n - 1, "refused": "can't start new thread"}


def test_workers_of_two_executors_on_one_host_never_share_a_uid(
    cluster: Cluster, client: Client
) -> None:
    """Each executor counted worker uids from the same base, so a worker of one ran as the
    same uid as a worker of the other: task code could signal a step of another run (maybe
    another namespace's) on the other executor, and RLIMIT_NPROC counted both. Uids are now
    claimed host-wide (``worker_uids``)."""
    client.register_task(FIXTURES / "uid_report")
    added = [cluster.add_executor("--queues", "uidq", slots=1) for _ in range(2)]
    try:
        names = {c.name for c in added}

        def connected() -> bool:
            found = {e.executor_id for e in client.list_executors() if e.state == "CONNECTED"}
            return names <= found

        eventually(connected, timeout=60, what="both executors connected")
        _, run_ids = client.submit_many([{"hold": 1.5}] * 2, task="uid_report")
        done = [client.wait(run_id, 90) for run_id in run_ids]
        assert [r.state for r in done] == ["COMPLETED"] * 2, [r.steps[0].error for r in done]
        assert {r.steps[0].executor_id for r in done} == names  # one run on each
        uids = [r.output["uid"] for r in done]
        assert uids[0] != uids[1], uids
        for r in done:  # each worker alone with its uid: nothing of another run to signal
            assert r.output["signalable"] == [], r.output
            # and in its /proc only its own uid's processes: not the executor, not the others
            assert r.output["visible_uids"] == [r.output["uid"]], r.output
    finally:
        for child in added:
            stop_executor(cluster, child)


LITTER = """
import ctypes
import os
from tasks.base.task_base import SimpleTask

libc = ctypes.CDLL(None, use_errno=True)


class Task(SimpleTask):
    def process(self, input_data):
        found = {}
        key = input_data["ipc_key"]  # a System V shared memory segment, open to every uid
        flags = 0o1666 if input_data["write"] else 0  # IPC_CREAT | 0o666
        found["sysv"] = libc.shmget(key, 4096, flags) != -1
        for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
            path = os.path.join(d, input_data["name"])
            if input_data["write"]:
                with open(path, "w") as f:
                    f.write("a step's data")
                os.chmod(path, 0o666)
            found[d] = os.path.exists(path)
        return {"found": found}
"""


def test_the_shared_temporary_directories_are_the_workers_own(
    client: Client, tmp_path: Path
) -> None:
    """/tmp, /var/tmp, /dev/shm, /run/lock and System V IPC were the host's: a task could
    leave a step's data there for any other worker (another task's, or the same shared task
    serving another namespace) or for a later step. Each worker now has its own."""
    for task_id in ("litter", "litter_reader"):
        client.register_task(make_task(tmp_path, task_id, LITTER, max_retries=0))
    name = f"wtm-litter-{os.getpid()}-{time.time_ns()}"
    places = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
    doc = {"name": name, "ipc_key": 0x57000000 + os.getpid() % 0xFFFF}
    wrote = client.run(task="litter", input={**doc, "write": True}, timeout=60)
    assert wrote.state == "COMPLETED", wrote.steps[0].error
    assert wrote.output["found"] == dict.fromkeys([*places, "sysv"], True)
    libc = ctypes.CDLL(None, use_errno=True)
    segment = libc.shmget(doc["ipc_key"], 0, 0)
    if segment != -1:  # the old sandbox: the host's, left behind; remove it
        libc.shmctl(segment, 0, None)  # IPC_RMID
    assert segment == -1, "the task's System V segment is the host's"
    for d in places:
        assert not os.path.exists(os.path.join(d, name)), d  # not on the host
    other = client.run(task="litter_reader", input={**doc, "write": False}, timeout=60)
    assert other.output["found"] == dict.fromkeys([*places, "sysv"], False)
    again = client.run(task="litter", input={**doc, "write": False}, timeout=60)
    assert again.output["found"]["/tmp"] is True  # its own, kept while the worker lives
