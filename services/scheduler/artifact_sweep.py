"""``ArtifactSweep``: artifacts that no kept record names leave the object store.

Artifacts are content-addressed (one object per digest and namespace) and shared by every run
that uploaded, read or made the same bytes, so none can go with one run: history retention
deletes runs and leaves their files. This sweep runs after a retention pass, at most once
per ``every`` (a day) over all replicas (a claim in Redis), and deletes through the
registry's DeleteArtifacts each artifact that

- belongs to a namespace whose runs are not kept for good (retention 0 keeps its files too);
- was last stored longer ago than that namespace's retention, and at least ``MIN_GRACE_DAYS``
  ago: longer than the result cache keeps an output that may name one (24 h), and than a
  client's upload waits for its submit (an upload of the same bytes stores it again);
- is named by no run's input and no step's output still in MongoDB (each record carries
  the digests it names, ``artifacts``, indexed), no unfinished run, no schedule's input
  (its next runs'), and no pipeline version's constant inputs (``input_mapping``, read
  through the registry);
- and, if stored before the scheduler began recording those names (``since``, kept in
  MongoDB), only once the namespace's retention has passed since then: the runs recorded
  before carry no ``artifacts`` and are gone by that time.

The names are read after the candidates are listed, so a run recorded while the pass lists
is seen. One recorded between the marking and the delete that names a candidate (an
artifact unused for the whole retention, named again by URI at that moment without an
upload) fails its step, "artifact is gone", as a file deleted by hand does. At most
``max_deletes`` go per pass; the rest go the next day.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import Meter
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

from common.artifacts import digests_in
from services.scheduler import keys
from services.scheduler.clock import SYSTEM, Clock

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
MIN_GRACE_DAYS = 2.0
DELETE_BATCH = 1000  # digests per DeleteArtifacts call (its limit)
CLAIM = keys.PREFIX + "artifact-sweep"  # STRING: the replica sweeping; expires after ``every``
SWEEP_MODES = ("on", "dry-run", "off")


@dataclass(frozen=True)
class StoredArtifact:
    namespace: str
    digest: str
    stored_ms: int  # when last written


class ArtifactIndex(Protocol):
    """What the sweep needs of the registry."""

    def artifacts(self) -> AsyncIterator[StoredArtifact]:
        """Every stored artifact, of every namespace."""
        ...

    def pipeline_texts(self, namespace: str) -> AsyncIterator[str]:
        """The constant inputs of every pipeline version of a namespace (JSON texts)."""
        ...

    async def delete(self, namespace: str, digests: list[str]) -> None: ...


class ArtifactSweep:
    def __init__(
        self,
        db: AsyncDatabase,
        index: ArtifactIndex,
        redis: Redis,
        replica: str,
        clock: Clock = SYSTEM,
        every: float = 86_400.0,
        max_deletes: int = 10_000,
        mode: str = "on",
        meter: Meter | None = None,
    ) -> None:
        self._runs = db["runs"]
        self._steps = db["step_runs"]
        self._meta = db["artifact_sweep"]
        self._schedules = db["schedules"]
        self.index = index
        self.redis = redis
        self.replica = replica
        self.clock = clock
        self.every = every
        self.max_deletes = max_deletes
        self.mode = mode  # "dry-run": log what would go, delete nothing; "off": no sweep
        self.since_ms = 0
        self.deleted = (meter or metrics.get_meter("wtm.scheduler")).create_counter(
            "wtm_artifacts_deleted", description="artifacts the sweep deleted, per namespace"
        )

    async def start(self) -> None:
        """Note when records began naming their artifacts (the first replica's start)."""
        with contextlib.suppress(DuplicateKeyError):  # a replica before this one noted it
            await self._meta.insert_one({"_id": "names", "since_ms": self.clock.now_ms()})
        doc = await self._meta.find_one({"_id": "names"})
        self.since_ms = int(doc["since_ms"]) if doc else self.clock.now_ms()

    async def claim(self) -> bool:
        """Whether this replica sweeps now: none has in the last ``every``."""
        return bool(await self.redis.set(CLAIM, self.replica, nx=True, ex=int(self.every)))

    def _grace_ms(self, days: float) -> int:
        return int(max(days, MIN_GRACE_DAYS) * DAY_MS)

    async def candidates(
        self, keep_days: float, per_namespace: Mapping[str, float]
    ) -> dict[str, list[str]]:
        """Per namespace, the digests old enough to go if nothing names them."""
        now = self.clock.now_ms()
        found: dict[str, list[str]] = defaultdict(list)
        async for a in self.index.artifacts():
            days = per_namespace.get(a.namespace, keep_days)
            if not days or now - a.stored_ms < self._grace_ms(days):
                continue
            if a.stored_ms < self.since_ms and now - self.since_ms < days * DAY_MS:
                continue  # runs recorded before names were may still name it
            found[a.namespace].append(a.digest)
        return found

    async def named(self, namespaces: list[str]) -> set[str]:
        """Every digest a kept record, an unfinished run or a schedule's input names (in any
        namespace: a record's steps do not say theirs), or a pipeline of ``namespaces``."""
        names: set[str] = set()
        for records in (self._runs, self._steps):
            async for doc in records.find({"artifacts": {"$exists": True}}, {"artifacts": 1}):
                names.update(doc.get("artifacts") or [])
        unfinished = {"state": {"$in": ["QUEUED", "RUNNING"]}}
        async for doc in self._runs.find(unfinished, {"input_json": 1}):
            names.update(digests_in(doc.get("input_json") or ""))
        async for doc in self._schedules.find({}, {"input_json": 1}):  # its next runs' input
            names.update(digests_in(doc.get("input_json") or ""))
        for namespace in namespaces:
            async for text in self.index.pipeline_texts(namespace):
                names.update(digests_in(text))
        return names

    async def sweep(self, keep_days: float, per_namespace: Mapping[str, float]) -> int:
        """One pass; the number of artifacts deleted (in a dry run: that would be)."""
        started = time.monotonic()
        candidates = await self.candidates(keep_days, per_namespace)
        if not candidates:
            return 0
        names = await self.named(sorted(candidates))
        deleted = 0
        for namespace, digests in sorted(candidates.items()):
            doomed = [d for d in digests if d not in names]
            doomed = doomed[: self.max_deletes - deleted]
            if self.mode == "dry-run" and doomed:
                log.info(
                    "artifact sweep (dry run): would delete %d of %s, e.g. %s",
                    len(doomed),
                    namespace,
                    ", ".join(doomed[:3]),
                )
            else:
                for i in range(0, len(doomed), DELETE_BATCH):
                    batch = doomed[i : i + DELETE_BATCH]
                    await self.index.delete(namespace, batch)
                    self.deleted.add(len(batch), {"namespace": namespace})
            deleted += len(doomed)
        log.info(
            "artifact sweep: %s %d artifacts no kept run or pipeline names (%.1f s)",
            "would have deleted" if self.mode == "dry-run" else "deleted",
            deleted,
            time.monotonic() - started,
        )
        return deleted

    async def maybe_sweep(self, keep_days: float, per_namespace: Mapping[str, float]) -> int:
        """``sweep`` when this replica claims the day's pass (after a retention pass)."""
        retained = keep_days or any(per_namespace.values())
        if self.mode == "off" or not retained or not await self.claim():
            return 0
        try:
            return await self.sweep(keep_days, per_namespace)
        except BaseException:
            await self.redis.delete(CLAIM)  # the next retention pass (an hour) tries again
            raise
