"""StepNotes: a lease's notes are written behind its assignment, and a result waits for them."""

from __future__ import annotations

import asyncio
from typing import Any

from services.scheduler.clock import FakeClock
from services.scheduler.step_notes import StepNotes


class Writes:
    """Stands in for ``RunNotes.annotate``: each write waits until the test lets it land or
    fail, and what landed is kept."""

    def __init__(self) -> None:
        self.landed: dict[str, dict[str, str]] = {}
        self.gates: list[asyncio.Future[bool]] = []
        self.calls = 0

    async def annotate(self, fields: dict[str, dict[str, str]]) -> None:
        self.calls += 1
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        if not await gate:
            raise ConnectionError("Redis is out of reach")
        self.landed.update(fields)


def notes_on(writes: Writes, clock: FakeClock | None = None) -> StepNotes:
    return StepNotes(writes, keep_seconds=60, clock=clock or FakeClock())  # type: ignore[arg-type]


def run(body: Any) -> Any:
    return asyncio.run(body())


def test_a_result_waits_for_its_steps_notes_to_land() -> None:
    async def body() -> None:
        writes = Writes()
        notes = notes_on(writes)
        notes.write_behind({"r1:a": {"lineage": "[]"}})  # returns before the write lands
        assert writes.landed == {}
        waiting = asyncio.ensure_future(notes.written(["r1:a"]))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        writes.gates[0].set_result(True)
        await waiting
        assert writes.landed == {"r1:a": {"lineage": "[]"}} and len(notes) == 0
        await notes.written(["r1:a", "r2:b"])  # nothing in flight: at once, no write
        assert writes.calls == 1

    run(body)


def test_a_failed_write_is_made_again_by_the_result_that_needs_it() -> None:
    async def body() -> None:
        writes = Writes()
        notes = notes_on(writes)
        notes.write_behind({"r1:a": {"span_id": "1"}, "r1:b": {"span_id": "2"}})
        await asyncio.sleep(0)
        writes.gates[0].set_result(False)  # the write behind fails
        await asyncio.sleep(0)
        assert len(notes) == 2  # kept
        waiting = asyncio.ensure_future(notes.written(["r1:a"]))
        await asyncio.sleep(0.01)
        writes.gates[1].set_result(True)
        await waiting
        assert writes.landed == {"r1:a": {"span_id": "1"}}  # only what the result needs
        assert len(notes) == 1

    run(body)


def test_notes_of_a_lease_long_expired_are_dropped() -> None:
    async def body() -> None:
        writes, clock = Writes(), FakeClock()
        notes = notes_on(writes, clock)
        notes.write_behind({"r1:a": {"span_id": "1"}})
        await asyncio.sleep(0)
        writes.gates[0].set_result(False)
        await asyncio.sleep(0)
        clock.advance(61)
        notes.write_behind({"r2:a": {"span_id": "2"}})
        assert len(notes) == 1  # r1:a's result can no longer come: dropped
        await asyncio.sleep(0)
        writes.gates[1].set_result(True)
        await notes.written(["r2:a"])

    run(body)
