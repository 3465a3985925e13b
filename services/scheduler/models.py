"""The scheduler's domain types, ``Run`` and ``StepRun``, and their proto form.

Built either from the live state in Redis or from the history in MongoDB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wtm.v1 import run_pb2 as pb

TERMINAL = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}


def ms_to_dt(ms: str | int | None) -> datetime | None:
    if ms in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _set_time(message: Any, name: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, name).FromDatetime(value)


@dataclass
class StepRun:
    """The latest attempt of one step."""

    step_id: str
    task_id: str
    task_version: str
    state: str
    attempt: int = 0
    input_id: str = ""
    output_id: str = ""
    output_json: str = ""
    error: str = ""
    executor_id: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @classmethod
    def from_redis(cls, h: dict[str, str], output_json: str) -> StepRun:
        return cls(
            step_id=h["step_id"],
            task_id=h.get("task_id", ""),
            task_version=h.get("task_version", ""),
            state=h.get("state", "PENDING"),
            attempt=int(h.get("attempt", 0)),
            input_id=h.get("input_id", ""),
            output_id=h.get("output_id", ""),
            output_json=output_json,
            error=h.get("error", ""),
            executor_id=h.get("executor", ""),
            started_at=ms_to_dt(h.get("started_ms")),
            ended_at=ms_to_dt(h.get("ended_ms")),
        )

    def to_doc(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, **self.__dict__}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StepRun:
        fields: dict[str, Any] = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        return cls(**fields)

    def to_proto(self) -> pb.StepRun:
        m = pb.StepRun(
            step_id=self.step_id,
            task_id=self.task_id,
            task_version=self.task_version,
            state=pb.State.Value(f"STATE_{self.state}"),
            attempt=self.attempt,
            input_id=self.input_id,
            output_id=self.output_id,
            output_json=self.output_json,
            error=self.error,
            executor_id=self.executor_id,
        )
        _set_time(m, "start_time", self.started_at)
        _set_time(m, "end_time", self.ended_at)
        return m


@dataclass
class Run:
    """One run of a task or pipeline on one input document."""

    run_id: str
    state: str
    input_json: str
    priority: int
    task_id: str = ""
    pipeline_id: str = ""
    pipeline_version: str = ""
    output_json: str = ""
    error: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    steps: list[StepRun] = field(default_factory=list)
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_redis(
        cls, run: dict[str, str], steps: list[dict[str, str]], outputs: dict[str, str]
    ) -> Run:
        step_runs = [StepRun.from_redis(h, outputs.get(h["step_id"], "")) for h in steps]
        r = cls(
            run_id=run["run_id"],
            state=run["state"],
            input_json=run.get("input_json", "{}"),
            priority=int(run.get("priority", 5)),
            task_id=run.get("task_id", ""),
            pipeline_id=run.get("pipeline_id", ""),
            pipeline_version=run.get("pipeline_version", ""),
            error=run.get("error", ""),
            labels=json.loads(run.get("labels", "{}")),
            request_id=run.get("request_id", ""),
            steps=step_runs,
            created_at=ms_to_dt(run.get("created_ms")),
            started_at=ms_to_dt(run.get("started_ms")),
            ended_at=ms_to_dt(run.get("ended_ms")),
        )
        if r.state == "COMPLETED":
            r.output_json = final_output(json.loads(run.get("sinks", "[]")), outputs)
        return r

    def to_doc(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k != "steps"}
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], steps: list[StepRun]) -> Run:
        fields = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc and k != "steps"}
        return cls(**fields, steps=steps)

    def to_proto(self) -> pb.Run:
        m = pb.Run(
            name=f"runs/{self.run_id}",
            run_id=self.run_id,
            pipeline_id=self.pipeline_id,
            pipeline_version=self.pipeline_version,
            task_id=self.task_id,
            state=pb.State.Value(f"STATE_{self.state}"),
            input_json=self.input_json,
            output_json=self.output_json,
            error=self.error,
            priority=self.priority,
            labels=self.labels,
            request_id=self.request_id,
            steps=[s.to_proto() for s in self.steps],
        )
        _set_time(m, "create_time", self.created_at)
        _set_time(m, "start_time", self.started_at)
        _set_time(m, "end_time", self.ended_at)
        return m


def final_output(sinks: list[str], outputs: dict[str, str]) -> str:
    """A run's output: the one sink step's output, or an object of every sink's output."""
    if len(sinks) == 1:
        return outputs.get(sinks[0], "{}")
    return json.dumps({s: json.loads(outputs.get(s, "null")) for s in sinks})
