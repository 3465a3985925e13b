"""What the executor's integration tests (``test_executor*.py``, ``test_sandbox.py``) share:
task packages made on the fly, the fixtures' tasks registered, executors added and stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clients.sdk import Client
from services.localstack import Cluster
from tests.conftest import ROOT

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


def register_fixtures(client: Client) -> None:
    """Register every task under ``tests/fixtures/tasks``."""
    for d in sorted(FIXTURES.iterdir()):
        client.register_task(d)


def run(client: Client, timeout: float = 60, **submit: Any) -> Any:
    return client.wait(client.submit(**submit).run_id, timeout=timeout)


def stop_executor(cluster: Cluster, child: Any) -> None:
    cluster.executors.remove(child)
    cluster.services.children.remove(child)
    child.stop()


def stop_executors(cluster: Cluster, *children: Any) -> None:
    """``stop_executor`` of each that was started (a test's ``finally``: None if it was not)."""
    for child in children:
        if child is not None:
            stop_executor(cluster, child)


def installing_executor(cluster: Cluster, wheels: Path, queue: str) -> Any:
    """An executor of ``queue`` that installs missing requirements, from ``wheels`` only."""
    cluster.extra_env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    try:
        return cluster.add_executor("--queues", queue, "--install-requirements", "true")
    finally:
        del cluster.extra_env["PIP_NO_INDEX"], cluster.extra_env["PIP_FIND_LINKS"]
