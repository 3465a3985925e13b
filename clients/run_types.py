"""What the SDK returns about runs: a run and its steps, its events, and what a bulk cancel
or resume did (``clients.types`` re-exports them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clients.wire_time import time_of
from common.states import State
from wtm.v1 import run_pb2
from wtm.v1 import scheduler_service_pb2 as spb


@dataclass(frozen=True)
class StepInfo:
    """The latest attempt of one step of a run."""

    step_id: str
    task_id: str
    task_version: str
    state: State
    attempt: int
    output: Any
    error: str
    executor_id: str
    started_at: datetime | None
    ended_at: datetime | None
    logs: list[str] = field(default_factory=list)
    input_id: str = ""  # the lineage ids of the step's input and output documents
    output_id: str = ""
    cached_from: str = ""  # "run_id/output_id" when the output came from the result cache
    # A step that awaits a signal (its pipeline step's await_signal): while it waits, the input
    # field the signal is given as and when its wait ends; once one came, who sent it.
    awaiting_signal: str = ""
    signal_deadline: datetime | None = None
    signaled_by: str = ""
    continues_at_deadline: bool = False  # then it runs without one (else: TIMED_OUT)
    ran_without_signal: bool = False  # its wait ran out and it went on without one


@dataclass(frozen=True)
class RunInfo:
    """A run and its steps."""

    run_id: str
    state: State
    task_id: str
    pipeline_id: str
    input: dict[str, Any]
    output: Any
    error: str
    priority: int
    steps: list[StepInfo] = field(default_factory=list)
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    pipeline_version: str = ""
    lineage: list[tuple[str, str]] = field(default_factory=list)
    processing_summary: dict[str, Any] | None = None
    batch_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    trace_id: str = ""  # open in Jaeger: http://<jaeger>:16686/trace/<trace_id>
    namespace: str = ""
    deadline_at: datetime | None = None  # submitted with a run_timeout: when it times out
    scheduled_at: datetime | None = None  # submitted with a start_delay: when it may start
    task_version: str = ""  # a task run's version ("" for a pipeline run)

    @property
    def finished(self) -> bool:
        return self.state.is_terminal

    @property
    def what(self) -> str:
        """What ran: "pipeline@version" or "task@version" (a task run recorded before runs
        kept their version: the task alone)."""
        if self.pipeline_id:
            return f"{self.pipeline_id}@{self.pipeline_version}"
        return f"{self.task_id}@{self.task_version}" if self.task_version else self.task_id

    @classmethod
    def from_proto(cls, r: run_pb2.Run) -> RunInfo:
        steps = [
            StepInfo(
                s.step_id,
                s.task_id,
                s.task_version,
                State.from_proto(s.state),
                s.attempt,
                json.loads(s.output_json) if s.output_json else None,
                s.error,
                s.executor_id,
                time_of(s, "start_time"),
                time_of(s, "end_time"),
                list(s.logs),
                s.input_id,
                s.output_id,
                s.cached_from,
                s.awaiting_signal,
                time_of(s, "signal_deadline"),
                s.signaled_by,
                s.continues_at_deadline,
                s.ran_without_signal,
            )
            for s in r.steps
        ]
        summary = None
        if r.HasField("processing_summary"):
            ps = r.processing_summary
            summary = {
                "wall_seconds": ps.wall_seconds,
                "step_seconds_sum": ps.step_seconds_sum,
                "parallel_speedup": ps.parallel_speedup,
                "steps": [
                    {
                        "step_id": t.step_id,
                        "queued_seconds": t.queued_seconds,
                        "run_seconds": t.run_seconds,
                        "process_seconds": t.process_seconds,
                        "pickup_seconds": t.pickup_seconds,
                        "report_seconds": t.report_seconds,
                        "cached": t.cached,
                    }
                    for t in ps.steps
                ],
                "cache_hits": ps.cache_hits,
                "taken_over": ps.taken_over,
                "signal_wait_seconds": ps.signal_wait_seconds,
            }
        return cls(
            r.run_id,
            State.from_proto(r.state),
            r.task_id,
            r.pipeline_id,
            json.loads(r.input_json or "{}"),
            json.loads(r.output_json) if r.output_json else None,
            r.error,
            r.priority,
            steps,
            time_of(r, "create_time"),
            time_of(r, "start_time"),
            time_of(r, "end_time"),
            r.pipeline_version,
            [(e.source, e.target) for e in r.lineage],
            summary,
            r.batch_id,
            dict(r.labels),
            r.trace_id,
            r.namespace,
            time_of(r, "deadline_time"),
            time_of(r, "scheduled_time"),
            r.task_version,
        )


@dataclass
class CancelledRuns:
    """What ``Client.cancel_runs`` did: the runs it cancelled, those that had ended first,
    and the ids of those another key submitted (this key's role may cancel only its own)."""

    cancelled: list[RunInfo] = field(default_factory=list)
    ended: list[RunInfo] = field(default_factory=list)
    not_theirs: list[str] = field(default_factory=list)


@dataclass
class ResumedRuns:
    """What ``Client.resume_runs`` did: each run it resumed, with the run resuming it (the
    same one again when it had been resumed by this call before), and the runs it could not
    resume, with why (``code: message``: nothing would be left to run, a pipeline version no
    longer registered, another key's run the role may not read...)."""

    resumed: list[tuple[str, RunInfo]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class SignaledRuns:
    """What ``Client.signal_runs`` did: the runs that took the signal (queued the step, or
    kept it until the step is ready), and those that did not, with why (``code: message``:
    the step awaits no signal, had another one, was skipped...)."""

    signaled: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RunEventInfo:
    """One event of a run; ``event_id`` resumes a watch after it."""

    event_id: str
    run_id: str
    step_id: str
    attempt: int
    state: State
    message: str
    time: datetime | None
    progress: float = 0.0
    kind: str = "STATE"  # STATE | PROGRESS | RETRYING | LOG

    @property
    def ends_run(self) -> bool:
        return not self.step_id and self.state.is_terminal and self.kind == "STATE"

    @classmethod
    def from_proto(cls, e: spb.RunEvent) -> RunEventInfo:
        return cls(
            e.event_id,
            e.run_id,
            e.step_id,
            e.attempt,
            State.from_proto(e.state),
            e.message,
            time_of(e, "time"),
            e.progress,
            spb.RunEventKind.Name(e.kind).removeprefix("RUN_EVENT_KIND_") or "STATE",
        )
