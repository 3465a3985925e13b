"""Fixtures shared by the unit tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import redis

from services.localstack.processes import free_port, wait_until
from services.localstack.stack import valkey_binary


@pytest.fixture(scope="module")
def valkey_url() -> Iterator[str]:
    """A bare valkey-server of this module's own (no password, nothing else running)."""
    port = free_port()
    proc = subprocess.Popen(
        [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until("valkey-server", answers, None, 10)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
