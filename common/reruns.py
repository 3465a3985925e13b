"""What a run's rerun or resume runs, shared by the clients (``Client.rerun``) and the
scheduler (``ResumeRuns``): the same version of its task or pipeline (the latest, when
asked), its time limit, and its labels with ``wtm.rerun_of`` (not a schedule's)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

RERUN_OF = "wtm.rerun_of"  # the label a rerun carries: the run it ran again
# A schedule's runs' labels (which schedule, which due time): a rerun is not one of them.
SCHEDULE_LABELS = ("wtm.schedule", "wtm.schedule_time")


def target(
    pipeline_id: str, pipeline_version: str, task_id: str, task_version: str, latest: bool
) -> tuple[str, str]:
    """(task, pipeline) references for a rerun: pinned to the version the run ran, or to
    none (the latest) with ``latest``."""
    if pipeline_id:
        pinned = f"{pipeline_id}@{pipeline_version}" if pipeline_version else ""
        return "", (pinned if pinned and not latest else pipeline_id)
    return (f"{task_id}@{task_version}" if task_version and not latest else task_id), ""


def time_limit(
    deadline_at: datetime | None, scheduled_at: datetime | None, created_at: datetime | None
) -> float | None:
    """The run's time limit in seconds (None: it had none); a rerun starts at once."""
    start = scheduled_at or created_at
    if deadline_at is None or start is None:
        return None
    return round((deadline_at - start).total_seconds(), 3)


def labels(of: Mapping[str, str], run_id: str) -> dict[str, str]:
    """The rerun's labels: the run's, but a schedule's, with ``wtm.rerun_of``."""
    return {**{k: v for k, v in of.items() if k not in SCHEDULE_LABELS}, RERUN_OF: run_id}
