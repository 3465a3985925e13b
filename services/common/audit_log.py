"""``AuditLog``: who changed what, when, and how it ended, in MongoDB ``audit``."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from tenacity import Retrying, stop_after_delay, wait_exponential

from services.common.auth import ALL_NAMESPACES, Principal

log = logging.getLogger(__name__)


AUDIT_LINGER_SECONDS = 0.2
AUDIT_PRUNE_EVERY_SECONDS = 3600.0
DAY_MS = 86_400_000


class AuditLog:
    """Mutations, written to MongoDB ``audit`` by a thread of its own (never on the call's
    path), with the principal, namespace, time and outcome (a gRPC status name). Events
    older than ``keep_days`` (WTM_AUDIT_RETENTION_DAYS; 0: for good) are deleted by the same
    thread, a minute after start and then hourly: every submit is a mutation, so the log
    grows with the work, as the run history does."""

    def __init__(self, db: Any, keep_days: float = 0.0) -> None:
        self._events = db["audit"]
        self.keep_days = keep_days
        # Called on the thread before each write: a service whose MongoDB has moments to
        # avoid blocks in it until a good one (the scheduler: as a new run's insert lands).
        self.write_when: Callable[[], object] = lambda: None
        self._prune_at = time.monotonic() + 60.0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=100_000)
        self._thread = threading.Thread(target=self._write, name="wtm-audit", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop (a service's graceful stop: the thread is a
        daemon, and events still lingering when the process exits were lost with it)."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def prune(self) -> int:
        """Delete the events past the retention; how many went."""
        if not self.keep_days:
            return 0
        cutoff = int(time.time() * 1000) - int(self.keep_days * DAY_MS)
        return int(self._events.delete_many({"time_ms": {"$lt": cutoff}}).deleted_count)

    def record(self, method: str, principal: Principal, outcome: str) -> None:
        event = {
            "time_ms": int(time.time() * 1000),
            "method": method.rsplit("/", 1)[-1],
            "service": method.strip("/").split("/")[0],
            "key_id": principal.key_id,
            "principal": principal.name,
            "role": str(principal.role),
            "namespace": principal.scope,
            "outcome": outcome,
        }
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.error("audit queue full; dropped %s", event)

    def _write(self) -> None:
        while True:
            if self.keep_days and time.monotonic() >= self._prune_at:
                self._prune_at = time.monotonic() + AUDIT_PRUNE_EVERY_SECONDS
                try:
                    self.prune()
                except Exception:  # noqa: BLE001 - the thread must go on; next hour again
                    log.exception("pruning the audit log failed")
            try:
                first = self._queue.get(timeout=60.0)
            except queue.Empty:
                continue
            if first is None:  # closed
                return
            batch, closed = [first], False
            # Gather what else comes within the linger: one insert per batch, not per call
            # (a lone insert per submit cost the scheduler ~15% of its time, and nx-27017
            # more; an audit record may well land a fifth of a second after its call).
            time.sleep(AUDIT_LINGER_SECONDS)
            while not self._queue.empty() and len(batch) < 500:
                event = self._queue.get_nowait()
                if event is None:
                    closed = True
                    break
                batch.append(event)
            try:  # MongoDB away: wait and try again, for up to a minute
                for attempt in Retrying(
                    stop=stop_after_delay(60), wait=wait_exponential(max=10), reraise=True
                ):
                    with attempt:
                        self.write_when()
                        self._events.insert_many(batch, ordered=False)
            except Exception:  # noqa: BLE001 - the thread must go on
                log.exception("dropped %d audit events: MongoDB refused them", len(batch))
            if closed:
                return

    def list(self, by: Principal, limit: int, before_ms: int = 0) -> list[dict[str, Any]]:
        query: dict[str, Any] = {} if by.scope == ALL_NAMESPACES else {"namespace": by.scope}
        if before_ms:
            query["time_ms"] = {"$lt": before_ms}
        cursor = self._events.find(query, {"_id": 0}).sort("time_ms", -1).limit(limit)
        return list(cursor)
