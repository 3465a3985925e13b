"""``RunService``: accept runs, report them, and stream their events."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from services.common.errors import InvalidArgument, NotFound, Unimplemented
from services.scheduler.models import TERMINAL, Run, StepRun, ms_to_dt
from services.scheduler.run_queue import RunQueue, StepSpec
from services.scheduler.run_store import RunStore
from services.scheduler.task_catalog import TaskCatalog

MAX_INPUT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SubmitRequest:
    """A run to start, as the user asked for it."""

    task: str = ""
    pipeline: str = ""
    input_json: str = "{}"
    priority: int = 0
    request_id: str = ""
    labels: dict[str, str] | None = None


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

    @property
    def ends_run(self) -> bool:
        return not self.step_id and self.state in TERMINAL


def _parse_input(text: str) -> dict[str, object]:
    if len(text.encode()) > MAX_INPUT_BYTES:
        raise InvalidArgument(f"is over {MAX_INPUT_BYTES} bytes", field="input_json")
    try:
        doc = json.loads(text or "{}")
    except ValueError as exc:
        raise InvalidArgument(f"is not valid JSON ({exc})", field="input_json") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument("must be a JSON object", field="input_json")
    return doc


class RunService:
    """The domain side of SchedulerService."""

    def __init__(
        self,
        queue: RunQueue,
        store: RunStore,
        catalog: TaskCatalog,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.store = store
        self.catalog = catalog
        self.on_queued = on_queued  # wakes this replica's dispatcher without a Redis round trip

    async def submit(self, req: SubmitRequest) -> Run:
        if bool(req.task) == bool(req.pipeline):
            raise InvalidArgument("set exactly one of task and pipeline", field="task")
        if req.pipeline:
            raise Unimplemented("pipeline runs are not available yet; run a task", field="pipeline")
        doc = _parse_input(req.input_json)
        if req.priority and not 1 <= req.priority <= 10:
            raise InvalidArgument(f"must be from 1 to 10, got {req.priority}", field="priority")
        if req.request_id:
            existing = await self.store.find_by_request_id(req.request_id)
            if existing:
                return await self.get(existing)
        task = await self.catalog.resolve(req.task, field="task")
        run = Run(
            run_id=uuid.uuid4().hex,
            state="QUEUED",
            input_json=json.dumps(doc),
            priority=req.priority or task.priority,
            task_id=task.task_id,
            labels=dict(req.labels or {}),
            request_id=req.request_id,
            created_at=datetime.now(UTC),
        )
        step = StepRun(
            step_id=task.task_id,
            task_id=task.task_id,
            task_version=task.version,
            state="QUEUED",
            input_id="input_001",
            output_id="output_001",
        )
        if not await self.store.insert_run(run):
            raise InvalidArgument("run id collision; submit again", field="run_id")
        spec = StepSpec(
            step_id=step.step_id,
            deps=[],
            dependents=[],
            fields={
                "task_id": task.task_id,
                "task_version": task.version,
                "digest": task.digest,
                "entry_point": task.entry_point,
                "queue": task.queue,
                "timeout": str(task.timeout_seconds),
                "max_retries": str(task.max_retries),
                "input_id": step.input_id,
                "output_id": step.output_id,
                "mapping": "{}",
            },
        )
        run_fields = {
            "run_id": run.run_id,
            "input_json": run.input_json,
            "priority": str(run.priority),
            "task_id": run.task_id,
            "labels": json.dumps(run.labels),
            "request_id": run.request_id,
            "sinks": json.dumps([step.step_id]),
        }
        created, run_id = await self.queue.submit(run.run_id, run_fields, [spec], req.request_id)
        if not created:  # the same request id won a race in Redis
            return await self.get(run_id)
        self.on_queued()
        run.steps = [step]
        return run

    async def get(self, run_id: str) -> Run:
        if not run_id:
            raise InvalidArgument("is required", field="run_id")
        run_hash, steps, outputs = await self.queue.read_run(run_id)
        if run_hash:
            return Run.from_redis(run_hash, steps, outputs)
        found = await self.store.get_run(run_id)
        if found is None:
            raise NotFound(f"no run {run_id}", field="run_id")
        return found

    async def watch(self, run_id: str, after_event_id: str = "") -> AsyncIterator[RunEvent]:
        """Events of a run from the start (or after an event id) until it finishes."""
        if not await self.queue.events_exist(run_id):
            run = await self.get(run_id)  # NotFound if it never existed
            yield RunEvent("", run_id, "", 0, run.state, run.error, run.ended_at or run.created_at)
            return
        cursor = after_event_id or "0"
        while True:
            batch = await self.queue.read_events(run_id, cursor, block_ms=5000)
            for event_id, f in batch:
                cursor = event_id
                event = RunEvent(
                    event_id,
                    run_id,
                    f.get("step", ""),
                    int(f.get("attempt", 0)),
                    f["state"],
                    f.get("msg", ""),
                    ms_to_dt(f.get("t")),
                )
                yield event
                if event.ends_run:
                    return
            if not batch and not await self.queue.events_exist(run_id):
                return
