"""``Backfills``: a backfill's times that wait for its earlier runs to end.

A backfill of a thousand past times started a thousand runs at once — a heavy pipeline's
hundreds of runs filled the queues (and, past its namespace's run limit, the call was cut
short and had to be made again). With ``max_running`` (Airflow's ``max_active_runs``; 1 is
Temporal's buffered backfill, one after another) the call starts what that allows and keeps
the rest on the schedule's record (``backfill_ms``, oldest first; the runs it started and
has not seen end, ``backfill_runs``; ``backfill_max``), and every replica's schedules tick
starts the next times as runs end. Kept in MongoDB with the schedule, a restart or a Redis
flush loses none; deleting the schedule drops them, and so does CancelBackfill (``drop``);
a pause does not hold them (a backfill is an explicit request, as a trigger is).

Each save is filtered on the version it read (``backfill_v``), so of two replicas' ticks one
moves the backfill on; the other reads it again. Both compute the same next times from the
same record, and a time's run has the request id of its firing (``schedule/<id>/<due ms>``):
a time started by both is one run. A namespace at its run limit (RESOURCE_EXHAUSTED) keeps
the times waiting for the next tick; any other refusal (the creator's key revoked, the task
withdrawn) stops the backfill, and the schedule's ``last_error`` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from common.errors import FailedPrecondition, ResourceExhausted, Unavailable, WtmError
from services.scheduler.models import TERMINAL
from services.scheduler.schedule_records import ScheduleRecord, ScheduleStore

log = logging.getLogger(__name__)

SAVE_TRIES = 3  # reads of a record another replica saved meanwhile, before giving up a tick
MAX_WAITING = 10_000  # times a schedule's backfills may keep waiting at once (its document's)


@dataclass(frozen=True)
class Backfilled:
    """A time of a backfill and its run: started by the backfill, there before, or waiting
    for the backfill's earlier runs (``run_id`` empty)."""

    due_ms: int
    run_id: str
    started: bool
    waiting: bool = False


class Backfills:
    """Starts a schedule's waiting backfill times as its runs end.

    ``start(record, due_ms)`` submits the run of one time (its id, and whether it made it);
    ``states(run_ids)`` reads runs' states ("" for one not in Redis: ended long enough ago
    to have left, or lost with it)."""

    def __init__(
        self,
        store: ScheduleStore,
        start: Callable[[ScheduleRecord, int], Awaitable[tuple[str, bool]]],
        states: Callable[[list[str]], Awaitable[list[str]]],
        batch: int = 100,
    ) -> None:
        self.store = store
        self.start = start
        self.states = states
        self.batch = batch

    async def add(self, record: ScheduleRecord, times: list[int], most: int) -> list[Backfilled]:
        """Start what ``most`` runs at once allow of ``times`` and of the times already
        waiting (oldest first); keep the rest waiting. One entry per time of ``times``.
        FAILED_PRECONDITION past ``MAX_WAITING`` times waiting (they live in the schedule's
        document): nothing is started or kept then."""
        waiting = len(set(record.backfill_ms) | set(times))
        if waiting > MAX_WAITING:
            raise FailedPrecondition(
                f"schedule {record.schedule_id!r} would have {waiting:,} backfill times "
                f"waiting, more than {MAX_WAITING:,}: let those waiting run first "
                f"({len(record.backfill_ms):,} now), or raise max_running",
                field="max_running",
            )
        started = await self._move_on(record, times, most)
        return [
            Backfilled(due, *started[due], waiting=False)
            if due in started
            else Backfilled(due, "", started=False, waiting=True)
            for due in times
        ]

    async def drip(self) -> None:
        """Each second: move on every schedule with times waiting (up to ``batch`` of them)."""
        for record in await self.store.backfilling(self.batch):
            try:
                await self._move_on(record, [], record.backfill_max)
            except Exception:  # one schedule's trouble must not stop the others'
                log.exception("moving on the backfill of schedule %s", record.key)

    async def _move_on(
        self, record: ScheduleRecord, times: list[int], most: int
    ) -> dict[int, tuple[str, bool]]:
        """Start the next waiting times and save the rest; the runs of the times this call
        got (run id, whether it made it). A refusal other than the namespace's run limit
        stops a tick's backfill (``_stop``) and is raised to a backfill call (``times``)."""
        got: dict[int, tuple[str, bool]] = {}
        for _ in range(SAVE_TRIES):
            waiting = sorted(set(record.backfill_ms) | set(times))
            runs = record.backfill_runs
            states = await self.states(runs) if runs else []
            going = [r for r, s in zip(runs, states, strict=True) if s and s not in TERMINAL]
            free = max(0, most - len(going))
            for due in waiting[:free]:
                try:
                    run_id, created = await self.start(record, due)
                except ResourceExhausted:  # the namespace at its limit: the next tick
                    break
                except WtmError as exc:  # the rest cannot start either
                    if times:  # a backfill call: its caller hears why (nothing is kept)
                        raise
                    await self._stop(record, exc)  # a tick: stop, saying why
                    return got
                got.setdefault(due, (run_id, created))  # (a try again gets the same run)
                going.append(run_id)
            left = [due for due in waiting if due not in got]
            if await self.store.save_backfill(record, left, going, most):
                return got
            fresh = await self.store.get(record.namespace, record.schedule_id)
            if fresh is None:  # deleted meanwhile: its backfill went with it
                return got
            record = fresh
        return got

    async def drop(self, record: ScheduleRecord) -> int:
        """Drop the times waiting (no run starts for them; those started go on): how many."""
        for _ in range(SAVE_TRIES):
            left = len(record.backfill_ms)
            if not left or await self.store.save_backfill(record, [], [], 0):
                return left
            fresh = await self.store.get(record.namespace, record.schedule_id)
            if fresh is None:  # deleted meanwhile: its backfill went with it
                return 0
            record = fresh
        raise Unavailable(
            "its backfill moved on while this call dropped it; try again", field="schedule_id"
        )

    async def _stop(self, record: ScheduleRecord, exc: WtmError) -> None:
        log.warning("schedule %s: its backfill stops: %s", record.key, exc.message)
        left = len(record.backfill_ms)
        await self.store.update(
            record.key,
            {"last_error": f"backfill stopped with {left} of its times not started: {exc.message}"},
        )
        await self.store.save_backfill(record, [], [], 0)
