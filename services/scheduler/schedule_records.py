"""``ScheduleRecord`` and ``ScheduleStore``: schedules as MongoDB keeps them (``schedules``).

One document per schedule, ``_id`` "namespace/schedule_id". Times are whole milliseconds
(numbers, not dates: one less thing the MongoDB stand-in must get right). Every change is an
``update_one`` with ``$set``/``$inc`` filtered by ``_id`` — firing also by the due time it
read, so of two replicas firing one time only one moves the schedule on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from common.errors import AlreadyExists
from services.common.auth import ALL_NAMESPACES
from services.scheduler.schedule_times import Timing
from wtm.v1 import schedule_service_pb2 as spb

OVERLAPS = ("SKIP", "ALLOW")


@dataclass
class ScheduleRecord:
    """A schedule: when (``cron``/``timezone`` or ``every_seconds``), what (a task or a
    pipeline on one input), and what it has done."""

    namespace: str
    schedule_id: str
    cron: str = ""
    timezone: str = ""
    every_seconds: float = 0.0
    at_ms: int = 0  # a one-off's time
    task: str = ""
    pipeline: str = ""
    input_json: str = "{}"
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    overlap: str = "SKIP"
    paused: bool = False
    next_ms: int = 0  # 0 while paused
    last_ms: int = 0
    last_run_id: str = ""
    runs_started: int = 0
    times_skipped: int = 0
    last_error: str = ""
    created_ms: int = 0
    created_by: str = ""
    run_timeout_seconds: float = 0.0  # each run's time limit (0: none)
    start_ms: int = 0  # no due time before it (0: none)
    end_ms: int = 0  # no due time after it (0: none)
    due_time_field: str = ""  # the input key each run's due time is written to ("": none)
    jitter_seconds: float = 0.0  # each run starts up to this long after its time (0: none)
    # A backfill's times waiting for its earlier runs (schedule_backfills.py): the times
    # (oldest first), its runs not seen ended, its max_running, the first time (0: none; what
    # the ticks look for) and a version (each save of them moves it on).
    backfill_ms: list[int] = field(default_factory=list)
    backfill_runs: list[str] = field(default_factory=list)
    backfill_max: int = 0
    backfill_next: int = 0
    backfill_v: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.schedule_id}"

    @property
    def spec(self) -> tuple[object, ...]:
        """What its creator set (but ``paused``, which changes): two creates of the same
        spec by the same key are one schedule."""
        return (
            self.cron, self.timezone, self.every_seconds, self.at_ms, self.task, self.pipeline,
            self.input_json, self.priority, sorted(self.labels.items()), self.overlap,
            self.created_by, self.run_timeout_seconds, self.start_ms, self.end_ms,
            self.due_time_field, self.jitter_seconds,
        )  # fmt: skip

    @property
    def timing(self) -> Timing:
        return Timing(
            self.cron, self.timezone, self.every_seconds, self.created_ms, self.at_ms,
            self.start_ms, self.end_ms, self.jitter_seconds,
        )  # fmt: skip

    def to_doc(self) -> dict[str, Any]:
        return {"_id": self.key, **asdict(self)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ScheduleRecord:
        record = cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        record.paused = bool(record.paused)  # nx-27017 gives 1 for a bool an update set
        return record

    def to_proto(self) -> spb.Schedule:
        m = spb.Schedule(
            schedule_id=self.schedule_id,
            namespace=self.namespace,
            cron=self.cron,
            timezone=self.timezone,
            task=self.task,
            pipeline=self.pipeline,
            input_json=self.input_json,
            priority=self.priority,
            labels=self.labels,
            overlap=spb.ScheduleOverlap.Value(f"SCHEDULE_OVERLAP_{self.overlap}"),
            paused=self.paused,
            last_run_id=self.last_run_id,
            runs_started=self.runs_started,
            times_skipped=self.times_skipped,
            last_error=self.last_error,
            created_by=self.created_by,
            description=self.timing.describe(),
            due_time_field=self.due_time_field,
            backfill_waiting=len(self.backfill_ms),
        )
        if self.every_seconds:
            m.every.FromMilliseconds(int(self.every_seconds * 1000))
        if self.run_timeout_seconds:
            m.run_timeout.FromMilliseconds(int(self.run_timeout_seconds * 1000))
        if self.jitter_seconds:
            m.jitter.FromMilliseconds(int(self.jitter_seconds * 1000))
        for name, ms in (
            ("at", self.at_ms),
            ("next_run_time", self.next_ms),
            ("last_run_time", self.last_ms),
            ("create_time", self.created_ms),
            ("start_time", self.start_ms),
            ("end_time", self.end_ms),
        ):
            if ms:
                getattr(m, name).FromDatetime(datetime.fromtimestamp(ms / 1000, UTC))
        return m


class ScheduleStore:
    """Schedules in MongoDB."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._c = db["schedules"]

    async def start(self) -> None:
        await self._c.create_index([("next_ms", ASCENDING)])
        await self._c.create_index([("backfill_next", ASCENDING)])
        await self._c.create_index([("namespace", ASCENDING), ("schedule_id", ASCENDING)])

    async def insert(self, record: ScheduleRecord) -> None:
        try:
            await self._c.insert_one(record.to_doc())
        except DuplicateKeyError as exc:
            raise AlreadyExists(
                f"namespace {record.namespace!r} already has a schedule {record.schedule_id!r} "
                "that differs (delete it first to change it)",
                field="schedule.schedule_id",
            ) from exc

    async def get(self, namespace: str, schedule_id: str) -> ScheduleRecord | None:
        doc = await self._c.find_one({"_id": f"{namespace}/{schedule_id}"})
        return ScheduleRecord.from_doc(doc) if doc else None

    async def count(self, namespace: str) -> int:
        return int(await self._c.count_documents({"namespace": namespace}))

    async def page(self, namespace: str, after: str, size: int) -> list[ScheduleRecord]:
        """Up to ``size`` schedules of ``namespace`` (``*``: every namespace's) by key
        ("namespace/schedule_id"), those after the key ``after``."""
        query: dict[str, Any] = {} if namespace == ALL_NAMESPACES else {"namespace": namespace}
        if after:
            query["_id"] = {"$gt": after}
        cursor = self._c.find(query).sort("_id", ASCENDING).limit(size)
        return [ScheduleRecord.from_doc(d) async for d in cursor]

    async def due(self, now_ms: int, limit: int) -> list[ScheduleRecord]:
        """Schedules not paused whose next time has come, the most overdue first."""
        query = {"next_ms": {"$gt": 0, "$lte": now_ms}}
        cursor = self._c.find(query).sort("next_ms", ASCENDING).limit(limit)
        return [ScheduleRecord.from_doc(d) async for d in cursor]

    async def update(
        self,
        key: str,
        changes: dict[str, Any],
        counts: dict[str, int] | None = None,
        next_ms: int | None = None,
    ) -> bool:
        """Apply ``changes`` (and add ``counts``) to the schedule ``key`` — only while its
        next time is still ``next_ms``, when given; whether it matched."""
        query: dict[str, Any] = {"_id": key}
        if next_ms is not None:
            query["next_ms"] = next_ms
        update: dict[str, Any] = {"$set": changes} if changes else {}
        if counts:
            update["$inc"] = counts
        result = await self._c.update_one(query, update)
        return bool(result.matched_count)

    async def backfilling(self, limit: int) -> list[ScheduleRecord]:
        """Schedules with backfill times waiting, the longest waiting first."""
        cursor = self._c.find({"backfill_next": {"$gt": 0}}).sort("backfill_next", ASCENDING)
        return [ScheduleRecord.from_doc(d) async for d in cursor.limit(limit)]

    async def save_backfill(
        self, record: ScheduleRecord, times: list[int], runs: list[str], most: int
    ) -> bool:
        """Keep ``times`` waiting (and ``runs`` going, under ``most``) on the schedule —
        only while no one else has saved them since ``record`` was read; whether it did."""
        version: dict[str, Any] = {"backfill_v": record.backfill_v}
        if not record.backfill_v:  # a schedule stored before backfills waited has none
            version = {"$or": [version, {"backfill_v": {"$exists": False}}]}
        changes = {
            "backfill_ms": times,
            "backfill_runs": runs if times else [],
            "backfill_max": most if times else 0,
            "backfill_next": times[0] if times else 0,
            "backfill_v": record.backfill_v + 1,
        }
        result = await self._c.update_one({"_id": record.key, **version}, {"$set": changes})
        return bool(result.matched_count)

    async def record_run(self, key: str, due_ms: int, run_id: str) -> bool:
        """Record ``run_id`` (started for the due time ``due_ms``) as the schedule's last run
        and count it, unless it already is: whether this call counted it."""
        result = await self._c.update_one(
            {"_id": key, "last_run_id": {"$ne": run_id}},
            {
                "$set": {"last_ms": due_ms, "last_run_id": run_id, "last_error": ""},
                "$inc": {"runs_started": 1},
            },
        )
        return bool(result.modified_count)

    async def delete(self, namespace: str, schedule_id: str) -> bool:
        result = await self._c.delete_one({"_id": f"{namespace}/{schedule_id}"})
        return bool(result.deleted_count)
