"""``python -m bench.skeleton``: what one sequential run costs on this design's parts alone,
with none of its logic, beside Celery's and ours in the same invocation (issue 18: how far
the latency targets are from the parts' own floor).

The skeleton makes the hops of one sequential one-step run (``docs/speed.md``, "Every hop of
a run") and nothing else:

  the client's unary gRPC call (a sync channel, as the SDK's) to an asyncio gRPC server in
  a second process ("the scheduler"); one Redis script round trip; the assignment down a
  bidirectional gRPC stream to a third process ("the executor"); over a socket to a fourth
  ("the task worker"), which answers; the result up the stream; a second Redis script round
  trip; the answer.

TLS with the local stack's certificates, as ours; bytes, not protobuf messages; no MongoDB,
no planning, records, leases, history, tracing or metrics. Each hop is as cheap as
gRPC-Python, redis-py and a socket make it, so what it costs is a floor for any scheduler
built on these parts, and ours less the skeleton is what our logic adds. Beside it, the
same skeleton without the worker process (the executor answers itself: what the task's own
process costs), in plaintext (what TLS costs), and with each run inserted into MongoDB beside
the first round trip, the answer waiting for it (what the submit's durable record costs).

The bench's 3-step DAG (50 ms, then two steps of 100 ms at once) is made the same way: its
first step, one round trip that records it, the two branches to two workers, each recorded
in a round trip, the answer; its overhead (the wall time less 150 ms) is measured beside
ours and Celery's too.

Each Celery pool of ``--compare celery``'s is started in turn; beside it the five systems
(Celery, ours, the three skeletons) take turns in blocks, the order
rotated every block, so a drift of the machine's speed favours none. Printed: each system's
p50/p95/p99 per pool, and the ratios to the best pool's Celery. Bounded: ``--runs`` per
system per pool (default 600). Every process started here is stopped here, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

BLOCKS = 12
SCRIPT = "redis.call('HSET', KEYS[1], 'state', ARGV[1]) return 1"  # one write, as a floor
_LEN = struct.Struct("!I")


# The processes ------------------------------------------------------------------------------


def _identity(b: bytes) -> bytes:
    return b


async def scheduler(port: int, redis_url: str, tls_dir: str, mongodb_uri: str = "") -> None:
    """The "scheduler": Submit waits for its run; Connect is the executor's stream. With
    ``mongodb_uri``, each run is also inserted into MongoDB beside the first round trip and
    the answer waits for it, as a submit's durable record in ours."""
    import grpc
    import redis.asyncio as aioredis
    from grpc import aio

    from common import tls

    r = aioredis.Redis.from_url(redis_url)
    sha = await r.script_load(SCRIPT)
    outbox: asyncio.Queue[bytes] = asyncio.Queue()
    waiting: dict[bytes, asyncio.Future[bytes]] = {}

    runs: Any = None
    if mongodb_uri:
        from pymongo import AsyncMongoClient

        runs = AsyncMongoClient(mongodb_uri)["wtm_skeleton"]["runs"]

    async def step(run_id: bytes, step_id: bytes, sleep_ms: int) -> bytes:
        """One step: assigned down the stream, its result recorded in one round trip."""
        key = run_id + b"/" + step_id
        done = asyncio.get_running_loop().create_future()
        waiting[key] = done
        outbox.put_nowait(key + b"|" + str(sleep_ms).encode())
        result = await done
        await r.evalsha(sha, 1, b"skel:" + key, b"done")
        return result

    async def submit(request: bytes, context: aio.ServicerContext) -> bytes:
        kind, _, run_id = request.partition(b":")  # b"one:<id>" or b"dag:<id>"
        queued = asyncio.ensure_future(r.evalsha(sha, 1, b"skel:" + run_id, b"queued"))
        inserted = (
            None
            if runs is None
            else asyncio.ensure_future(
                runs.insert_one({"_id": run_id.decode(), "state": "QUEUED", "input_json": "{}"})
            )
        )
        await queued
        if kind == b"dag":  # the bench's DAG: 50 ms, then two of 100 ms at once
            await step(run_id, b"a", 50)
            result = b"".join(
                await asyncio.gather(step(run_id, b"b", 100), step(run_id, b"c", 100))
            )
        else:
            result = await step(run_id, b"a", 0)
        if inserted is not None:
            await inserted
        return result

    async def connect(
        requests: AsyncIterator[bytes], context: aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async def read() -> None:
            async for message in requests:
                key, _, result = message.partition(b"|")
                waiting.pop(key).set_result(result)

        reader = asyncio.create_task(read())
        try:
            while True:
                yield await outbox.get()
        finally:
            reader.cancel()

    handler = grpc.method_handlers_generic_handler(
        "skel.Scheduler",
        {
            "Submit": grpc.unary_unary_rpc_method_handler(submit, _identity, _identity),
            "Connect": grpc.stream_stream_rpc_method_handler(connect, _identity, _identity),
        },
    )
    server = aio.server()
    server.add_generic_rpc_handlers((handler,))
    if tls_dir:  # as our stack: the server's certificate, from its throwaway CA
        pem, key = f"{tls_dir}/server.pem", f"{tls_dir}/server.key"
        server.add_secure_port(f"127.0.0.1:{port}", tls.server_credentials(pem, key))
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def answer(assignment: bytes) -> bytes:
    """What a step answers: its key, after sleeping as long as it says (ms)."""
    key, _, sleep_ms = assignment.partition(b"|")
    if int(sleep_ms):
        time.sleep(int(sleep_ms) / 1000)
    return json.dumps({"output": {}, "of": key.decode()}).encode()


def task_worker(fd: int) -> None:
    """The "task worker": a length-prefixed assignment in, its step's answer out."""
    with socket.socket(fileno=fd) as sock:
        while head := sock.recv(_LEN.size, socket.MSG_WAITALL):
            body = answer(sock.recv(_LEN.unpack(head)[0], socket.MSG_WAITALL))
            sock.sendall(_LEN.pack(len(body)) + body)


async def executor(port: int, with_worker: bool, tls_dir: str, workers: int = 2) -> None:
    """The "executor": one stream; each assignment through a free worker (or not) and back.
    Two workers, so that a DAG's two branches run at once."""
    from common import tls

    loop = asyncio.get_running_loop()
    free: asyncio.Queue[socket.socket] = asyncio.Queue()
    procs = []
    for _ in range(workers if with_worker else 0):
        mine, theirs = socket.socketpair()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.skeleton", "--role", "worker"]
                + ["--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
            )
        )
        theirs.close()
        mine.setblocking(False)
        free.put_nowait(mine)
    up: asyncio.Queue[bytes] = asyncio.Queue()

    async def requests() -> AsyncIterator[bytes]:
        while True:
            yield await up.get()

    async def recv_exactly(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            if not chunk:
                raise ConnectionError("the worker went away")
            data += chunk
        return data

    async def run(assignment: bytes) -> None:
        key, _, sleep_ms = assignment.partition(b"|")
        if not procs:  # the executor answers itself
            await asyncio.sleep(int(sleep_ms) / 1000)
            up.put_nowait(key + b"|" + json.dumps({"output": {}, "of": key.decode()}).encode())
            return
        sock = await free.get()
        try:
            await loop.sock_sendall(sock, _LEN.pack(len(assignment)) + assignment)
            size = _LEN.unpack(await recv_exactly(sock, _LEN.size))[0]
            up.put_nowait(key + b"|" + await recv_exactly(sock, size))
        finally:
            free.put_nowait(sock)

    tasks: set[asyncio.Task[None]] = set()
    try:
        ca = f"{tls_dir}/ca.pem" if tls_dir else ""
        async with tls.aio_channel(f"127.0.0.1:{port}", ca, traced=False) as channel:
            connect = channel.stream_stream("/skel.Scheduler/Connect", _identity, _identity)
            call = connect(requests())
            print("ready", flush=True)
            async for assignment in call:  # each to a slot of its own (a task), as ours
                task = asyncio.create_task(run(assignment))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        while not free.empty():
            free.get_nowait().close()
        for proc in procs:
            proc.wait(10)


class Calls:
    """A skeleton's runs, each submitted and waited for in one call: a no-op (calling it),
    and the bench's 3-step DAG (``dag``: 50 ms, then two steps of 100 ms at once)."""

    def __init__(self, submit: Callable[..., Any]) -> None:
        self._submit = submit
        self._ids = iter(range(10**9))

    def __call__(self) -> Any:
        return self._submit(f"one:run-{next(self._ids)}".encode(), timeout=30)

    def dag(self) -> Any:
        return self._submit(f"dag:run-{next(self._ids)}".encode(), timeout=30)


@contextlib.contextmanager
def skeleton(
    redis_url: str, with_worker: bool, tls_dir: Path | None = None, mongodb_uri: str = ""
) -> Iterator[Calls]:
    """A skeleton's processes, running (TLS with ``tls_dir``'s certificates, as the local
    stack's); yields its calls: one sequential no-op run (calling it), one DAG (``dag``)."""
    from common import tls
    from services.localstack.processes import free_port

    port = free_port()
    procs: list[subprocess.Popen[str]] = []
    try:
        for role in ("scheduler", "executor"):
            args = ["--role", role, "--port", str(port), "--redis", redis_url]
            args += ["--tls-dir", str(tls_dir or ""), "--mongodb", mongodb_uri]
            if role == "executor" and not with_worker:
                args.append("--no-worker")
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.skeleton", *args],
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", role
        channel = tls.channel(f"127.0.0.1:{port}", f"{tls_dir}/ca.pem" if tls_dir else "")
        submit = channel.unary_unary("/skel.Scheduler/Submit", _identity, _identity)
        calls = Calls(submit)
        for _ in range(20):  # warm the channel, the stream and the worker
            calls()
        calls.dag()
        yield calls
        channel.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# The measurement ----------------------------------------------------------------------------


def figures(times: list[float]) -> dict[str, float]:
    from bench.figures import ms, pct

    return {
        "p50_ms": ms(pct(times, 50)),
        "p95_ms": ms(pct(times, 95)),
        "p99_ms": ms(pct(times, 99)),
    }


def alternate(
    systems: dict[str, Callable[[], Any]], runs: int, blocks: int = BLOCKS
) -> dict[str, list[float]]:
    """``runs`` sequential calls of each system, in ``blocks`` blocks taking turns, the
    order rotated every block (a drift of the machine's speed favours none)."""
    times: dict[str, list[float]] = {name: [] for name in systems}
    names = list(systems)
    per = max(1, runs // blocks)
    for block in range(blocks):
        k = block % len(names)
        for name in names[k:] + names[:k]:
            call = systems[name]
            for _ in range(per):
                t0 = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.skeleton", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--runs", type=int, default=600, help="sequential runs of each system, per pool"
    )
    parser.add_argument(
        "--role", choices=["scheduler", "executor", "worker"], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--mongodb", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-worker", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.role == "scheduler":
        asyncio.run(scheduler(ns.port, ns.redis, ns.tls_dir, ns.mongodb))
        return 0
    if ns.role == "executor":
        asyncio.run(executor(ns.port, not ns.no_worker, ns.tls_dir))
        return 0
    if ns.role == "worker":
        task_worker(ns.fd)
        return 0
    if not 1 <= ns.runs <= 20_000:
        parser.error("--runs: 1 to 20000")

    from bench import celery_compare
    from bench.figures import pct
    from bench.run import DAG
    from bench.stack import BENCH_TASKS, PREFETCH_PER_SLOT, SLOTS, bench_stack

    env = {"WTM_PREFETCH": str(PREFETCH_PER_SLOT * SLOTS)}
    dags = max(BLOCKS, ns.runs // 20)  # each DAG sleeps 150 ms: fewer of them
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count()},
        "runs_each": ns.runs,
        "dags_each": dags,
    }
    with bench_stack(env, "wtm-skeleton-") as (tmp, c, client):
        assert c.endpoints is not None
        client.register_task(BENCH_TASKS / "noop")
        client.register_task(BENCH_TASKS / "sleep_ms")
        client.register_pipelines(DAG)
        client.wait(client.submit(task="noop").run_id, 60)  # warm a worker
        client.run(pipeline="bench_dag", timeout=30)
        base = c.endpoints.redis_admin_url.rsplit("/", 1)[0]

        def ours() -> Any:
            return client.run(task="noop", timeout=30)

        def our_dag() -> Any:
            return client.run(pipeline="bench_dag", timeout=30)

        certs = c.ca_file.parent
        with (
            skeleton(base + "/3", True, certs) as skel,
            skeleton(base + "/3", False, certs) as bare,
            skeleton(base + "/3", True) as plain,
            skeleton(base + "/3", True, certs, c.endpoints.mongodb_uri) as recorded,
        ):
            pools: dict[str, Any] = {}
            for pool, concurrency in celery_compare.POOLS:
                with celery_compare.worker(base + "/2", pool, concurrency, Path(tmp)) as app:

                    def celery(app: Any = app) -> Any:
                        return app.noop.apply_async().get(timeout=30)

                    def celery_dag(app: Any = app) -> Any:
                        dag = celery_compare._dag(app).apply_async()
                        return dag.get(timeout=30, interval=0.005)

                    for _ in range(10):
                        celery()
                    celery_dag()
                    systems: dict[str, Callable[[], Any]] = {
                        "celery": celery,
                        "ours": ours,
                        "skeleton": skel,
                        "skeleton_no_worker": bare,
                        "skeleton_plaintext": plain,
                        "skeleton_with_insert": recorded,
                    }
                    found = alternate(systems, ns.runs)
                    dag_systems: dict[str, Callable[[], Any]] = {
                        "celery": celery_dag,
                        "ours": our_dag,
                        "skeleton": skel.dag,
                        "skeleton_with_insert": recorded.dag,
                    }
                    found_dags = alternate(dag_systems, dags)
                name = f"{pool}x{concurrency}"
                pools[name] = {system: figures(t) for system, t in found.items()}
                pools[name]["dag_overhead"] = {
                    system: {"p50_ms": round(pct(t, 50) * 1000 - 150, 2)}
                    for system, t in found_dags.items()
                }
                print(f"{name}: {json.dumps(pools[name])}", file=sys.stderr)
    report["pools"] = pools
    best = min(pools, key=lambda p: pools[p]["celery"]["p50_ms"])
    report["best_celery_pool"] = best
    report["ratios_to_best_celery"] = {
        name: {
            f: round(pools[best][name][f] / pools[best]["celery"][f], 3)
            for f in ("p50_ms", "p99_ms")
        }
        for name in (
            "ours",
            "skeleton",
            "skeleton_no_worker",
            "skeleton_plaintext",
            "skeleton_with_insert",
        )
    }
    overheads = {p: pools[p]["dag_overhead"] for p in pools}
    best_dag = min(overheads, key=lambda p: overheads[p]["celery"]["p50_ms"])
    report["dag_overhead_ratios_to_best_celery"] = {
        name: round(
            overheads[best_dag][name]["p50_ms"] / overheads[best_dag]["celery"]["p50_ms"], 3
        )
        for name in ("ours", "skeleton", "skeleton_with_insert")
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
