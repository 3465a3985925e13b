"""``RunLimits``: how many unfinished runs (queued or running) a namespace may have.

Teams share one Redis: every queued run holds its hashes and events there, so one team
submitting without end would fill Redis's memory and stop every team's work. With a limit,
a submit that would take its namespace past it is refused with RESOURCE_EXHAUSTED, naming
the namespace, what it has and its limit; the runs already queued go on, and submits pass
again as they finish. (Temporal limits each namespace's request rate, Hatchet each
tenant's runs; here the bound is on what Redis holds, which is what runs out.)

The count is kept in Redis by the scripts themselves (``wtm:unfinished``: +1 when
``submit_run.lua`` creates a run, -1 when ``finish_run`` ends it, so every replica sees the
same), read once a second (the reaper) and checked here without a round trip on the submit's
path; between two reads a replica adds what it admitted itself. So the limit is soft by at
most what other replicas admit in a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from common.errors import ResourceExhausted
from services.common.config import namespace_values, namespace_values_problem


def parse_limits(entries: list[str]) -> dict[str, int]:
    """``["team-a=1000", ...]`` (WTM_NAMESPACE_RUN_LIMITS) as {namespace: limit}."""
    return namespace_values(entries, int)


def limits_problem(entries: list[str]) -> str | None:
    """Why WTM_NAMESPACE_RUN_LIMITS is not a list of NAMESPACE=N, or None."""
    return namespace_values_problem(
        entries,
        "limit",
        int,
        "a whole number (0: none)",
        lambda n: None if n >= 0 else "must be a whole number (0: none)",
    )


class RunLimits:
    """Each namespace's unfinished runs as last read, plus what was admitted here since,
    held to ``limit_of(namespace)`` (0: none) — ``NamespaceSettings.run_limit``, which
    knows the installation's default, its per-namespace values and UpdateNamespace's."""

    def __init__(self, limit_of: Callable[[str], int] = lambda _namespace: 0) -> None:
        self.limit = limit_of
        self._counts: Counter[str] = Counter()
        self._admitted: Counter[str] = Counter()

    def seen(self, counts: Mapping[str, int]) -> None:
        """The counts as Redis has them now (they include what this replica admitted)."""
        self._counts = Counter(counts)
        self._admitted.clear()

    def admit(self, namespace: str, runs: int) -> None:
        """Count ``runs`` new runs of ``namespace``, or refuse them all if that would take
        it past its limit."""
        limit = self.limit(namespace)
        if not limit:
            return
        have = self._counts[namespace] + self._admitted[namespace]
        if have + runs > limit:
            raise ResourceExhausted(
                f"{namespace!r} has {have:,} runs queued or running; "
                f"{runs:,} more would pass its limit of {limit:,} (WTM_MAX_UNFINISHED_RUNS, "
                "WTM_NAMESPACE_RUN_LIMITS, wtm namespace set): submit again as they finish",
                field="namespace",
            )
        self._admitted[namespace] += runs
