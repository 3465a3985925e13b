"""``FairShares``: how much of the fleet's new work each namespace is given when several
have runs waiting (WTM_NAMESPACE_WEIGHTS, ``team-a=3,team-b=0.5``; 1 unless named).

New runs take turns between namespaces (start-time fair queueing in ``lib.lua``: a
namespace's next first step is tagged one *cost* after its last); a namespace of weight 3
costs a third as much per first step, so while both have runs waiting it starts three runs
for each one of a namespace of weight 1 — Temporal's fairness weights, Hatchet's weighted
round robin. A namespace that has nothing waiting uses no share, and the others take it.

The costs live in Redis beside the turns (``wtm:fair``, fields ``c:<namespace>``), where
every script that queues a first step reads them in the call it already makes; every
replica writes its own setting's each second (give all replicas the same setting) and
removes those of namespaces no longer named when it starts. A cost is 1/weight rounded to
a 32nd, so that tags — milliseconds of the clock, plus costs — stay exact in a double.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from services.common.config import namespace_values, namespace_values_problem
from services.scheduler import keys

MAX_WEIGHT = 32.0
GRAIN = 32  # costs are whole 32nds: exact in the scores' doubles


def weights_problem(entries: list[str]) -> str | None:
    """Why WTM_NAMESPACE_WEIGHTS is not a list of NAMESPACE=WEIGHT, or None."""
    low = 1 / GRAIN
    return namespace_values_problem(
        entries,
        "weight",
        float,
        "a number",
        lambda w: None if low <= w <= MAX_WEIGHT else f"must be between {low:g} and {MAX_WEIGHT:g}",
    )


def parse_weights(entries: list[str]) -> dict[str, float]:
    """``["team-a=3", ...]`` as {namespace: weight} (checked by ``weights_problem``)."""
    return namespace_values(entries, float)


def cost_of(weight: float) -> float:
    """What one first step moves its namespace's turn on by: 1/weight in whole 32nds."""
    return max(1, round(GRAIN / weight)) / GRAIN


class FairShares:
    """The weighted namespaces' costs, written to Redis for the scripts. ``weights`` is live
    (``NamespaceSettings.weights``: UpdateNamespace changes it); each ``publish`` writes it
    as it is then."""

    def __init__(self, redis: aioredis.Redis, weights: Mapping[str, float]) -> None:
        self.redis = redis
        self.weights = weights
        self._written: set[str] = set()

    @property
    def costs(self) -> dict[str, float]:
        return {f"c:{ns}": cost_of(w) for ns, w in self.weights.items()}

    async def start(self) -> None:
        """Drop the costs of namespaces no longer named, then write these."""
        fields = [
            f.decode() if isinstance(f, bytes) else f for f in await self.redis.hkeys(keys.FAIR)
        ]
        self._written = {f for f in fields if f.startswith("c:")}
        await self.publish()

    async def publish(self) -> None:
        """Write the costs (again: Redis may have been flushed since), and drop those of
        namespaces whose weight went back to 1 since the last."""
        costs = self.costs
        stale = self._written - set(costs)
        if stale:
            await self.redis.hdel(keys.FAIR, *sorted(stale))
        if costs:
            await self.redis.hset(keys.FAIR, mapping=costs)  # type: ignore[arg-type]
        self._written = set(costs)
