"""A simulated fleet: one scheduler (or two) against up to 1,000 executors (issue 17).

    python -m bench.fleet                         # 10, 100 and 1,000 executors, 50,000 steps
    python -m bench.fleet --executors 1000 --schedulers 2
    python -m bench.fleet --scale 0.1             # 5,000 steps, for a quick look

Each round starts a fresh local stack (no real executors), registers 20 no-op tasks, one per
queue, and queues the steps up front: one-step runs spread over the 20 queues and 3
priorities (1, 5, 10). Then simulated executors connect — light streams, a few hundred per
process over one channel, each serving 3–6 of the queues with 1–4 slots — take assignments,
"run" each for a random 0–20 ms, report it done, heartbeat as the welcome asks, and now and
then drop their stream and come back (what they held is left to lease expiry). The round
ends when every run is finished, or at its time bound.

Then, with the backlog gone, runs arrive at a steady 100 a second for 10 s (below what
the scheduler can do), each stamped with its submit time.

Figures per round:
- dispatch latency p50/p99: in the steady phase, from submit to the executor receiving the
  assignment — what the scheduler adds, comparable across fleet sizes;
- backlog refill p50/p99: in the backlog, from an executor reporting a step done to its next
  assignment (this one grows with the slots per step/s the scheduler can hand out);
- scheduler CPU ms per step and its peak RSS; Redis commands per step (a script call counts
  once: what crosses the wire);
- fairness: at the moment half the steps had been assigned, the share of each queue's and
  each priority's steps assigned so far (queues: min and max; priorities: in order — the
  highest should be near 1 and the lowest near 0);
- steps per second, and how each figure grows from the smallest fleet to the largest.

Every load is bounded in count and time; all traffic stays on 127.0.0.1; the stack and
every process this starts are stopped by PID when the round ends.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.floors import _cpu_seconds
from clients.sdk import Client
from common import tls
from services.localstack import Cluster
from services.localstack.processes import ProcessGroup, free_port, wait_until
from wtm.v1 import executor_service_pb2 as epb
from wtm.v1 import executor_service_pb2_grpc as epb_grpc

QUEUES = [f"q{i:02d}" for i in range(20)]
PRIORITIES = (1, 5, 10)
ROOT = Path(__file__).resolve().parents[1]
NOOP = """from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        return {}
"""


# The simulated executors (a child process: ``python -m bench.fleet --sim ...``) ------------


class SimExecutor:
    """One executor's stream: hello, heartbeats, assignments answered after a pause."""

    def __init__(
        self, name: str, number: int, rng: random.Random, log: list[tuple[Any, ...]]
    ) -> None:
        self.name = name
        self.rng = rng
        # Two queues by number (so that any ten executors cover all 20), 1-4 more at random.
        own = {QUEUES[number % 20], QUEUES[(number + 10) % 20]}
        self.queues = sorted(own | set(rng.sample(QUEUES, rng.randint(1, 4))))
        self.slots = rng.randint(1, 4)
        self.log = log  # ("A", t, queue, priority) assignments, ("R", t) results
        self.running: dict[tuple[str, str, int], epb.StepAttemptRef] = {}

    async def serve(self, stub: Any, metadata: tuple[tuple[str, str], ...], until: float) -> None:
        while time.monotonic() < until:
            outbox: asyncio.Queue[epb.ConnectRequest | None] = asyncio.Queue()
            outbox.put_nowait(
                epb.ConnectRequest(
                    hello=epb.ExecutorHello(
                        executor_id=self.name,
                        queues=self.queues,
                        slots=self.slots,
                        batched_messages=True,  # as executors say since issue 18
                    )
                )
            )

            async def requests(box: asyncio.Queue[epb.ConnectRequest | None] = outbox) -> Any:
                while (item := await box.get()) is not None:
                    yield item

            call = stub.Connect(requests(), metadata=metadata)
            # Now and then a stream drops (a network blip, a node going away).
            drop_at = time.monotonic() + self.rng.expovariate(1 / 120.0)
            tasks: set[asyncio.Task[None]] = set()
            try:
                async for message in call:
                    kind = message.WhichOneof("message")
                    if kind == "welcome":
                        interval = message.welcome.heartbeat_interval_seconds or 5.0
                        tasks.add(asyncio.create_task(self._heartbeats(outbox, interval)))
                    elif kind == "assignment":
                        self._assigned(outbox, message.assignment, tasks)
                    elif kind == "assignments":
                        for a in message.assignments.assignments:
                            self._assigned(outbox, a, tasks)
                    if time.monotonic() > min(drop_at, until):
                        break
            except Exception:  # noqa: BLE001 - a dropped stream: come back
                pass
            finally:
                call.cancel()
                outbox.put_nowait(None)
                for t in tasks:
                    t.cancel()
                self.running.clear()
            await asyncio.sleep(0.5)

    def _assigned(
        self, outbox: asyncio.Queue[Any], a: epb.StepAssignment, tasks: set[asyncio.Task[None]]
    ) -> None:
        doc = json.loads(a.input_json)
        self.log.append(("A", time.time(), doc["q"], doc["p"], doc.get("t")))
        key = (a.ref.run_id, a.ref.step_id, a.ref.attempt)
        self.running[key] = a.ref
        tasks.add(asyncio.create_task(self._run(outbox, a.ref, key)))

    async def _run(self, outbox: asyncio.Queue[Any], ref: Any, key: Any) -> None:
        await asyncio.sleep(self.rng.uniform(0, 0.02))
        self.running.pop(key, None)
        self.log.append(("R", time.time()))
        outbox.put_nowait(
            epb.ConnectRequest(
                result=epb.StepResult(ref=ref, outcome=epb.STEP_OUTCOME_SUCCEEDED, output_json="{}")
            )
        )

    async def _heartbeats(self, outbox: asyncio.Queue[Any], interval: float) -> None:
        sequence = 0
        while True:
            await asyncio.sleep(interval)
            sequence += 1
            outbox.put_nowait(
                epb.ConnectRequest(
                    heartbeat=epb.ExecutorHeartbeat(
                        running=list(self.running.values()), sequence=sequence
                    )
                )
            )


