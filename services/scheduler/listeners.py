"""What happens to runs and attempts, told to whoever listens: one interface, the listeners
registered in one place (``services/scheduler/__main__.py``), as dramatiq's middleware.

The scheduling path (lease, complete, unblock) calls ``Listeners``; history, tracing, metrics
and waiting submits are listeners. A listener must not block (it is called on the event
loop) and must not raise: ``Listeners`` logs and swallows what one raises, so a broken
listener costs its own record, never a lease or a result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.scheduler.models import Run
    from services.scheduler.queue_records import RunSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refused:
    """A result the scheduler refused (its attempt or lease was no longer current)."""

    attempt: int
    lease_id: str
    outcome: str
    output_json: str
    error: str
    executor_id: str
    leased_here: bool  # the reporter's stream was given this attempt (not an impostor's claim)


class RunListener:
    """Every event, as a no-op: override the ones you need. ``member`` is "run_id:step_id";
    ``snapshot`` is the step's Redis hash right after the Lua call that changed it."""

    def runs_submitted(self, count: int) -> None:
        """``count`` runs were accepted (queued and recorded)."""

    def run_started(self, run_id: str, at_ms: int) -> None:
        """A run's first step was leased."""

    def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
        """A step attempt ended (its result counted, it failed and will be retried, or its
        lease expired)."""

    def execution_refused(self, member: str, snapshot: dict[str, str], refused: Refused) -> None:
        """An executor reported an attempt that was no longer current."""

    def lease_expired(self, member: str) -> None:
        """An attempt's lease ran out (its executor went silent)."""

    def run_ended(self, run_id: str, final: RunSnapshot | None) -> None:
        """A run ended; ``final`` is the run as the Lua call that ended it returned it, when
        the caller had it."""

    def run_recorded(self, run: Run, fields: dict[str, str]) -> None:
        """A finished run was read back for the history (``fields``: its Redis hash)."""

    def history_write_failed(self) -> None:
        """Writing finished runs to MongoDB failed (it is tried again)."""


class Listeners(RunListener):
    """Tells every registered listener, in registration order."""

    def __init__(self, *listeners: RunListener) -> None:
        self._listeners: list[RunListener] = list(listeners)

    def register(self, *listeners: RunListener) -> None:
        self._listeners.extend(listeners)

    def _each(self, event: str, *args: object) -> None:
        for listener in self._listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:  # noqa: BLE001 - a listener never breaks scheduling
                log.exception("listener %s failed on %s", type(listener).__name__, event)

    def runs_submitted(self, count: int) -> None:
        self._each("runs_submitted", count)

    def run_started(self, run_id: str, at_ms: int) -> None:
        self._each("run_started", run_id, at_ms)

    def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
        self._each("attempt_ended", member, snapshot, output_json)

    def execution_refused(self, member: str, snapshot: dict[str, str], refused: Refused) -> None:
        self._each("execution_refused", member, snapshot, refused)

    def lease_expired(self, member: str) -> None:
        self._each("lease_expired", member)

    def run_ended(self, run_id: str, final: RunSnapshot | None) -> None:
        self._each("run_ended", run_id, final)

    def run_recorded(self, run: Run, fields: dict[str, str]) -> None:
        self._each("run_recorded", run, fields)

    def history_write_failed(self) -> None:
        self._each("history_write_failed")

    def step_ended(
        self,
        member: str,
        snapshot: dict[str, str],
        output_json: str,
        ends_run: bool,
        final: RunSnapshot | None = None,
    ) -> None:
        """What a Lua call that ended an attempt tells: the attempt ended (when it returned
        the step), and the run too when ``ends_run``."""
        if snapshot:
            self.attempt_ended(member, snapshot, output_json)
        if ends_run:
            self.run_ended(member.partition(":")[0], final)
