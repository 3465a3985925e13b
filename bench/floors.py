"""The ``floors`` figure: what the parts under issue 4's speed targets cost on this machine
by themselves, with no scheduling logic at all.

- a unary gRPC call from a Python client to the scheduler's asyncio server (a health check):
  every submit-and-wait makes one, and a run's step crosses the executor stream twice more;
  back to back, and each after 10 ms of quiet, as a run's hops come (both processes then
  wake from sleep for each call, which on this VM costs more than the call);
- a Redis PING round trip after 10 ms of quiet, likewise;
- a redis-py asyncio round trip (two PINGs) through a pooled pipeline and through one
  connection read and written directly (what the scheduler's script pipelines use): CPU
  of this process per round trip;
- valkey's Lua: an empty script, ten fields set with one ``redis.call`` and with ten;
- nx-27017 (the local stack's MongoDB, written in Python): the writes every run needs (the
  run inserted, its step attempt inserted, its end updated), made in batches through the
  scheduler's own ``RunStore`` as under bulk load, with nothing else running: its CPU per
  run and the runs per second it sustains, a ceiling for the whole system's throughput.

Each is measured in isolation and bounded in count; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import redis
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common import tls
from services.localstack import Cluster
from services.scheduler.models import Run, StepRun
from services.scheduler.planning import new_run_id
from services.scheduler.run_store import RunStore

CORES = os.cpu_count() or 1
TARGET_RUNS_PER_SECOND = 1250


def floors(cluster: Cluster, count: int) -> dict[str, Any]:
    assert cluster.endpoints is not None
    nx = asyncio.run(_nx_history_writes(cluster, max(500, 4 * count)))
    return {
        "grpc_unary_call_ms": _grpc_unary(cluster.scheduler_address, count),
        "grpc_unary_call_after_10ms_idle_ms": _grpc_unary(
            cluster.scheduler_address, max(50, count // 5), idle_s=0.01
        ),
        "redis_round_trip_cpu_us": asyncio.run(
            _redis_round_trips(cluster.endpoints.redis_admin_url)
        ),
        "redis_round_trip_after_10ms_idle_ms": asyncio.run(
            _redis_after_idle(cluster.endpoints.redis_admin_url, max(50, count // 5))
        ),
        "valkey_lua_us": _valkey_lua(cluster.endpoints.redis_admin_url),
        "nx_27017_history_writes": nx,
        "cpu_budget_ms_per_run_at_target": round(CORES * 1000 / TARGET_RUNS_PER_SECOND, 2),
    }


def _grpc_unary(address: str, count: int, idle_s: float = 0.0) -> dict[str, float]:
    """Health checks one after another, or each after ``idle_s`` of quiet (as a run's hops
    come, between steps): then both processes wake from sleep for each call."""
    with tls.channel(address) as channel:  # WTM_TLS_CA: set by the bench for its stack
        check = health_pb2_grpc.HealthStub(channel).Check
        request = health_pb2.HealthCheckRequest()
        for _ in range(50):
            check(request, timeout=5)
        times = []
        for _ in range(count):
            time.sleep(idle_s)
            t0 = time.perf_counter()
            check(request, timeout=5)
            times.append(time.perf_counter() - t0)
    return _p50_p99(times)


def _p50_p99(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50": round(ordered[len(ordered) // 2] * 1000, 3),
        "p99": round(ordered[int(len(ordered) * 0.99)] * 1000, 3),
    }


async def _redis_round_trips(url: str, n: int = 2000) -> dict[str, float]:
    client = aioredis.Redis.from_url(url)
    connection = client.connection_pool.make_connection()
    try:

        async def pooled() -> None:
            async with client.pipeline(transaction=False) as pipe:
                pipe.ping()
                pipe.ping()
                await pipe.execute()

        async def direct() -> None:
            await connection.send_packed_command(
                connection.pack_commands([("PING",), ("PING",)]), check_health=False
            )
            await connection.read_response()
            await connection.read_response()

        out = {}
        for name, call in (("pooled_pipeline", pooled), ("connection_direct", direct)):
            for _ in range(200):
                await call()
            c0 = time.process_time()
            for _ in range(n):
                await call()
            out[name] = round((time.process_time() - c0) / n * 1e6, 1)
        return out
    finally:
        await connection.disconnect()
        await client.aclose()


async def _redis_after_idle(url: str, n: int) -> dict[str, float]:
    """PING round trips, each after 10 ms of quiet: both ends wake from sleep each time."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
        times = []
        for _ in range(n):
            await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            await client.ping()
            times.append(time.perf_counter() - t0)
        return _p50_p99(times)
    finally:
        await client.aclose()