async def simulate(args: argparse.Namespace) -> None:
    config = json.loads(Path(args.sim).read_text())
    channel = tls.aio_channel(
        config["address"], config["ca"], client_cert=(config["cert"], config["key"])
    )
    stub = epb_grpc.ExecutorServiceStub(channel)
    metadata = (("authorization", f"Bearer {config['api_key']}"),)
    logs: dict[str, list[tuple[Any, ...]]] = {}
    sims = []
    for i in range(config["count"]):
        name = f"sim-{config['index']}-{i}"
        logs[name] = []
        rng = random.Random(f"{name}-{config['seed']}")
        sims.append(SimExecutor(name, config["first"] + i, rng, logs[name]))
    until = time.monotonic() + config["seconds"]
    stop = Path(config["stop_file"])

    async def watch_stop() -> None:
        while not stop.exists() and time.monotonic() < until:
            await asyncio.sleep(0.2)

    serving = [asyncio.create_task(s.serve(stub, metadata, until)) for s in sims]
    await watch_stop()
    for t in serving:
        t.cancel()
    await asyncio.gather(*serving, return_exceptions=True)
    out = {
        name: {"queues": s.queues, "slots": s.slots, "log": logs[name]}
        for name, s in zip(logs, sims, strict=True)
    }
    Path(config["out"]).write_text(json.dumps(out))
    await channel.close()


# The round: stack, tasks, steps, fleet, figures ---------------------------------------------


def register_tasks(client: Client, root: Path) -> None:
    for queue in QUEUES:
        folder = root / f"noop_{queue}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "task.py").write_text(NOOP)
        manifest = {
            "task_id": f"noop_{queue}",
            "version": "1.0.0",
            "queue": queue,
            "timeout": 60,
            "max_retries": 3,
        }
        (folder / "task.json").write_text(json.dumps(manifest))
        client.register_task(folder)


def queue_steps(client: Client, steps: int) -> dict[tuple[str, int], int]:
    """One-step runs, round robin over queues and priorities, 1,000 per SubmitRuns call."""
    planned: dict[tuple[str, int], int] = {}
    per = steps // (len(QUEUES) * len(PRIORITIES))
    for queue in QUEUES:
        for priority in PRIORITIES:
            left = per
            while left:
                n = min(left, 1000)
                client.submit_many(
                    [{"q": queue, "p": priority}] * n, task=f"noop_{queue}", priority=priority
                )
                left -= n
            planned[(queue, priority)] = per
    return planned


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def redis_commands(url: str) -> dict[str, int]:
    """Commands Redis has run so far, by command (a script call counts once)."""
    stats = redis.Redis.from_url(url).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def steady(client: Client, admin_url: str, rate: float, seconds: float) -> None:
    """Then runs arriving at a steady rate below what the scheduler can do, each stamped with
    its submit time: its dispatch latency is from there to its assignment."""
    rng = random.Random(5)
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.monotonic()
        for _ in range(per_tick):
            queue, priority = rng.choice(QUEUES), rng.choice(PRIORITIES)
            doc = {"q": queue, "p": priority, "t": time.time()}
            client.submit(task=f"noop_{queue}", input=doc, priority=priority)
        time.sleep(max(0.0, tick - (time.monotonic() - began)))
    r = redis.Redis.from_url(admin_url)
    deadline = time.monotonic() + 30  # the last ones assigned (bounded)
    while sum(r.zcard(f"wtm:q:{q}") for q in QUEUES) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)


