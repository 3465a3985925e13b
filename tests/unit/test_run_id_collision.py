"""A submit whose run id is already taken (a collision of 64 random bits, or a bug) fails
with INVALID_ARGUMENT and takes back only what it queued itself: the run that already holds
the id is left alone.

``RunService`` is driven through its own two interfaces (where runs are queued, where they
are recorded), with small in-memory stand-ins: what is tested here is the domain's choice of
what to withdraw, not Redis or MongoDB (the integration suite covers those)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.scheduler.queue_records import Submission
from services.scheduler.runs import InvalidArgument, RunService


class Queue:
    """Queues runs as Redis would: an id it already holds is not created again."""

    def __init__(self, held: set[str]) -> None:
        self.held = set(held)
        self.cancelled: list[str] = []

    async def submit(self, runs: list[Submission]) -> list[tuple[bool, str]]:
        made = [(r.run_id not in self.held, r.run_id) for r in runs]
        self.held.update(r.run_id for r in runs)
        return made

    async def cancel_run(self, run_id: str, reason: str) -> str:
        self.cancelled.append(run_id)
        return "CANCELLED"


class Store:
    """Records runs as MongoDB would: an id it already holds is a duplicate key."""

    inserts_ok = True

    def __init__(self, held: set[str]) -> None:
        self.held = set(held)

    async def insert_run(self, run: Any, plan: dict[str, Any]) -> bool:
        if run.run_id in self.held:
            return False
        self.held.add(run.run_id)
        return True

    async def insert_runs(self, runs: list[tuple[Any, dict[str, Any]]]) -> None:
        clash = [run.run_id for run, _ in runs if run.run_id in self.held]
        self.held.update(run.run_id for run, _ in runs)
        if clash:
            raise InvalidArgument(f"run id collision; submit again ({clash})", field="run_id")


class Run:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id


def submission(run_id: str) -> Submission:
    return Submission(run_id=run_id, run_fields={}, steps=[])


def service(taken: set[str]) -> tuple[RunService, Queue]:
    queue = Queue(taken)
    return RunService(None, Store(taken), None, queue, None), queue  # type: ignore[arg-type]


def test_a_submit_whose_id_is_taken_leaves_the_run_that_holds_it() -> None:
    runs, queue = service({"taken"})
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(runs._accept(Run("taken"), submission("taken")))  # type: ignore[arg-type]
    assert caught.value.field == "run_id"
    assert queue.cancelled == []  # the other run is not withdrawn


def test_a_submit_queued_but_not_recorded_is_withdrawn() -> None:
    runs, queue = service(set())
    runs.store.held.add("fresh")  # MongoDB holds the id, Redis does not: this submit queued it
    with pytest.raises(InvalidArgument):
        asyncio.run(runs._accept(Run("fresh"), submission("fresh")))  # type: ignore[arg-type]
    assert queue.cancelled == ["fresh"]


def test_a_batch_with_one_taken_id_withdraws_only_its_own_runs() -> None:
    runs, queue = service({"taken"})
    batch = [submission(i) for i in ("a", "taken", "b")]
    with pytest.raises(InvalidArgument):
        asyncio.run(
            runs._record_and_queue(
                runs.store.insert_runs([(Run(s.run_id), {}) for s in batch]), batch
            )
        )
    assert queue.cancelled == ["a", "b"]


def test_a_batch_leased_first_withdraws_only_its_own_runs_too() -> None:
    runs, queue = service({"taken"})
    batch = [submission(i) for i in ("a", "taken", "b")]
    insert = runs.store.insert_runs([(Run(s.run_id), {}) for s in batch])
    with pytest.raises(InvalidArgument):
        asyncio.run(runs._record_and_queue(insert, batch, lease_first=True))
    assert queue.cancelled == ["a", "b"]


def test_a_batch_leased_first_whose_queueing_fails_is_still_recorded() -> None:
    """As when both go at once: its first runs may be in Redis and running; MongoDB holds
    them all, and the error is Redis's."""
    runs, queue = service(set())

    async def unreachable(_: list[Submission]) -> list[tuple[bool, str]]:
        raise ConnectionError("redis is down")

    queue.submit = unreachable  # type: ignore[method-assign]
    batch = [submission(i) for i in ("a", "b")]
    insert = runs.store.insert_runs([(Run(s.run_id), {}) for s in batch])
    with pytest.raises(ConnectionError):
        asyncio.run(runs._record_and_queue(insert, batch, lease_first=True))
    assert runs.store.held == {"a", "b"}


def test_a_batch_written_first_is_queued_only_once_mongodb_holds_it() -> None:
    """A batch with a request id: a retry answers with the batch as MongoDB lists it, so it
    is written before any of it is queued; an insert that fails queues nothing."""
    runs, queue = service(set())
    seen: list[set[str]] = []

    async def insert(batch: list[Submission]) -> None:
        seen.append(set(queue.held))  # what Redis held when MongoDB was written
        await runs.store.insert_runs([(Run(s.run_id), {}) for s in batch])

    batch = [submission(i) for i in ("a", "b")]
    asyncio.run(runs._record_and_queue(insert(batch), batch, lease_first=True, insert_first=True))
    assert seen == [set()] and queue.held == {"a", "b"}
    clashing = [submission(i) for i in ("c", "a")]
    with pytest.raises(InvalidArgument):
        asyncio.run(runs._record_and_queue(insert(clashing), clashing, insert_first=True))
    assert queue.held == {"a", "b"} and queue.cancelled == []  # nothing queued, nothing taken back
