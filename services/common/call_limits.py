"""``CallLimits``: how many calls a second each namespace may make to one service replica.

Several teams share one installation, and one team's runaway loop — a script polling
``GetRun`` as fast as it can, a dashboard left open on a slow ``ListRuns`` — must not take
the replicas' time (and MongoDB's) from everyone else. Temporal's frontend limits each
namespace's requests a second the same way (``frontend.namespaceRPS``). A token bucket per
namespace (the namespace a call acts in), ``per_second`` tokens a second up to a burst of
``burst``; a call that finds none is RESOURCE_EXHAUSTED naming the namespace and when the
next one would pass (also as gRPC's ``grpc-retry-pushback-ms`` trailer, which the SDK's
retries wait out: the call was not run, so trying it again is safe). Per replica (as
Temporal's per-host figure): N replicas let a namespace make N times as many. A namespace
may have its own figure (UpdateNamespace's ``calls_per_second``, 0 for none), which both
services read each second (``rates``). Not counted:
the fleet's and the services' own calls (the ``executor`` and ``service`` roles) and
streams both ways (an executor's stream is one call however long it lasts). Off (0) unless
set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Meter
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from common.errors import ResourceExhausted

log = logging.getLogger(__name__)


SETTING = "calls_per_second"  # a namespace's own, in MongoDB's namespace_settings
SETTINGS_COLLECTION = "namespace_settings"  # written by the scheduler's UpdateNamespace


class CallsExhausted(ResourceExhausted):
    """A namespace past its calls a second: the call was not run, and may be made again in
    ``retry_after`` seconds (sent as ``grpc-retry-pushback-ms``; the SDK waits that long)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, field="namespace")
        self.retry_after = retry_after


class CallLimits:
    """Token buckets by namespace; safe to use from many threads (the registry's)."""

    def __init__(
        self,
        per_second: float,
        burst: float = 0.0,
        service: str = "service",
        clock: Callable[[], float] = time.monotonic,
        meter: Meter | None = None,
        rates: Mapping[str, float] | None = None,
    ) -> None:
        self.per_second = per_second
        self.burst = burst or max(1.0, 2 * per_second)
        self.rates = rates if rates is not None else {}  # namespace -> its own (live)
        self.service = service
        self.clock = clock
        meter = meter or metrics.get_meter(f"wtm.{service}")
        self.refused = meter.create_counter(  # what operators alert on (a team held back)
            "wtm_calls_refused", description="calls refused for their namespace's calls a second"
        )
        self._buckets: dict[str, tuple[float, float]] = {}  # namespace -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, namespace: str) -> None:
        """Count one call of ``namespace``; RESOURCE_EXHAUSTED when it has none left."""
        rate, burst, whose = self.per_second, self.burst, "WTM_CALLS_PER_SECOND"
        if (own := self.rates.get(namespace)) is not None:
            rate, burst, whose = own, max(1.0, 2 * own), "its own: wtm namespace set"
        if rate <= 0:
            return
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(namespace, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens < 1.0 - 1e-9:  # (a clock's float sum short of a whole token)
                self._buckets[namespace] = (tokens, now)
                self.refused.add(1, {"namespace": namespace})
                wait = (1.0 - tokens) / rate
                raise CallsExhausted(
                    f"{namespace!r} is making more than {rate:g} calls a second to this "
                    f"{self.service} ({whose}); slow down: the next call passes in {wait:.2f}s",
                    retry_after=wait,
                )
            self._buckets[namespace] = (tokens - 1.0, now)


def follow_rates(settings: Collection[Any], limits: CallLimits, every: float = 1.0) -> None:
    """Keep ``limits.rates`` to each namespace's own calls a second as UpdateNamespace sets
    them, read from ``settings`` every ``every`` seconds in a thread of its own for the
    process's life — for a service that reads no other namespace setting (the registry).
    Each reading replaces the map whole, so a call never sees half of one. MongoDB away: the
    last figures hold."""

    def follow() -> None:
        while True:
            try:
                docs = settings.find({}, {SETTING: 1})
                limits.rates = {
                    d["_id"]: float(d[SETTING]) for d in docs if d.get(SETTING) is not None
                }
            except PyMongoError:
                log.warning("reading the namespaces' calls a second failed", exc_info=True)
            time.sleep(every)

    threading.Thread(target=follow, name="namespace-call-rates", daemon=True).start()
