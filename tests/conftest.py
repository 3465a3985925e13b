"""Shared fixtures: one real local stack and the three services per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.sdk import Client
from services.localstack import Cluster

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tasks" / "examples"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """valkey + SeaweedFS + nx-27017, then registry, scheduler and one 2-slot executor."""
    c = Cluster(
        tmp_path_factory.mktemp("cluster"),
        executors=1,
        slots=2,
        env={"WTM_LEASE_SECONDS": "3", "WTM_HEARTBEAT_SECONDS": "0.5"},
    )
    with c:
        yield c


@pytest.fixture(scope="session")
def client(cluster: Cluster) -> Iterator[Client]:
    with Client(cluster.registry_address, cluster.scheduler_address) as c:
        yield c
