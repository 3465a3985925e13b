"""``CallLimits``: how many calls a second each namespace may make to one service replica.

Several teams share one installation, and one team's runaway loop — a script polling
``GetRun`` as fast as it can, a dashboard left open on a slow ``ListRuns`` — must not take
the replicas' time (and MongoDB's) from everyone else. Temporal's frontend limits each
namespace's requests a second the same way (``frontend.namespaceRPS``). A token bucket per
namespace (the namespace a call acts in), ``per_second`` tokens a second up to a burst of
``burst``; a call that finds none is RESOURCE_EXHAUSTED naming the namespace and when the
next one would pass (also as gRPC's ``grpc-retry-pushback-ms`` trailer, which the SDK's
retries wait out: the call was not run, so trying it again is safe). Per replica (as
Temporal's per-host figure): N replicas let a namespace make N times as many. Not counted:
the fleet's and the services' own calls (the ``executor`` and ``service`` roles) and
streams both ways (an executor's stream is one call however long it lasts). Off (0) unless
set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from opentelemetry import metrics
from opentelemetry.metrics import Meter

from common.errors import ResourceExhausted


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
    ) -> None:
        self.per_second = per_second
        self.burst = burst or max(1.0, 2 * per_second)
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
        if self.per_second <= 0:
            return
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(namespace, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.per_second)
            if tokens < 1.0 - 1e-9:  # (a clock's float sum short of a whole token)
                self._buckets[namespace] = (tokens, now)
                self.refused.add(1, {"namespace": namespace})
                wait = (1.0 - tokens) / self.per_second
                raise CallsExhausted(
                    f"{namespace!r} is making more than {self.per_second:g} calls a "
                    f"second to this {self.service} (WTM_CALLS_PER_SECOND); slow down: the next "
                    f"call passes in {wait:.2f}s",
                    retry_after=wait,
                )
            self._buckets[namespace] = (tokens - 1.0, now)