def _valkey_lua(url: str, n: int = 500) -> dict[str, float]:
    r = redis.Redis.from_url(url)
    scripts = {
        "empty_script": "return 1",
        "hset_10_fields_one_call": "redis.call('HSET', KEYS[1], "
        + ", ".join(f"'f{i}', 'v'" for i in range(10))
        + ") return 1",
        "hset_10_fields_ten_calls": "for i = 1, 10 do redis.call('HSET', KEYS[1], 'f' .. i, "
        "'v') end return 1",
    }
    out = {}
    try:
        for name, body in scripts.items():
            sha = r.script_load(body)
            r.config_resetstat()
            for i in range(n):
                r.evalsha(sha, 1, f"wtm-bench-floor:{i}")
            out[name] = r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
            r.delete(*[f"wtm-bench-floor:{i}" for i in range(n)])
    finally:
        r.close()
    return out


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _nx_history_writes(cluster: Cluster, n: int) -> dict[str, Any]:
    """Insert ``n`` runs, then record one step attempt and the end of each, in batches of
    500 (as ``SubmitRuns`` and the write-behind do), four batches at a time so nx-27017 has
    the machine to itself: its CPU per run, and the runs per second it sustains."""
    assert cluster.endpoints is not None
    [nx] = [c for c in cluster.stack.group.children if c.name == "nx-27017"]
    database = f"wtm_bench_floor_{os.getpid()}"
    store = RunStore(cluster.endpoints.mongodb_uri, database)
    await store.start()

    async def batch(size: int) -> None:
        runs = [_run() for _ in range(size)]
        await store.insert_runs([(run, _plan(run)) for run in runs])
        for run in runs:
            _finish(run)
            store.record_step_later(run.run_id, run.steps[0])
            store.update_run_later(run.run_id, run.final_fields(run.summary()))
        await store.flush()

    try:
        cpu0, t0 = _cpu_seconds(nx.pid), time.perf_counter()
        sizes = [min(500, n - first) for first in range(0, n, 500)]
        for i in range(0, len(sizes), 4):
            await asyncio.gather(*(batch(size) for size in sizes[i : i + 4]))
        cpu, wall = _cpu_seconds(nx.pid) - cpu0, time.perf_counter() - t0
    finally:
        await store.close()
        mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            cluster.endpoints.mongodb_uri
        )
        with mongo:
            mongo.drop_database(database)
    return {
        "runs": n,
        "cpu_ms_per_run": round(cpu / n * 1000, 3),
        "runs_per_second": round(n / wall),
        "is": "the run inserted, its step attempt inserted, its end updated; batches of "
        "500, four at a time, nothing else running",
    }


def _finish(run: Run) -> None:
    step = run.steps[0]
    run.state = step.state = "COMPLETED"
    step.attempt, step.output_json = 1, '{"ok": true}'
    run.started_at = step.started_at = datetime.now(UTC)
    run.ended_at = step.ended_at = step.started_at + timedelta(milliseconds=1)
    run.output_json = step.output_json


def _run() -> Run:
    return Run(
        run_id=new_run_id(),
        state="QUEUED",
        input_json='{"i": 1}',
        priority=5,
        task_id="noop",
        batch_id="batch-floor",
        created_at=datetime.now(UTC),
        steps=[
            StepRun(
                step_id="noop",
                task_id="noop",
                task_version="1.0.0",
                state="PENDING",
                input_id="input_001",
                output_id="output_001",
            )
        ],
    )


def _plan(run: Run) -> dict[str, Any]:
    """A plan of the size a one-step run's has."""
    fields = {
        "task_id": "noop",
        "task_version": "1.0.0",
        "digest": "0" * 64,
        "entry_point": "main.py:Task",
        "queue": "default",
        "timeout": "30",
        "max_retries": "3",
        "input_id": "input_001",
        "output_id": "output_001",
        "mapping": "{}",
        "reads": "[]",
        "read_output_ids": "{}",
    }
    return {
        "run_fields": {"run_id": run.run_id, "input_json": run.input_json, "priority": "5"},
        "steps": [{"step_id": "noop", "deps": [], "dependents": [], "fields": fields}],
    }
