"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.sdk import Client
from services.localstack import Cluster
from tests.integration.ledger_fleet import LEDGER_TASK, PIPELINE, Fleet, register_probe


@pytest.fixture
def fleet(cluster: Cluster, client: Client, tmp_path: Path) -> Iterator[Fleet]:
    register_probe(client, tmp_path, "ledger", LEDGER_TASK, timeout=30, max_retries=0)
    client.register_pipelines(PIPELINE)
    f = Fleet(cluster, tmp_path)
    try:
        yield f
    finally:
        f.group.stop_all()
