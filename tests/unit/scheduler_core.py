"""The harness of the tests of the scheduler's core (``test_scheduler_*.py``): the fleet,
leasing, intake, reaper and listeners against a real valkey, without gRPC, MongoDB or
executors. Sessions are driven by hand and time by a fake clock, so lease expiry, retry due
times, fencing, cancellation races and batching are checked by what happened, in order,
not by sleeping; the valkey (``valkey_url``, one per test module) is in ``conftest.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from services.scheduler import keys
from services.scheduler.assignments import Assignment
from services.scheduler.clock import FakeClock
from services.scheduler.dispatcher import Dispatcher
from services.scheduler.fleet import (
    ExecutorProfile,
    ExecutorSession,
)
from services.scheduler.intake import StepReport
from services.scheduler.listeners import Listeners, Refused, RunListener
from services.scheduler.queue_records import QueuedStep, RunSnapshot, Submission
from services.scheduler.result_cache import ResultCache
from services.scheduler.retry_policy import RetryPolicy
from services.scheduler.run_queue import RunQueue

LEASE_SECONDS = 30
RETRY_SECONDS = 2.0  # the first retry's delay (no jitter here)


class Heard(RunListener):
    """Every event, in order, as (event, subject, detail)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def run_started(self, run_id: str, at_ms: int) -> None:
        self.events.append(("run_started", run_id, ""))

    def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
        self.events.append(("attempt_ended", member, f"{snapshot['attempt']}:{snapshot['state']}"))

    def execution_refused(self, member: str, snapshot: dict[str, str], refused: Refused) -> None:
        self.events.append(("execution_refused", member, str(refused.attempt)))

    def lease_expired(self, member: str) -> None:
        self.events.append(("lease_expired", member, ""))

    def run_ended(self, run_id: str, final: RunSnapshot | None) -> None:
        self.events.append(("run_ended", run_id, final.run["state"] if final else ""))

    def of(self, kind: str) -> list[tuple[str, str]]:
        return [(subject, detail) for k, subject, detail in self.events if k == kind]


class Core:
    """The dispatcher's parts on a fake clock; nothing runs unless a test says so."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.clock = FakeClock()
        self.queue = RunQueue(client, finished_ttl_s=60, clock=self.clock)
        self.heard = Heard()
        self.listeners = Listeners(self.heard)
        self.core = Dispatcher(
            self.queue,
            self.listeners,
            lease_seconds=LEASE_SECONDS,
            retry=RetryPolicy(RETRY_SECONDS, 60.0, jitter=False),
            silent_after=15.0,
            clock=self.clock,
            cache=ResultCache(client, ttl_seconds=60),
        )
        self.listeners.register(self.core.fleet.proven)  # as services/scheduler/__main__.py

    def executor(self, name: str, slots: int = 1) -> ExecutorSession:
        return self.core.open_session(ExecutorProfile(name, ["q"], slots, {}))

    async def submit(self, run_id: str, max_retries: int = 0) -> None:
        fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        [(created, _)] = await self.core.submit(
            [Submission(run_id, fields, [step("a", max_retries)])]
        )
        assert created

    async def lease_round(self) -> None:
        async with self.core.leaser.round() as r:
            if r.wants:
                await r.hand_out(await self.queue.dispatch_many(r.wants, LEASE_SECONDS * 1000))

    async def report(
        self,
        session: ExecutorSession,
        a: Assignment,
        outcome: str,
        output: str = "{}",
        timings: dict[str, int] | None = None,
        condition_view: str = "",
    ) -> None:
        self.core.intake.report(
            session,
            StepReport(
                a.run_id, a.step_id, a.attempt, outcome, output, "", timings or {}, a.lease_id,
                session.executor_id, condition_view=condition_view,
            ),
        )  # fmt: skip
        await self.core.intake.record_pending()


def step(step_id: str, max_retries: int) -> QueuedStep:
    return QueuedStep(
        step_id,
        [],
        [],
        {
            "task_id": step_id,
            "task_version": "1.0.0",
            "digest": "d" * 64,
            "entry_point": "task.Task",
            "queue": "q",
            "timeout": "10",
            "max_retries": str(max_retries),
            "input_id": f"input_{step_id}",
            "output_id": f"output_{step_id}",
            "mapping": "{}",
            "reads": "[]",
        },
    )


def chain(run_id: str) -> Submission:
    """A run of two steps, b after a."""
    a, b = step("a", 0), step("b", 0)
    a.dependents.append("b")
    b.deps.append("a")
    fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": '["b"]'}
    return Submission(run_id, fields, [a, b])


def sent(session: ExecutorSession) -> list[Any]:
    """What went down the executor's stream since the last look."""
    out = []
    while not session.outbox.empty():
        out.append(session.outbox.get_nowait())
    return out


def assignments(session: ExecutorSession) -> list[Assignment]:
    return [m for m in sent(session) if isinstance(m, Assignment)]


async def state_of(c: Core, run_id: str, step_id: str = "") -> tuple[str, str]:
    """A run's state and error (or one of its steps'), as Redis holds them."""
    key = keys.step(run_id, step_id) if step_id else keys.run(run_id)
    state, error = await c.queue.redis.hmget(key, "state", "error")
    return (state or b"").decode(), (error or b"").decode()


@asynccontextmanager
async def core_on(url: str) -> AsyncIterator[Core]:
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    c = Core(client)
    await c.queue.load_scripts()
    try:
        yield c
    finally:
        await c.queue.close()
        await client.aclose()


def scenario(url: str, body: Any) -> Any:
    async def main() -> Any:
        async with core_on(url) as c:
            return await body(c)

    return asyncio.run(main())
