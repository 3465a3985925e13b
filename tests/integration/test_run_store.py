"""RunStore's write-behind on the session's nx-27017, reached through a TCP forwarder that the
test can switch off and on again (real sockets: MongoDB becomes unreachable, then back)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import pymongo
import pytest

from services.localstack import Cluster
from services.scheduler import insert_landings, run_docs, run_store
from services.scheduler.models import Run, StepRun
from services.scheduler.run_store import RunStore


class Forwarder:
    """Forwards 127.0.0.1:<port> to a target; while off, it drops its connections and
    closes new ones at once; while stalled, it holds what either side sends (a server that
    stopped answering without closing anything) until ``on``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.enabled = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._serving: set[asyncio.Task[None]] = set()  # one per connection, ended by stop()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def off(self) -> None:
        self.enabled = False
        for w in list(self._writers):
            w.close()

    def on(self) -> None:
        self.enabled = True
        self._flowing.set()

    def stall(self) -> None:
        self._flowing.clear()

    async def stop(self) -> None:
        self.off()
        for task in list(self._serving):  # a stalled connection's pipes wait for "on"
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        if not self.enabled:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    await self._flowing.wait()
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
            f"mongodb://127.0.0.1:{forwarder.port}", database, flush_interval=0.05, timeout_s=2.0
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


