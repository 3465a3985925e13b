"""``RunEvent``: one change in a run's life as WatchRun reports it, and where a watch starts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from common.errors import InvalidArgument
from services.scheduler.models import TERMINAL


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
