"""``RunEvent``: one change in a run's life as WatchRun reports it, where a watch starts, and
a finished run's events told again from its history once Redis has let them go."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from common.errors import InvalidArgument
from services.scheduler.models import TERMINAL, Run, StepRun


@dataclass(frozen=True)
class RunEvent:
    """One change in a run's life, as WatchRun reports it."""

    event_id: str
    run_id: str
    step_id: str
    attempt: int
    state: str
    message: str
    time: datetime | None
    progress: float = 0.0
    kind: str = "STATE"  # STATE | PROGRESS | RETRYING | LOG

    @property
    def ends_run(self) -> bool:
        return not self.step_id and self.state in TERMINAL and self.kind == "STATE"


_EVENT_ID = re.compile(r"^(\d{1,19})(?:-(\d{1,19}))?$")


def event_cursor(after_event_id: str) -> str:
    """Where a watch starts: after an event id WatchRun gave ("" for the beginning)."""
    if not after_event_id:
        return "0"
    m = _EVENT_ID.match(after_event_id)
    if m is None or any(int(g) >= 2**63 for g in m.groups() if g):
        raise InvalidArgument(
            f"{after_event_id[:40]!r} is not an event id from WatchRun (like 1733097600000-0)",
            field="after_event_id",
        )
    return after_event_id


# A run's events once Redis has let them go (``WTM_FINISHED_RETENTION_SECONDS`` after its
# end), told again from its history. Events of one moment stand in this order:
RUN_QUEUED, STEP_QUEUED, RUN_RUNNING, STEP_RUNNING, STEP_END, RUN_END = range(6)
FROM_HISTORY = "told from the run's history: its live events are kept a short while after it ends"

Told = tuple[int, int, RunEvent]  # (ms, the order within that ms, the event)


def history_events(run: Run, attempts: list[StepRun], after: str = "0") -> list[RunEvent]:
    """``run``'s life as its record and its steps' attempt records keep it, as WatchRun
    reports a live run's (progress and log lines are not kept; a step's logs stay with it):
    the run queued, each step queued, each attempt's start and end (a retried one's end as
    RETRYING), a step that never ran ending with the run, the run's end. Event ids are made
    from the times ("<ms>-<n>", in order), so a watch resumed with one of them (``after``,
    an ``event_cursor``) goes on from there."""
    # A late result did not count. The steps that ran come first, so that at one moment a
    # step's failure is told before the cancelling of the steps it took with it (their
    # records have attempt 0, and the history lists them first).
    counted = sorted((a for a in attempts if not a.superseded), key=lambda a: a.attempt == 0)
    last = {a.step_id: a.attempt for a in counted}

    def said(step_id: str, state: str, message: str = "") -> RunEvent:
        return RunEvent("", run.run_id, step_id, 0, state, message, None)

    told = [
        _told(RUN_QUEUED, run.created_at, said("", "QUEUED", FROM_HISTORY)),
        _told(RUN_RUNNING, run.started_at, said("", "RUNNING")),
        *(t for a in counted for t in _attempt(run, a, retried=a.attempt < last[a.step_id])),
        *(  # never attempted: cancelled (or failed) with the run
            _told(STEP_END, run.ended_at, said(s.step_id, s.state, s.error))
            for s in run.steps
            if s.step_id not in last and s.state in TERMINAL
        ),
    ]
    if run.state in TERMINAL:
        told.append(_told(RUN_END, run.ended_at or run.created_at, said("", run.state, run.error)))
    events, seen = [], Counter[int]()
    for ms, _, event in sorted((t for t in told if t is not None), key=lambda t: t[:2]):
        event_id = f"{ms}-{seen[ms]}"
        seen[ms] += 1
        if _position(event_id) > _position(after):
            events.append(dataclasses.replace(event, event_id=event_id))
    return events


def _attempt(run: Run, a: StepRun, retried: bool) -> list[Told | None]:
    """What one attempt record tells: its step queued (the first attempt's), its start and
    end; a cache hit, its completion from the output it reused."""

    def event(state: str, attempt: int, message: str = "", kind: str = "STATE") -> RunEvent:
        return RunEvent("", run.run_id, a.step_id, attempt, state, message, None, kind=kind)

    queued = _told(STEP_QUEUED, a.queued_at, event("QUEUED", 0)) if a.attempt <= 1 else None
    if a.cached_from:
        taken = "cached from" if a.attempt else "taken over from"
        done = event("COMPLETED", a.attempt, f"{taken} {a.cached_from}")
        return [queued, _told(STEP_END, a.ended_at or run.created_at, done)]
    started = _told(STEP_RUNNING, a.started_at, event("RUNNING", a.attempt, a.executor_id))
    if a.state not in TERMINAL:
        return [queued, started]
    if retried:  # another attempt followed
        again = event("QUEUED", a.attempt, f"retrying after: {a.error}", "RETRYING")
        return [queued, started, _told(STEP_END, a.ended_at, again)]
    return [queued, started, _told(STEP_END, a.ended_at, event(a.state, a.attempt, a.error))]


def _told(order: int, at: datetime | None, event: RunEvent) -> Told | None:
    """The event at ``at`` (None: not told, the moment was not recorded)."""
    if at is None:
        return None
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000), order, dataclasses.replace(event, time=at)


def _position(event_id: str) -> tuple[int, int]:
    ms, _, n = event_id.partition("-")
    return int(ms), int(n or 0)