def test_a_flush_in_several_calls_writes_every_record_and_lets_new_runs_inserts_go_first(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 step attempts, 50 runs' ends and 50 RUNNING marks go in calls of FLUSH_CHUNK or
    more (up to FLUSH_CALLS per kind); none is lost between calls. A flush that starts while
    a new run's insert is in flight writes nothing until that insert is done."""
    assert cluster.endpoints is not None
    uri = cluster.endpoints.mongodb_uri
    database = f"wtm_store_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(run_store, "INSERT_FIRST_S", 30.0)  # here: until the insert is done
    ids = [f"r{i}" for i in range(100)]

    async def scenario() -> tuple[bool, set[str]]:
        store = RunStore(uri, database, flush_interval=3600)  # flushed by the test alone
        try:
            await store.start()
            await store.insert_runs([(a_run(r), {}) for r in ids])
            for r in ids[:50]:
                store.record_step_later(r, StepRun("s", "t", "1.0.0", "COMPLETED", attempt=1))
                store.update_run_later(r, {"state": "COMPLETED", "output_json": f'"{r}"'})
            for r in ids[50:]:
                store.mark_running_later(r, datetime.now(UTC))
            release = asyncio.Event()

            async def an_insert_in_flight() -> None:
                async with store._insert([]):
                    await release.wait()

            holder = asyncio.create_task(an_insert_in_flight())
            await asyncio.sleep(0)
            flushing = asyncio.create_task(store.flush(young_marks=True))
            await asyncio.sleep(0.3)
            waited = not flushing.done() and store.pending == 0  # taken, but not written
            release.set()
            await holder
            return waited, await flushing
        finally:
            await store.close()

    waited, written = asyncio.run(scenario())
    assert waited
    assert written == set(ids[:50])
    with pymongo.MongoClient(uri) as mongo:
        try:
            db = mongo[database]
            states = {d["_id"]: d["state"] for d in db["runs"].find({}, {"state": 1})}
            assert states == {r: "COMPLETED" if r in written else "RUNNING" for r in ids}
            assert db["step_runs"].count_documents({"state": "COMPLETED"}) == 50
        finally:
            mongo.drop_database(database)


def test_a_flush_is_not_held_back_for_long_by_inserts(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inserts in flight all the time (a stream of submits) delay each call of a flush by at
    most INSERT_FIRST_S: the history is still written."""
    assert cluster.endpoints is not None
    uri = cluster.endpoints.mongodb_uri
    database = f"wtm_store_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(run_store, "INSERT_FIRST_S", 0.01)

    async def scenario() -> set[str]:
        store = RunStore(uri, database, flush_interval=3600)
        try:
            await store.start()
            await store.insert_runs([(a_run("r1"), {})])
            store.update_run_later("r1", {"state": "COMPLETED"})
            async with store._insert([]):  # never done while the flush runs
                return await asyncio.wait_for(store.flush(), 10)
        finally:
            await store.close()

    try:
        assert asyncio.run(scenario()) == {"r1"}
    finally:
        with pymongo.MongoClient(uri) as mongo:
            mongo.drop_database(database)


def test_while_submits_come_a_flush_call_waits_for_the_next_insert_to_land(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An insert began a moment ago and none is in flight (a client submitting one run after
    another, between two): a flush call waits for the next insert to land and goes then,
    where the one after it is furthest off. With no insert lately it goes at once."""
    assert cluster.endpoints is not None
    uri = cluster.endpoints.mongodb_uri
    database = f"wtm_store_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(run_store, "INSERT_FIRST_S", 30.0)
    monkeypatch.setattr(insert_landings, "ACTIVE_S", 30.0)

    async def scenario() -> tuple[bool, set[str], set[str]]:
        store = RunStore(uri, database, flush_interval=3600)
        try:
            await store.start()
            await store.insert_runs([(a_run(r), {}) for r in ("r1", "r2")])  # lands
            store.update_run_later("r1", {"state": "COMPLETED"})
            flushing = asyncio.create_task(store.flush())
            await asyncio.sleep(0.3)
            waited = not flushing.done()
            async with store._insert([]):  # the next submit's insert
                await asyncio.sleep(0.05)
            first = await asyncio.wait_for(flushing, 10)
            monkeypatch.setattr(insert_landings, "ACTIVE_S", 0.0)  # no submits lately
            store.update_run_later("r2", {"state": "COMPLETED"})
            second = await asyncio.wait_for(store.flush(), 5)
            return waited, first, second
        finally:
            await store.close()

    try:
        waited, first, second = asyncio.run(scenario())
        assert waited
        assert first == {"r1"} and second == {"r2"}
    finally:
        with pymongo.MongoClient(uri) as mongo:
            mongo.drop_database(database)


def test_a_running_mark_is_written_once_the_run_has_run_for_a_while_and_not_if_it_ends_first(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flusher keeps a RUNNING mark back for RUNNING_AFTER_S: a run still running then is
    shown RUNNING; one that ended meanwhile gets only its end (no RUNNING write, which
    nx-27017 would pay for with a find and a rewrite of the document)."""
    assert cluster.endpoints is not None
    uri = cluster.endpoints.mongodb_uri
    database = f"wtm_store_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(run_store, "RUNNING_AFTER_S", 0.6)

    async def scenario() -> tuple[dict[str, str], dict[str, str], int]:
        store = RunStore(uri, database, flush_interval=0.02)
        seen: dict[str, str] = {}
        try:
            await store.start()
            await store.insert_runs([(a_run(r), {}) for r in ("long", "short")])
            store.mark_running_later("long", datetime.now(UTC))
            store.mark_running_later("short", datetime.now(UTC))
            await asyncio.sleep(0.2)  # several flushes: both marks are still too young
            seen = await _states(store)
            store.update_run_later("short", {"state": "COMPLETED"})
            for _ in range(100):
                await asyncio.sleep(0.05)
                if (await _states(store)).get("long") == "RUNNING":
                    break
            return seen, await _states(store), store.pending
        finally:
            await store.close()

    try:
        early, late, pending = asyncio.run(scenario())
        assert early == {"long": "QUEUED", "short": "QUEUED"}
        assert late == {"long": "RUNNING", "short": "COMPLETED"}
        assert pending == 0
    finally:
        with pymongo.MongoClient(uri) as mongo:
            mongo.drop_database(database)


async def _states(store: RunStore) -> dict[str, str]:
    return {d["_id"]: d["state"] async for d in store._runs.find({}, {"state": 1})}


def test_the_end_of_a_run_whose_insert_is_in_flight_waits_for_it(cluster: Cluster) -> None:
    """A run can end before its insert has landed (the insert and the run start together).
    Its end is kept, not sent to miss the document, and written once the insert is done."""
    assert cluster.endpoints is not None
    uri = cluster.endpoints.mongodb_uri
    database = f"wtm_store_{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[set[str], int, dict[str, int], set[str], str]:
        store = RunStore(uri, database, flush_interval=3600)  # flushed by the test alone
        try:
            await store.start()
            release = asyncio.Event()

            async def slow_insert() -> None:
                async with store._insert(["r1"]):
                    await release.wait()
                    await store._runs.insert_one(run_docs.new_doc(a_run("r1"), {}))

            inserting = asyncio.create_task(slow_insert())
            await asyncio.sleep(0)
            store.update_run_later("r1", {"state": "COMPLETED"})
            first = await store.flush()
            kept, missed = store.pending, dict(store._unmatched)  # not tried: not missed
            release.set()
            await inserting
            second = await store.flush()
            return first, kept, missed, second, (await _states(store))["r1"]
        finally:
            await store.close()

    try:
        first, kept, missed, second, state = asyncio.run(scenario())
        assert (first, kept, missed) == (set(), 1, {})
        assert (second, state) == ({"r1"}, "COMPLETED")
    finally:
        with pymongo.MongoClient(uri) as mongo:
            mongo.drop_database(database)


def test_a_batch_keeps_one_step_template_and_unfinished_runs_come_back_with_whole_plans(
    cluster: Cluster,
) -> None:
    """The runs of a batch refer to one template in ``run_plans``; reading the unfinished
    runs back (what a rebuild after Redis lost its data does) gives every plan whole."""
    assert cluster.endpoints is not None
    uri = cluster.endpoints.mongodb_uri
    database = f"wtm_store_{uuid.uuid4().hex[:8]}"
    fields = {"task_id": "t", "timeout": "30"}
    steps = [{"step_id": "s", "deps": [], "dependents": [], "fields": fields}]

    def plan(run: Run) -> dict[str, Any]:
        run_fields = {"run_id": run.run_id, "input_json": run.input_json, "sinks": '["s"]'}
        return {"run_fields": run_fields, "steps": steps}

    runs = [a_run(f"r{i}") for i in range(5)]

    async def scenario() -> list[dict[str, Any]]:
        store = RunStore(uri, database, flush_interval=3600)
        try:
            await store.start()
            await store.insert_runs([(run, plan(run)) for run in runs])
            await store.insert_run(a_run("r5"), plan(a_run("r5")))  # template known: reused
            ids = [r async for batch in store.unfinished_runs(batch_size=4) for r in batch]
            return await store.with_plans(ids)
        finally:
            await store.close()

    try:
        found = asyncio.run(scenario())
        assert sorted(d["run_id"] for d in found) == [f"r{i}" for i in range(6)]
        for d in found:
            assert d["plan"] == plan(a_run(d["run_id"]))
        with pymongo.MongoClient(uri) as mongo:
            assert mongo[database]["run_plans"].count_documents({}) == 1
            stored = mongo[database]["runs"].find_one({"_id": "r0"})
            assert "steps" not in stored["plan"]
    finally:
        with pymongo.MongoClient(uri) as mongo:
            mongo.drop_database(database)
