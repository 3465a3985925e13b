"""``NamespaceSettings``: each namespace's run limit, fairness weight, history retention and
calls a second.

The installation's settings (WTM_MAX_UNFINISHED_RUNS and WTM_NAMESPACE_RUN_LIMITS,
WTM_NAMESPACE_WEIGHTS, WTM_HISTORY_RETENTION_DAYS and WTM_NAMESPACE_RETENTION_DAYS) are where
every replica starts. UpdateNamespace sets a namespace's own over them — as Temporal's
``UpdateNamespace`` changes a namespace's retention — kept in MongoDB (``namespace_settings``,
one document per namespace that has any) and read by every replica each second, so the
replicas agree, and a team's limit changes without a restart. Only a key of every namespace
may change them: an admin of one namespace must not raise its own limit.

The per-namespace maps here are live: ``RunLimits``, ``FairShares``, ``HistoryRetention`` and
``FleetReport`` hold them, and each refresh changes them in place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from common.errors import InvalidArgument, PermissionDenied
from services.common import auth, call_limits
from services.scheduler.clock import SYSTEM, Clock
from services.scheduler.fair_shares import GRAIN, MAX_WEIGHT

RUN_LIMIT, WEIGHT, RETENTION = "run_limit", "weight", "history_retention_days"
CALLS = call_limits.SETTING  # read by the registry too (call_limits.follow_rates)
FIELDS = (RUN_LIMIT, WEIGHT, RETENTION, CALLS)
MAX_CALLS_PER_SECOND = 1_000_000.0
MAX_RUN_LIMIT = 1_000_000_000
MAX_RETENTION_DAYS = 36_500.0


def value_problem(field: str, value: float) -> str | None:
    """Why ``value`` cannot be ``field``'s, or None."""
    if not math.isfinite(value):
        return "must be a finite number"
    if field == RUN_LIMIT and not (0 <= value <= MAX_RUN_LIMIT and value == int(value)):
        return f"must be a whole number from 0 (none) to {MAX_RUN_LIMIT:,}"
    if field == WEIGHT and not 1 / GRAIN <= value <= MAX_WEIGHT:
        return f"must be from {1 / GRAIN:g} to {MAX_WEIGHT:g}"
    if field == RETENTION and not 0 <= value <= MAX_RETENTION_DAYS:
        return f"must be from 0 (for good) to {MAX_RETENTION_DAYS:,.0f} days"
    if field == CALLS and not 0 <= value <= MAX_CALLS_PER_SECOND:
        return f"must be from 0 (no limit) to {MAX_CALLS_PER_SECOND:,.0f}"
    return None


class NamespaceSettings:
    def __init__(
        self,
        db: AsyncDatabase,
        run_limit: int = 0,
        run_limits: Mapping[str, int] | None = None,
        weights: Mapping[str, float] | None = None,
        retention_days: float = 0.0,
        retentions: Mapping[str, float] | None = None,
        clock: Clock = SYSTEM,
        calls_per_second: float = 0.0,
    ) -> None:
        self._c = db[call_limits.SETTINGS_COLLECTION]
        self.clock = clock
        self.default_run_limit = run_limit
        self.default_retention_days = retention_days
        self.default_calls_per_second = calls_per_second
        self._installation: dict[str, dict[str, Any]] = {
            RUN_LIMIT: dict(run_limits or {}),
            WEIGHT: dict(weights or {}),
            RETENTION: dict(retentions or {}),
            CALLS: {},
        }
        # Live: the installation's per-namespace values with UpdateNamespace's over them.
        self.run_limits: dict[str, int] = dict(self._installation[RUN_LIMIT])
        self.weights: dict[str, float] = dict(self._installation[WEIGHT])
        self.retentions: dict[str, float] = dict(self._installation[RETENTION])
        self.call_rates: dict[str, float] = {}  # CallLimits holds it

    def _live(self, field: str) -> dict[str, Any]:
        live: dict[str, dict[str, Any]] = {
            RUN_LIMIT: self.run_limits,
            WEIGHT: self.weights,
            RETENTION: self.retentions,
            CALLS: self.call_rates,
        }
        return live[field]

    def run_limit(self, namespace: str) -> int:
        return self.run_limits.get(namespace, self.default_run_limit)

    def weight(self, namespace: str) -> float:
        return self.weights.get(namespace, 1.0)

    def retention_days(self, namespace: str) -> float:
        return self.retentions.get(namespace, self.default_retention_days)

    def calls_per_second(self, namespace: str) -> float:
        return self.call_rates.get(namespace, self.default_calls_per_second)

    def named(self) -> set[str]:
        """The namespaces with a setting of their own (a limit, a weight or a retention)."""
        return {ns for field in FIELDS for ns in self._live(field)}

    async def refresh(self) -> None:
        """Read what UpdateNamespace has set (each second, the reaper)."""
        docs = [d async for d in self._c.find({})]
        for field in FIELDS:
            merged = {
                **self._installation[field],
                **{d["_id"]: d[field] for d in docs if d.get(field) is not None},
            }
            live = self._live(field)
            if live != merged:
                live.clear()
                live.update(merged)

    async def update(
        self, values: Mapping[str, float], reset: list[str], by: auth.Principal
    ) -> str:
        """Set ``values`` and return ``reset`` to the installation's, for the namespace
        ``by`` acts in; that namespace's name."""
        for i, field in enumerate(reset):
            if field not in FIELDS:
                raise InvalidArgument(
                    f"{field[:80]!r} is not a setting; one of {', '.join(FIELDS)}",
                    field=f"reset_fields[{i}]",
                )
            if field in values:
                raise InvalidArgument(f"both set and reset: {field}", field=f"reset_fields[{i}]")
        for field, value in values.items():
            problem = value_problem(field, value)
            if problem:
                raise InvalidArgument(problem, field=field)
        if not values and not reset:
            raise InvalidArgument(
                f"set a setting ({', '.join(FIELDS)}) or name one in reset_fields",
                field="reset_fields",
            )
        namespace = auth.one_namespace(by.scope)
        if by.namespace != auth.ALL_NAMESPACES:
            raise PermissionDenied(
                "only a key of every namespace may change a namespace's settings "
                f"(this key is bound to {by.namespace!r})"
            )
        change: dict[str, Any] = {
            "$set": {
                **{f: (int(v) if f == RUN_LIMIT else float(v)) for f, v in values.items()},
                "updated_by": by.key_id or by.name,
                "updated_ms": self.clock.now_ms(),
            }
        }
        if reset:
            change["$unset"] = dict.fromkeys(reset, "")
        await self._c.update_one({"_id": namespace}, change, upsert=True)
        await self.refresh()
        return namespace
