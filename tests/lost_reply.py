"""A TCP relay that loses one reply: the first connection's bytes reach the server, but once
the client has sent ``after_bytes`` the server's answer is dropped and, ``hold`` seconds
later (time for the server to act on the request), both sides are closed. Every later
connection is relayed whole. It stands for a network that fails after a request landed:
the client sees its call fail (UNAVAILABLE) and cannot tell whether it was carried out.

Runs an asyncio loop on a thread of the test's process; ``close()`` stops it."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class LostReplyRelay:
    """``127.0.0.1:port`` relays to ``127.0.0.1:target``, losing the first reply."""

    def __init__(self, port: int, target: int, after_bytes: int, hold: float = 2.0) -> None:
        self.port, self.target, self.after_bytes, self.hold = port, target, after_bytes, hold
        self.connections = 0
        self.lost = threading.Event()  # set once a reply was dropped
        self._writers: set[asyncio.StreamWriter] = set()  # every open socket, to close
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the relay did not start")

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        losing = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers |= {writer, up_writer}
        sent = 0
        dropping = asyncio.Event()

        async def upward() -> None:
            nonlocal sent
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()
                    sent += len(data)
                    if losing and sent >= self.after_bytes:
                        dropping.set()

        async def downward() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await up_reader.read(65536):
                    if dropping.is_set():
                        continue  # the reply, lost
                    writer.write(data)
                    await writer.drain()

        tasks = [asyncio.ensure_future(upward()), asyncio.ensure_future(downward())]
        if losing:
            await dropping.wait()
            await asyncio.sleep(self.hold)
            self.lost.set()
            for t in tasks:
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._close(writer, up_writer)

    async def _close(self, *writers: asyncio.StreamWriter) -> None:
        for w in writers:
            self._writers.discard(w)
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            await self._close(*self._writers)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