def one_round(
    executors: int,
    schedulers: int,
    steps: int,
    bound_s: float,
    steady_rate: float = 100.0,
    steady_seconds: float = 10.0,
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="wtm-fleet-") as tmp,
        Cluster(
            Path(tmp) / "stack",
            executors=0,
            env={"WTM_LEASE_SECONDS": "10", "WTM_LOG_LEVEL": "WARNING"},
        ) as cluster,
    ):
        root = Path(tmp)
        assert cluster.endpoints is not None and cluster.scheduler is not None
        group = ProcessGroup(root / "sim-logs")
        listeners = [cluster.executor_address]
        scheduler_pids = [cluster.scheduler.proc.pid]
        ca = str(cluster.ca_file)
        for n in range(1, schedulers):  # more replicas on the same Redis and MongoDB
            address, listen = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            child = group.start(
                f"scheduler-{n}",
                [
                    sys.executable,
                    "-m",
                    "services.scheduler",
                    "--listen",
                    address,
                    "--executor-listen",
                    listen,
                ],
                env={
                    **cluster.env(),
                    "WTM_TLS_CLIENT_CA": str(cluster.ca_file),
                    "WTM_LEASE_SECONDS": "10",
                },
                cwd=ROOT,
            )
            wait_until("scheduler", functools.partial(_serving, address, ca), child)
            listeners.append(listen)
            scheduler_pids.append(child.proc.pid)
        with Client(
            cluster.registry_address,
            cluster.scheduler_address,
            api_key=cluster.admin_key,
            tls_ca=str(cluster.ca_file),
            timeout=120,
        ) as client:
            register_tasks(client, root / "tasks")
            planned = queue_steps(client, steps)
            total = sum(planned.values())
            admin = cluster.endpoints.redis_admin_url
            cpu0 = [_cpu_seconds(p) for p in scheduler_pids]
            redis0 = redis_commands(admin)
            processes = max(1, min(8, executors // 250 + 1))
            stop_file = root / "stop"
            outs: list[Path] = []
            sims = []
            for i in range(processes):
                count = executors // processes + (1 if i < executors % processes else 0)
                config = {
                    "address": listeners[i % len(listeners)],
                    "ca": str(cluster.ca_file),
                    "cert": str(cluster.executor_cert[0]),
                    "key": str(cluster.executor_cert[1]),
                    "api_key": cluster.key_files["executor"].read_text().strip(),
                    "count": count,
                    "first": i * (executors // processes) + min(i, executors % processes),
                    "index": i,
                    "seed": 17,
                    "seconds": bound_s,
                    "stop_file": str(stop_file),
                    "out": str(root / f"sim-{i}.json"),
                }
                outs.append(root / f"sim-{i}.json")
                (root / f"sim-{i}.config.json").write_text(json.dumps(config))
                sim = group.start(
                    f"sim-{i}",
                    [
                        sys.executable,
                        "-m",
                        "bench.fleet",
                        "--sim",
                        str(root / f"sim-{i}.config.json"),
                    ],
                    cwd=ROOT,
                )
                sims.append(sim)
            started = time.time()
            rss_peak = 0
            deadline = time.monotonic() + bound_s
            r = redis.Redis.from_url(admin)
            while time.monotonic() < deadline:
                time.sleep(0.25)
                rss_peak = max(rss_peak, *(_rss_kb(p) for p in scheduler_pids))
                waiting = sum(r.zcard(f"wtm:q:{q}") for q in QUEUES)
                running = r.zcard("wtm:leases") + r.zcard("wtm:delayed")
                if waiting == 0 and running == 0:
                    break
            elapsed = time.time() - started
            cpu = sum(_cpu_seconds(p) for p in scheduler_pids) - sum(cpu0)
            redis1 = redis_commands(admin)
            steady(client, admin, steady_rate, steady_seconds)
            stop_file.write_text("stop")
            for path, child in zip(outs, sims, strict=True):
                wait_until("a simulator's report", path.exists, child, timeout=120)
            group.stop_all()
        fleet = {}
        for path in outs:
            fleet.update(json.loads(path.read_text()))
        return figures(
            executors, schedulers, fleet, planned, total, elapsed, cpu, redis0, redis1, rss_peak
        )


def _serving(address: str, ca: str) -> bool:
    from services.localstack.cluster import serving

    return serving(address, ca)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def figures(
    executors: int,
    schedulers: int,
    fleet: dict[str, Any],
    planned: dict[tuple[str, int], int],
    total: int,
    elapsed: float,
    cpu: float,
    redis0: dict[str, int],
    redis1: dict[str, int],
    rss_peak: int,
) -> dict[str, Any]:
    assigned = sorted(
        (e[1], e[2], e[3])
        for sim in fleet.values()
        for e in sim["log"]
        if e[0] == "A" and e[4] is None
    )
    dispatch = [e[1] - e[4] for sim in fleet.values() for e in sim["log"] if e[0] == "A" and e[4]]
    steps_done = len(assigned)
    # The busy period: until 90% of the steps were assigned (after that, queues run dry).
    busy_until = assigned[int(0.9 * (len(assigned) - 1))][0] if assigned else 0
    refills = []
    for sim in fleet.values():
        pending_results: list[float] = []
        for event in sim["log"]:
            if event[0] == "R":
                pending_results.append(event[1])
            elif pending_results and event[1] <= busy_until:
                refills.append(event[1] - pending_results.pop(0))
    half = assigned[len(assigned) // 2][0] if assigned else 0
    by_queue: dict[str, int] = {}
    by_priority: dict[int, int] = {}
    for t, queue, priority in assigned:
        if t <= half:
            by_queue[queue] = by_queue.get(queue, 0) + 1
            by_priority[priority] = by_priority.get(priority, 0) + 1
    queue_total = {q: sum(n for (qq, _), n in planned.items() if qq == q) for q in QUEUES}
    prio_total = {p: sum(n for (_, pp), n in planned.items() if pp == p) for p in PRIORITIES}
    ran = {k: n - redis0.get(k, 0) for k, n in redis1.items() if n > redis0.get(k, 0)}
    queue_share = [by_queue.get(q, 0) / queue_total[q] for q in QUEUES if queue_total[q]]
    return {
        "executors": executors,
        "schedulers": schedulers,
        "slots": sum(sim["slots"] for sim in fleet.values()),
        "steps_planned": total,
        "steps_assigned": steps_done,
        "seconds": round(elapsed, 1),
        "steps_per_second": round(steps_done / elapsed, 1) if elapsed else None,
        "dispatch_ms": {  # the steady phase: submitted -> assigned
            "p50": _ms(pct(dispatch, 50)),
            "p99": _ms(pct(dispatch, 99)),
            "samples": len(dispatch),
        },
        "backlog_refill_ms": {
            "p50": _ms(pct(refills, 50)),
            "p99": _ms(pct(refills, 99)),
            "samples": len(refills),
        },
        "scheduler_cpu_ms_per_step": round(cpu * 1000 / max(steps_done, 1), 3),
        "scheduler_rss_mb_peak": round(rss_peak / 1024, 1),
        "redis_commands_per_step": round(sum(ran.values()) / max(steps_done, 1), 2),
        "redis_top_commands_per_step": {
            name: round(n / max(steps_done, 1), 2)
            for name, n in sorted(ran.items(), key=lambda kv: -kv[1])[:5]
        },
        "fairness_at_half": {
            "queue_share_min": round(min(queue_share), 3) if queue_share else None,
            "queue_share_max": round(max(queue_share), 3) if queue_share else None,
            "priority_share": {
                str(p): round(by_priority.get(p, 0) / prio_total[p], 3)
                for p in sorted(PRIORITIES, reverse=True)
            },
        },
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--executors", default="10,100,1000", help="fleet sizes, one round each")
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the step count")
    parser.add_argument("--round-seconds", type=float, default=300.0, help="bound per round")
    parser.add_argument("--sim", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sim:
        asyncio.run(simulate(args))
        return 0
    steps = int(args.steps * args.scale)
    rounds = []
    for n in (int(x) for x in args.executors.split(",")):
        result = one_round(n, args.schedulers, steps, args.round_seconds)
        print(json.dumps(result), file=sys.stderr, flush=True)
        rounds.append(result)
    report: dict[str, Any] = {"rounds": rounds}
    if len(rounds) > 1:
        first, last = rounds[0], rounds[-1]

        def growth(get: Any) -> float | None:
            a, b = get(first), get(last)
            return round(b / a, 2) if a and b else None

        report[f"growth_{first['executors']}_to_{last['executors']}"] = {
            "dispatch_p99": growth(lambda r: r["dispatch_ms"]["p99"]),
            "dispatch_p50": growth(lambda r: r["dispatch_ms"]["p50"]),
            "cpu_per_step": growth(lambda r: r["scheduler_cpu_ms_per_step"]),
            "redis_commands_per_step": growth(lambda r: r["redis_commands_per_step"]),
            "rss": growth(lambda r: r["scheduler_rss_mb_peak"]),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
