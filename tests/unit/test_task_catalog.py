"""``TaskCatalog``'s cache of what "latest" means: refreshed ahead of its end, so a steady
stream of submits does not wait for the registry, and never answered older than its time.

The registry's replies come from a stand-in for the one call the catalog makes
(``AsyncCaller.unary``); what is tested is the cache in front of it, with a clock of its
own."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from common.errors import Unavailable
from services.scheduler import task_catalog
from services.scheduler.task_catalog import TaskCatalog
from wtm.v1 import registry_service_pb2 as rpb

TTL = 1.0
CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="")


class Registry:
    """Answers GetTask with the current version; counts the calls; may be made to fail."""

    def __init__(self) -> None:
        self.version = "1.0.0"
        self.calls = 0
        self.failing = False
        self.gate: asyncio.Event | None = None  # held: calls wait until it is set
        self.callers: list[str] = []  # CALLER as each call saw it

    async def unary(self, method: Any, request: Any, **_: Any) -> rpb.GetTaskResponse:
        self.calls += 1
        self.callers.append(CALLER.get())
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise Unavailable("the registry is out of reach")
        return rpb.GetTaskResponse(
            task=rpb.Task(task_id=request.task_id, version=self.version, digest="d" * 64)
        )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(task_catalog.time, "monotonic", lambda: now[0])
    return now


async def _catalog() -> tuple[TaskCatalog, Registry]:
    catalog = TaskCatalog("127.0.0.1:1", latest_ttl=TTL)
    registry = Registry()
    catalog._registry.unary = registry.unary  # type: ignore[method-assign]
    return catalog, registry


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_latest_is_refreshed_ahead_and_never_answered_stale(clock: list[float]) -> None:
    async def main() -> None:
        catalog, registry = await _catalog()
        assert (await catalog.resolve("default", "noop")).version == "1.0.0"
        assert registry.calls == 1
        registry.version = "2.0.0"  # registered meanwhile

        clock[0] += 0.4  # first half of its time: answered from the cache, nothing asked
        assert (await catalog.resolve("default", "noop")).version == "1.0.0"
        await _settle()
        assert registry.calls == 1

        clock[0] += 0.3  # second half: still answered at once, and asked in the background
        CALLER.set("a submit")
        assert (await catalog.resolve("default", "noop")).version == "1.0.0"
        await _settle()
        assert registry.calls == 2
        assert registry.callers[1] == ""  # in a context of its own, not the submit's
        assert (await catalog.resolve("default", "noop")).version == "2.0.0"

        clock[0] += 0.9  # within the refreshed entry's time (it was fetched 0.9 s ago)
        registry.version = "3.0.0"
        registry.gate = asyncio.Event()  # the registry slows down: no refresh lands
        assert (await catalog.resolve("default", "noop")).version == "2.0.0"
        clock[0] += 0.2  # past its time: the submit asks, and waits for the answer
        waiting = asyncio.ensure_future(catalog.resolve("default", "noop"))
        await _settle()
        assert not waiting.done()
        registry.gate.set()
        assert (await waiting).version == "3.0.0"
        await catalog.close()

    asyncio.run(main())


def test_one_refresh_at_a_time_and_a_failed_one_changes_nothing(clock: list[float]) -> None:
    async def main() -> None:
        catalog, registry = await _catalog()
        await catalog.resolve("default", "noop")
        clock[0] += 0.6
        registry.gate = asyncio.Event()
        registry.failing = True
        for _ in range(3):  # while one refresh is under way, no other starts
            assert (await catalog.resolve("default", "noop")).version == "1.0.0"
        await _settle()
        assert registry.calls == 2
        registry.gate.set()
        await _settle()
        # the refresh failed: the entry stands until its end, then the registry's error
        # reaches the submit that asks
        assert (await catalog.resolve("default", "noop")).version == "1.0.0"
        await _settle()
        clock[0] += 0.5
        registry.gate = None
        with pytest.raises(Unavailable, match="out of reach"):
            await catalog.resolve("default", "noop")
        registry.failing = False
        assert (await catalog.resolve("default", "noop")).version == "1.0.0"
        await catalog.close()

    asyncio.run(main())


def test_pinned_versions_are_kept_for_good(clock: list[float]) -> None:
    async def main() -> None:
        catalog, registry = await _catalog()
        await catalog.resolve("default", "noop@1.0.0")
        clock[0] += 3600
        await catalog.resolve("default", "noop@1.0.0")
        await _settle()
        assert registry.calls == 1
        await catalog.close()

    asyncio.run(main())


def test_a_tasks_own_retry_backoff_reaches_its_steps_in_ms() -> None:
    """task.json's retry_backoff (and _max) become each step's retry_ms, which complete.lua
    reads; a task without one adds no field (the scheduler's policy, its retry_at)."""
    assert task_catalog.backoff_ms({}) is None
    assert task_catalog.backoff_ms({"retry_backoff": 2.5}) == (2500, 600_000)
    assert task_catalog.backoff_ms({"retry_backoff": 1, "retry_backoff_max": 30}) == (1000, 30_000)
    base = task_catalog.ResolvedTask("t", "1.0.0", "d" * 64, "task.Task", "q", 5, 30, 2)
    assert base.retry_fields == {}
    own = task_catalog.ResolvedTask(
        "t", "1.0.0", "d" * 64, "task.Task", "q", 5, 30, 2, retry_backoff_ms=(1000, 30_000)
    )
    assert own.retry_fields == {"retry_ms": "1000,30000"}


def test_a_pipeline_steps_own_retry_backoff_is_its_steps_over_its_tasks() -> None:
    """A pipeline step's retry_backoff (the registry's PipelineStep.retry_backoff) wins over
    its task's; a step without one keeps its task's."""
    from services.scheduler.planning import PlannedStep

    own = task_catalog.ResolvedTask(
        "t", "1.0.0", "d" * 64, "task.Task", "q", 5, 30, 2, retry_backoff_ms=(1000, 30_000)
    )

    def step(backoff: tuple[int, int] | None) -> PlannedStep:
        return PlannedStep(
            "s", own, [], [], 30, 2, {}, 1, frozenset({"s"}), retry_backoff_ms=backoff
        )

    assert step((5000, 60_000)).spec.fields["retry_ms"] == "5000,60000"
    assert step(None).spec.fields["retry_ms"] == "1000,30000"
    plain = task_catalog.ResolvedTask("t", "1.0.0", "d" * 64, "task.Task", "q", 5, 30, 2)
    over_plain = PlannedStep("s", plain, [], [], 30, 2, {}, 1, frozenset({"s"}))
    assert "retry_ms" not in over_plain.spec.fields
