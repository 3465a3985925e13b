"""A private fleet for fault trials: scheduler(s) and executors on a Redis database and a
MongoDB database of their own (the session's stack serves them), running the ledger task,
which appends one line per execution to a file so a test can count how often, and when, each
step really ran. The ``fleet`` fixture (tests/integration/conftest.py) registers the task and
its two-step pipeline."""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from clients.sdk import Client
from services.localstack import Cluster
from services.localstack.cluster import serving
from services.localstack.processes import Child, ProcessGroup, free_port, wait_until
from tests.conftest import ROOT

LEDGER_TASK = """
import os, time
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        start = time.time()
        time.sleep(float(input_data.get("seconds", 0.2)))
        with open(input_data["ledger"], "a") as fh:
            fh.write(f"{input_data['tag']} {start} {time.time()} {os.getpid()}\\n")
        return {"tag": input_data["tag"], "ledger": input_data["ledger"]}
"""

PIPELINE = {
    "pipeline_id": "ledger_chain",
    "steps": [
        {
            "step_id": "first",
            "task_id": "ledger",
            "input_mapping": {"tag": "$.tag", "ledger": "$.ledger", "seconds": "$.seconds"},
        },
        {
            "step_id": "second",
            "task_id": "ledger",
            "depends_on": ["first"],
            "input_mapping": {"tag": "$.first.tag", "ledger": "$.first.ledger", "seconds": 0.2},
        },
    ],
}

# Redis databases for the private schedulers (0: session, 1: Lua tests; the stack has 64)
_DB = iter(range(2, 64))


@dataclass
class Fleet:
    """Private scheduler(s) and executors on their own Redis database and MongoDB database."""

    cluster: Cluster
    root: Path
    lease_seconds: int = 10
    group: ProcessGroup = field(init=False)
    env: dict[str, str] = field(init=False)
    redis_url: str = field(init=False)
    redis_admin_url: str = field(init=False)  # flushing and looking: not the services' user
    schedulers: dict[str, Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.cluster.endpoints is not None
        db = next(_DB)
        self.redis_url = self.cluster.endpoints.redis_url.rsplit("/", 1)[0] + f"/{db}"
        self.redis_admin_url = self.cluster.endpoints.redis_admin_url.rsplit("/", 1)[0] + f"/{db}"
        self.group = ProcessGroup(self.root / "logs")
        self.env = {
            **self.cluster.env(),
            "WTM_REDIS_URL": self.redis_url,
            "WTM_MONGODB_DATABASE": f"wtm_durability_{db}",
            "WTM_AUTH_DATABASE": "wtm",  # the session's keys
            "WTM_LEASE_SECONDS": str(self.lease_seconds),
            "WTM_HEARTBEAT_SECONDS": "0.5",
        }
        redis.Redis.from_url(self.redis_admin_url).flushdb()

    def start_scheduler(self, address: str = "") -> str:
        address = address or f"127.0.0.1:{free_port()}"
        child = self.group.start(
            f"scheduler-{len(self.group.children)}",
            [sys.executable, "-m", "services.scheduler", "--listen", address],
            env=self.env,
            cwd=ROOT,
        )
        wait_until("scheduler", lambda: serving(address), child, timeout=30)
        self.schedulers[address] = child
        return address

    def kill_scheduler(self, address: str, sig: int = signal.SIGKILL) -> None:
        child = self.schedulers.pop(address)
        child.proc.send_signal(sig)
        child.proc.wait(30)
        self.group.children.remove(child)

    def start_executor(self, scheduler: str, name: str, slots: int = 2) -> Child:
        return self.group.start(
            name,
            [
                sys.executable,
                "-m",
                "services.executor",
                "--scheduler",
                scheduler,
                "--executor-id",
                name,
                "--slots",
                str(slots),
                "--queues",
                "ledger",
                "--cache-dir",
                str(self.root / f"{name}-cache"),
            ],
            env={
                **self.env,
                "WTM_SCHEDULER_ADDR": scheduler,
                "WTM_API_KEY_FILE": str(self.cluster.key_files["executor"]),
            },
            cwd=ROOT,
        )

    def client(self, scheduler: str, retry_seconds: float = 10.0) -> Client:
        return Client(
            self.cluster.registry_address,
            scheduler,
            api_key=self.cluster.admin_key,
            raise_on_failure=False,
            retry_seconds=retry_seconds,
        )


def ledger_counts(path: Path) -> Counter[str]:
    return Counter(line.split()[0] for line in path.read_text().splitlines())


def wait_all(client: Client, run_ids: list[str], timeout: float = 90) -> list[Any]:
    return [client.wait(r, timeout=timeout) for r in run_ids]


def register_probe(
    client: Client,
    root: Path,
    task_id: str,
    source: str,
    timeout: int,
    max_retries: int,
    **more: Any,
) -> None:
    """Register a probe task on the "ledger" queue, which the fleet's executors serve
    (``more``: further task.json keys)."""
    task = root / task_id
    task.mkdir()
    manifest = {
        "task_id": task_id,
        "version": "1.0.0",
        "category": "testing",
        "queue": "ledger",
        "timeout": timeout,
        "max_retries": max_retries,
        **more,
    }
    (task / "task.json").write_text(json.dumps(manifest))
    (task / "task.py").write_text(source)
    client.register_task(task)
