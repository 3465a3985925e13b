"""The script pipeline's packer (hiredis's, in C) writes what redis-py's own would."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection

from services.scheduler.script_connection import Command, pack

CASES: list[list[Command]] = [
    [("EVALSHA", "a" * 40, 0, "wtm:", "r-1:detect", 1, "SUCCEEDED", '{"faces": []}', "")],
    [("EVALSHA", "b" * 40, 0, "wtm:", -5, 2**70, 0.1, 1e20, 1 / 3, b"\x00\xff", "é✓")],
    [("CLIENT LIST",), ("SCRIPT LOAD", "return 1"), ("PING",), (b"CONFIG GET", "hz")],
    [("SET", "k", "x" * 10_000)],  # past redis-py's chunking cut-off: the same bytes
]


@pytest.mark.parametrize("commands", CASES)
def test_the_packer_writes_what_redis_py_writes(commands: list[Command]) -> None:
    assert pack(commands) == b"".join(Connection().pack_commands(commands))


def test_an_argument_redis_py_refuses_is_refused() -> None:
    with pytest.raises(TypeError):
        pack([("SET", "k", True)])
    with pytest.raises(TypeError):
        pack([("SET", "k", None)])
