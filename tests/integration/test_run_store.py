"""RunStore's write-behind on the session's nx-27017, reached through a TCP forwarder that the
test can switch off and on again (real sockets: MongoDB becomes unreachable, then back)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from urllib.parse import urlparse

import pymongo

from services.localstack import Cluster
from services.scheduler.models import Run, StepRun
from services.scheduler.run_store import RunStore


class Forwarder:
    """Forwards 127.0.0.1:<port> to a target; while off, it drops its connections and
    closes new ones at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.enabled = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def off(self) -> None:
        self.enabled = False
        for w in list(self._writers):
            w.close()

    def on(self) -> None:
        self.enabled = True

    async def stop(self) -> None:
        self.off()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def a_run(run_id: str) -> Run:
    step = StepRun(step_id="s", task_id="t", task_version="1.0.0", state="PENDING")
    return Run(run_id, "QUEUED", "{}", 5, task_id="t", created_at=datetime.now(UTC), steps=[step])


def test_a_failed_flush_keeps_its_records_and_writes_them_once_mongodb_is_back(
    cluster: Cluster,
) -> None:
    """A step attempt and a run's end written behind while MongoDB is unreachable are kept
    (between attempts), and written when it is back: history is not lost to an outage."""
    assert cluster.endpoints is not None
    uri = cluster.endpoints.mongodb_uri
    database = f"wtm_store_{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[int, int]:
        forwarder = Forwarder(urlparse(uri).port or 27017)
        await forwarder.start()
        store = RunStore(
            f"mongodb://127.0.0.1:{forwarder.port}", database, flush_interval=0.05, timeout_ms=300
        )
        try:
            await store.start()
            run = a_run("r1")
            await store.insert_runs([(run, {})])
            forwarder.off()
            done = StepRun(
                step_id="s", task_id="t", task_version="1.0.0", state="COMPLETED", attempt=1
            )
            store.record_step_later("r1", done)
            store.update_run_later("r1", {"state": "COMPLETED", "output_json": '{"ok": 1}'})
            kept = 0
            for _ in range(30):  # MongoDB away for 1.5 s: several flushes fail meanwhile
                await asyncio.sleep(0.05)
                kept = max(kept, store.pending)
            forwarder.on()
            for _ in range(200):  # the next retry writes them (backoff is well under 10 s)
                if store.pending == 0:
                    break
                await asyncio.sleep(0.05)
            return kept, store.pending
        finally:
            await store.close()
            await forwarder.stop()

    kept, left = asyncio.run(scenario())
    assert (kept, left) == (2, 0)
    with pymongo.MongoClient(uri) as mongo:
        try:
            db = mongo[database]
            assert db["runs"].find_one({"_id": "r1"})["state"] == "COMPLETED"
            assert db["step_runs"].count_documents({"run_id": "r1", "state": "COMPLETED"}) == 1
        finally:
            mongo.drop_database(database)
