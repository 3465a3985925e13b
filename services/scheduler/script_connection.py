"""``ScriptLines``: Redis connections of the run queue's own, for script pipelines."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

Command = tuple[Any, ...]  # a Redis command and its arguments (str, bytes, int or float)

SCRIPT_CONNECTION_NAME = "wtm-scheduler-scripts"  # how the line shows in CLIENT LIST


class ScriptConnection:
    """A Redis connection of the queue's own, for script pipelines: redis-py's connection
    read and written directly. A pooled pipeline costs ~300 µs of CPU per round trip here
    (pipeline object, pool checkout, a task per socket timeout), this ~160 µs. One round
    trip at a time; the whole of it has one deadline, and any error or cancel mid-way drops
    the connection, so a half-read reply never reaches the next call."""

    def __init__(self, client: aioredis.Redis, timeout_s: float = 30.0) -> None:
        pool = client.connection_pool
        options = {
            **pool.connection_kwargs,
            "socket_timeout": None,
            "client_name": SCRIPT_CONNECTION_NAME,
        }
        self._connection = pool.connection_class(**options)
        self._lock = asyncio.Lock()
        self.timeout_s = timeout_s

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def execute(self, commands: list[Command]) -> list[Any]:
        """Send the commands in one write; their replies in order (an error reply as its
        exception, not raised)."""
        c = self._connection
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._ready()
                    await c.send_packed_command(pack(commands), check_health=False)
                    replies: list[Any] = []
                    for _ in commands:
                        try:
                            replies.append(await c.read_response())
                        except ResponseError as exc:
                            replies.append(exc)
                    return replies
            except BaseException:
                await c.disconnect()
                raise

    async def _ready(self) -> None:
        """Connected, with nothing unread: a connection the server closed (or one holding
        stray data) is replaced before anything is sent on it, as redis-py's pool does. It
        connects by ``connect()``, as the pool does, not by sending: a Sentinel-managed
        connection asks the sentinels for the primary only there."""
        c = self._connection
        if c.is_connected:
            try:
                stale = await c.can_read()
            except (RedisConnectionError, OSError):
                stale = True
            if not stale:
                return
            await c.disconnect()
        await c.connect()

    async def close(self) -> None:
        await self._connection.disconnect()


class ScriptLines:
    """The queue's own lines (``ScriptConnection``), as many as its round trips overlap, up
    to ``max_lines``: a round trip takes an idle line, opens another when every line is
    busy, and past the limit waits its turn on one (in turn). Under load a submit batch, a
    result batch and a lease round overlap; each line packs in C and reads directly, where a
    pooled redis-py pipeline, their fallback until 2026-12-04, packed every argument in
    Python (~12% of the scheduler's CPU in a burst of 5,000 runs, by ``cProfile``)."""

    def __init__(self, client: aioredis.Redis, max_lines: int = 4, timeout_s: float = 30.0) -> None:
        self._client = client
        self._max_lines = max_lines
        self._timeout_s = timeout_s
        self._lines: list[ScriptConnection] = []
        self._turn = 0

    async def execute(self, commands: list[Command]) -> list[Any]:
        """``ScriptConnection.execute`` on a free line (see the class)."""
        line = next((line for line in self._lines if not line.busy), None)
        if line is None and len(self._lines) < self._max_lines:
            line = ScriptConnection(self._client, self._timeout_s)
            self._lines.append(line)
        if line is None:
            self._turn = (self._turn + 1) % len(self._lines)
            line = self._lines[self._turn]
        return await line.execute(commands)

    async def close(self) -> None:
        for line in self._lines:
            await line.close()


def pack(commands: list[Command]) -> bytes:
    """Commands in the Redis protocol, as redis-py's connection packs them (a command name
    of several words is split, as in ``"CLIENT LIST"``), by hiredis's packer, in C: a
    result's round trip packs some fifty arguments, which redis-py's own packer, in Python,
    took ~0.1 ms of the scheduler's loop to do."""
    return b"".join(pack_command((*name.split(), *args)) for name, *args in commands)
