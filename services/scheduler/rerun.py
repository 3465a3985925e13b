"""Running a run again (``RerunRun``; Flower's retry, Hatchet's replay): a new run of what the
run ran — the same version of its task or pipeline (the latest, when asked), its input,
priority, time limit, cache choice and labels, with ``wtm.rerun_of`` — and, resumed
(``from_failure``, Argo's retry), taking over the steps it completed
(``SubmitRunRequest.reuse_from``). One call of the scheduler's; clients composed it from
``GetRun`` and ``SubmitRun`` until 2026-12-05.
Bulk resume (``bulk_resume.py``) builds its resumes here too."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from common.errors import WtmError
from services.scheduler.models import Run
from services.scheduler.planning import SubmitRequest
from services.scheduler.runs import RunService

RERUN_OF = "wtm.rerun_of"  # the label a rerun carries: the run it ran again
# A schedule's runs' labels (which schedule, which due time): a rerun is not one of them.
SCHEDULE_LABELS = ("wtm.schedule", "wtm.schedule_time")


async def rerun(
    runs: RunService,
    namespace: str,
    run_id: str,
    latest: bool = False,
    from_failure: bool = False,
    request_id: str = "",
) -> Run:
    """The new run of ``run_id`` (a run ``namespace`` can see), as accepted; a request id
    already used answers the run it made. What a resume refuses names ``from_failure``, the
    caller's field (the submit names its own, ``reuse_from``)."""
    original = await runs.get(run_id, namespace)
    request = rerun_request(original, namespace, latest, from_failure, request_id)
    try:
        return await runs.submit(request)
    except WtmError as exc:
        if exc.field != "reuse_from":
            raise
        raise type(exc)(exc.reason, field="from_failure") from exc


def rerun_request(
    run: Run, namespace: str, latest: bool, from_failure: bool = True, request_id: str = ""
) -> SubmitRequest:
    """A new run of ``run``: the same version of its task or pipeline (the latest with
    ``latest``), input, priority, time limit, cache choice and labels, with
    ``wtm.rerun_of``; with ``from_failure``, taking over the steps it completed."""
    version = run.task_version
    task, pipeline = target(run.pipeline_id, run.pipeline_version, run.task_id, version, latest)
    return SubmitRequest(
        task=task,
        pipeline=pipeline,
        input_json=run.input_json,
        priority=run.priority,
        request_id=request_id,
        labels=labels(run.labels, run.run_id),
        namespace=namespace,
        run_timeout_seconds=time_limit(run.deadline_at, run.scheduled_at, run.created_at) or 0.0,
        reuse_from=run.run_id if from_failure else "",
        cache=run.cache,
    )


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
