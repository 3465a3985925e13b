"""Fixtures shared by the integration tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.sdk import Client
from services.localstack import Cluster
from tests.integration.ledger_fleet import LEDGER_TASK, PIPELINE, Fleet


@pytest.fixture
def fleet(cluster: Cluster, client: Client, tmp_path: Path) -> Iterator[Fleet]:
    task = tmp_path / "ledger"
    task.mkdir()
    manifest = {
        "task_id": "ledger",
        "version": "1.0.0",
        "category": "testing",
        "queue": "ledger",
        "timeout": 30,
        "max_retries": 0,
    }
    (task / "task.json").write_text(json.dumps(manifest))
    (task / "task.py").write_text(LEDGER_TASK)
    client.register_task(task)
    client.register_pipelines(PIPELINE)
    f = Fleet(cluster, tmp_path)
    try:
        yield f
    finally:
        f.group.stop_all()
