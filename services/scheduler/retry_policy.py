"""When to retry a failed step attempt: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before attempt ``n + 1`` after attempt ``n`` failed: between half and all of
    ``initial * 2 ** (n - 1)``, capped at ``maximum`` ("equal jitter" in AWS's
    backoff study; Celery's ``retry_jitter`` does the same)."""

    initial_seconds: float = 1.0
    maximum_seconds: float = 60.0
    jitter: bool = True

    def delay_seconds(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.maximum_seconds, self.initial_seconds * 2 ** max(failed_attempt - 1, 0))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(ceiling / 2, ceiling)
