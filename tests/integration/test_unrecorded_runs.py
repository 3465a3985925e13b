"""``UnrecordedRuns`` on a real valkey-server and nx-27017: a new run's submit is indexed, with
its plan, until its document is written; one never written is recorded whole from Redis, and a Redis
flush after that rebuilds it from MongoDB. (The stack-level trial, a replica killed while
its insert is held, is in test_scheduler_durability.py.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pymongo
import redis.asyncio as aioredis

from services.localstack import Cluster
from services.scheduler import keys
from services.scheduler.clock import FakeClock
from services.scheduler.history import History
from services.scheduler.listeners import Listeners
from services.scheduler.models import Run
from services.scheduler.queue_records import QueuedStep, Submission
from services.scheduler.run_queue import RunQueue
from services.scheduler.run_store import RunStore
from services.scheduler.stored_plans import plan_doc
from services.scheduler.unrecorded_runs import UnrecordedRuns


def a_submission(run_id: str, created_ms: int) -> Submission:
    def step(step_id: str, deps: list[str], dependents: list[str]) -> QueuedStep:
        fields = {"task_id": "t", "task_version": "1.0.0", "queue": "q", "timeout": "10",
                  "max_retries": "0", "input_id": f"in_{step_id}", "output_id": f"out_{step_id}",
                  "mapping": "{}", "reads": json.dumps(deps)}  # fmt: skip
        return QueuedStep(step_id, deps, dependents, fields)

    fields = {"run_id": run_id, "input_json": '{"n": 1}', "priority": "5", "task_id": "",
              "pipeline_id": "p", "pipeline_version": "1", "labels": '{"team": "x"}',
              "request_id": "", "batch_id": "", "sinks": '["b"]', "submitted_by": "key1",
              "namespace": "default", "created_ms": str(created_ms)}  # fmt: skip
    steps = [step("a", [], ["b"]), step("b", ["a"], [])]
    return Submission(run_id, fields, steps, index_key=run_id)  # each its own submit


def test_a_run_never_inserted_is_recorded_whole_from_redis_and_rebuilt_after_a_flush(
    cluster: Cluster,
) -> None:
    assert cluster.endpoints is not None
    url = cluster.endpoints.redis_url.rsplit("/", 1)[0] + "/1"  # the Lua tests' database
    admin_url = cluster.endpoints.redis_admin_url.rsplit("/", 1)[0] + "/1"
    uri = cluster.endpoints.mongodb_uri
    database = f"wtm_unrecorded_{uuid.uuid4().hex[:8]}"

    async def scenario() -> dict[str, Any]:
        admin = aioredis.Redis.from_url(admin_url)
        await admin.flushdb()
        client = aioredis.Redis.from_url(url)
        clock = FakeClock()
        queue = RunQueue(client, finished_ttl_s=60, clock=clock)
        store = RunStore(uri, database, flush_interval=3600)
        unrecorded = UnrecordedRuns(client, queue.reader, store, after_s=30, check_every_s=0)
        seen: dict[str, Any] = {}
        try:
            await store.start()
            now = clock.now_ms()
            kept, lost = a_submission("kept", now), a_submission("lost", now)
            await queue.submit_many([kept, lost])
            seen["indexed"] = sorted(await client.zrange(keys.UNRECORDED, 0, -1))
            # "kept" is inserted, as its submit does; "lost"'s replica died first.
            run = Run.from_redis(*(await queue.reader.read_run("kept")))
            assert await store.insert_run(run, plan_doc(kept))
            await unrecorded.forget_recorded()
            seen["after_forget"] = await client.zrange(keys.UNRECORDED, 0, -1)
            seen["plans_left"] = [await client.exists(keys.plan(r)) for r in ("kept", "lost")]
            seen["too_young"] = await unrecorded.record(now + 29_000)
            seen["recorded_ended"] = await unrecorded.record(now + 31_000)
            seen["index_left"] = await client.zcard(keys.UNRECORDED)
            seen["plan_left"] = await client.exists(keys.plan("lost"))
            [doc] = await store.with_plans(["lost"])
            seen["doc"] = doc
            # Its submit's insert lands after all: the document is this run's, not a collision.
            late = Run.from_redis(*(await queue.reader.read_run("lost")))
            seen["late_insert"] = await store.insert_run(late, plan_doc(lost))
            seen["other_insert"] = await store.insert_run(run, plan_doc(kept))
            # Redis loses everything: the run comes back from MongoDB, as its plan says.
            await admin.flushdb()
            history = History(queue, store, Listeners(), lease_seconds=3, clock=clock)
            seen["rebuilt"] = await history.recover()
            seen["steps"] = {
                s: (await client.hget(keys.step("lost", s), "state")).decode() for s in "ab"
            }
            seen["indexed_again"] = await client.zcard(keys.UNRECORDED)
            seen["plan_submitted"] = plan_doc(lost)
            return seen
        finally:
            await store.close()
            await queue.close()
            await client.aclose()
            await admin.flushdb()
            await admin.aclose()

    try:
        seen = asyncio.run(scenario())
    finally:
        with pymongo.MongoClient(uri) as mongo:
            mongo.drop_database(database)
    assert seen["indexed"] == [b"kept", b"lost"]
    assert seen["after_forget"] == [b"lost"] and seen["plans_left"] == [0, 1]
    assert seen["too_young"] == [] and seen["recorded_ended"] == []  # "lost" has not ended
    assert (seen["index_left"], seen["plan_left"]) == (0, 0)
    doc = seen["doc"]
    assert doc["recorded"] == "from_redis" and doc["state"] == "QUEUED"
    assert doc["labels"] == {"team": "x"} and doc["pipeline_id"] == "p"
    assert doc["plan"] == seen["plan_submitted"]  # whole, as the submit would have stored it
    assert seen["late_insert"] is True and seen["other_insert"] is False
    assert seen["rebuilt"] == 2  # both unfinished: "kept" as submitted, "lost" as recorded
    assert seen["steps"] == {"a": "QUEUED", "b": "PENDING"}
    assert seen["indexed_again"] == 0  # a rebuild is a run MongoDB holds
