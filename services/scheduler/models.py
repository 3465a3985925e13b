"""The scheduler's domain types, ``Run`` and ``StepRun``, and their proto form.

Built either from the live state in Redis or from the history in MongoDB.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from common.states import TERMINAL_STATES
from services.common import fan_out
from services.common.auth import DEFAULT_NAMESPACE
from wtm.v1 import run_pb2 as pb

TERMINAL = TERMINAL_STATES  # the states a run or step ends in (common.states)
TIMING_KEYS = ("t_recv", "t_p0", "t_p1", "t_sent", "t_rep")


def ms_to_dt(ms: str | int | None) -> datetime | None:
    if ms in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


# A run's own fields that its Redis hash holds as text (with the hash's other fields: sinks,
# limits, tracing); the run's MongoDB document holds them too, in their own types.
_RUN_HASH_TEXT = (
    "run_id",
    "input_json",
    "task_id",
    "pipeline_id",
    "pipeline_version",
    "request_id",
    "batch_id",
    "submitted_by",
    "namespace",
)

# A submit's own cache choice as the run's hash keeps it ("cache", only when one was made).
CACHE_CHOICE = {"1": True, "0": False}


def run_hash_fields(run: Mapping[str, Any]) -> dict[str, str]:
    """A run's own fields as its Redis hash holds them, from a ``Run``'s fields or from the
    run's MongoDB document."""
    fields = {k: run[k] for k in _RUN_HASH_TEXT}
    fields["priority"] = str(run["priority"])
    fields["labels"] = json.dumps(run["labels"])
    for name, key in (
        ("created_at", "created_ms"),  # the one reading its delayed start was counted from
        ("deadline_at", "deadline_ms"),  # a time limit (expire_runs.lua)
        ("scheduled_at", "scheduled_ms"),  # a delayed start
    ):
        if moment := run.get(name):
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            fields[key] = str(int(moment.timestamp() * 1000))
    return fields


def pairs_of(labels: Mapping[str, str]) -> list[str]:
    """Labels as "key=value" strings, sorted: a run's record keeps them so, for ListRuns'
    filter (a key may hold dots, which MongoDB would read as a path)."""
    return sorted(f"{key}={value}" for key, value in labels.items())


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
    queued_at: datetime | None = None
    lineage: list[tuple[str, str]] = field(default_factory=list)
    # Where the executor's time went (wall-clock µs): assignment received, process() called
    # and returned, result sent; and when the scheduler had the result.
    timings: dict[str, int] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    # The dispatch this attempt was (one record per execution, even if an attempt number
    # repeats after Redis lost its data); superseded: its result came when it was no longer
    # the step's current attempt, so it did not count.
    lease_id: str = ""
    superseded: bool = False
    cached_from: str = ""  # "run_id/output_id" of the cached output it reused (it did not run)
    # Of an output stored by reference: what later steps' conditions read of it (JSON text;
    # conditions.view), kept so that a rebuilt or resumed run decides them as the first did.
    condition_view: str = ""
    # A step that awaits a signal (signals.py): while it waits, the input field the signal is
    # given as and when the wait ends; once one came, who sent it.
    awaiting_signal: str = ""
    signal_deadline: datetime | None = None
    continues_at_deadline: bool = False  # its await_signal's on_timeout: "continue"
    signaled_by: str = ""
    ran_without_signal: bool = False  # its wait ran out and it went on without one
    # when it began to wait for its signal, and when the signal came (for the run's summary)
    awaited_at: datetime | None = None
    signaled_at: datetime | None = None

    @classmethod
    def from_redis(cls, h: dict[str, str], output_json: str) -> StepRun:
        awaiting = h.get("awaiting")
        wait = json.loads(h["signal"]) if awaiting else {}  # while it waits for a signal
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
            queued_at=ms_to_dt(h.get("queued_ms")),
            lineage=[tuple(e) for e in json.loads(h.get("lineage", "[]"))],  # type: ignore[misc]
            timings={k: int(h[k]) for k in TIMING_KEYS if h.get(k)},
            logs=_list(h.get("logs")),
            lease_id=h.get("lease", ""),
            cached_from=h.get("cached_from", ""),
            condition_view=h.get("condition_view", ""),
            awaiting_signal=wait.get("field", ""),
            signal_deadline=ms_to_dt(awaiting),
            continues_at_deadline=bool(wait.get("continue")),
            signaled_by=h.get("signaled_by", ""),
            ran_without_signal="signal_timed_out" in h,
            awaited_at=ms_to_dt(h.get("await_ms")),
            signaled_at=ms_to_dt(h.get("signaled_ms")),
        )

    def to_doc(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, **self.__dict__}

    def ended_fields(self) -> dict[str, str]:
        """What a step hash shows of this attempt once it has ended — put back when a run is
        rebuilt, or when a resumed run takes the step over; ``from_redis`` reads it."""
        moments = {"started_ms": self.started_at, "ended_ms": self.ended_at}
        if self.ran_without_signal:  # (when its wait ran out: a late signal is told so)
            moments["signal_timed_out"] = self.signaled_at
        found = {
            "executor": self.executor_id,
            "lease": self.lease_id,
            "cached_from": self.cached_from,
            "condition_view": self.condition_view,
            "signaled_by": self.signaled_by,
            "lineage": json.dumps(self.lineage) if self.lineage else "",
            **{k: str(int(t.timestamp() * 1000)) for k, t in moments.items() if t is not None},
            **{k: str(v) for k, v in self.timings.items()},
        }
        if self.queued_at is not None:
            found["queued_ms"] = str(int(self.queued_at.timestamp() * 1000))
        return {k: v for k, v in found.items() if v}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StepRun:
        fields: dict[str, Any] = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        fields["lineage"] = [tuple(e) for e in fields.get("lineage", [])]
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
            logs=self.logs,
            cached_from=self.cached_from,
            awaiting_signal=self.awaiting_signal,
            continues_at_deadline=self.continues_at_deadline,
            signaled_by=self.signaled_by,
            ran_without_signal=self.ran_without_signal,
        )
        _set_time(m, "start_time", self.started_at)
        _set_time(m, "end_time", self.ended_at)
        _set_time(m, "signal_deadline", self.signal_deadline)
        return m


@dataclass
class Run:
    """One run of a task or pipeline on one input document."""

    run_id: str
    state: str
    input_json: str
    priority: int
    task_id: str = ""
    task_version: str = ""  # a task run's version (a pipeline's steps each name theirs)
    pipeline_id: str = ""
    pipeline_version: str = ""
    output_json: str = ""
    error: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    batch_id: str = ""
    trace_id: str = ""
    steps: list[StepRun] = field(default_factory=list)
    submitted_by: str = ""  # the API key id that submitted it ("" with auth off)
    namespace: str = DEFAULT_NAMESPACE
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    deadline_at: datetime | None = None  # submitted with a run_timeout: when it times out
    scheduled_at: datetime | None = None  # submitted with a start_delay: when it may start
    cache: bool | None = None  # the submit's own cache choice (None: none), for a rerun

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
            # a task run's one step names its version; the hash does not hold it twice
            task_version=step_runs[0].task_version if run.get("task_id") and step_runs else "",
            pipeline_id=run.get("pipeline_id", ""),
            pipeline_version=run.get("pipeline_version", ""),
            error=run.get("error", ""),
            labels=json.loads(run.get("labels", "{}")),
            request_id=run.get("request_id", ""),
            batch_id=run.get("batch_id", ""),
            trace_id=run.get("trace_id", ""),
            steps=step_runs,
            submitted_by=run.get("submitted_by", ""),
            namespace=run.get("namespace", DEFAULT_NAMESPACE),
            created_at=ms_to_dt(run.get("created_ms")),
            started_at=ms_to_dt(run.get("started_ms")),
            ended_at=ms_to_dt(run.get("ended_ms")),
            deadline_at=ms_to_dt(run.get("deadline_ms")),
            scheduled_at=ms_to_dt(run.get("scheduled_ms")),
            cache=CACHE_CHOICE.get(run.get("cache", "")),
        )
        if r.state == "COMPLETED":
            r.output_json = final_output(json.loads(run.get("sinks", "[]")), outputs)
            if run.get("output_metadata") == "1":  # output_options.include_metadata
                r.output_json = r.with_metadata(r.output_json)
        return r

    def with_metadata(self, output_json: str) -> str:
        """The run's output with ``metadata``: which run, which pipeline version, and what
        each step ran (an output that is not an object is wrapped as ``output``)."""
        output = json.loads(output_json)
        body = output if isinstance(output, dict) else {"output": output}
        return json.dumps(
            {
                **body,
                "metadata": {
                    "run_id": self.run_id,
                    "pipeline": f"{self.pipeline_id}@{self.pipeline_version}",
                    "steps": {
                        s.step_id: {
                            "task": f"{s.task_id}@{s.task_version}",
                            "output_id": s.output_id,
                            **({"cached_from": s.cached_from} if s.cached_from else {}),
                        }
                        for s in self.steps
                    },
                },
            }
        )

    @property
    def lineage(self) -> list[tuple[str, str]]:
        """Every mapped field of every step, as (source, target) edges, in step order."""
        return [edge for step in self.steps for edge in step.lineage]

    def summary(self) -> dict[str, Any] | None:
        """Where the time went, once the run has finished."""
        if not self.finished or self.created_at is None or self.ended_at is None:
            return None
        spans = [(s, s.started_at, s.ended_at) for s in self.steps]
        timed = [(s, a, b) for s, a, b in spans if a is not None and b is not None]
        per_step: list[dict[str, Any]] = [
            {
                "step_id": s.step_id,
                "queued_seconds": _seconds(s.queued_at, a),
                "run_seconds": _seconds(a, b),
                "process_seconds": _us_between(s.timings, "t_p0", "t_p1"),
                "pickup_seconds": _us_between(s.timings, "t_recv", "t_p0"),
                "report_seconds": _us_between(s.timings, "t_sent", "t_rep"),
                "cached": bool(s.cached_from),
            }
            for s, a, b in timed
        ]
        # a for_each step's time is its instances': counted once, as theirs
        fanned = {found[0] for s in self.steps if (found := fan_out.instance_of(s.step_id))}
        total = sum(_seconds(a, b) for s, a, b in timed if s.step_id not in fanned)
        span = _seconds(min(a for _, a, _ in timed), max(b for _, _, b in timed)) if timed else 0.0
        waits = [(s.awaited_at, s.signaled_at or s.ended_at) for s in self.steps if s.awaited_at]
        waited = _idle(waits, [(a, b) for _, a, b in timed]) if timed else 0.0
        span -= waited
        return {
            "wall_seconds": _seconds(self.created_at, self.ended_at),
            "step_seconds_sum": round(total, 6),
            "parallel_speedup": round(total / span, 3) if span > 0 else 1.0,
            "signal_wait_seconds": round(waited, 6),
            "steps": per_step,
            # a step taken over when a resumed run was created never had an attempt
            "cache_hits": sum(1 for s in self.steps if s.cached_from and s.attempt),
            "taken_over": sum(1 for s in self.steps if s.cached_from and not s.attempt),
        }

    def to_doc(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "steps"}

    def final_fields(self, summary: dict[str, Any] | None) -> dict[str, Any]:
        """What the history keeps of a run once it has finished (``summary``: its own)."""
        return {
            "state": self.state,
            "lineage": [list(edge) for edge in self.lineage],
            "processing_summary": summary,
            "output_json": self.output_json,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any], steps: list[StepRun]) -> Run:
        fields = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc and k != "steps"}
        if doc.get("task_id") and "task_version" not in doc and steps:  # recorded before it
            fields["task_version"] = steps[0].task_version
        return cls(**fields, steps=steps)

    def to_proto(self) -> pb.Run:
        m = pb.Run(
            name=f"runs/{self.run_id}",
            run_id=self.run_id,
            pipeline_id=self.pipeline_id,
            pipeline_version=self.pipeline_version,
            task_id=self.task_id,
            task_version=self.task_version,
            state=pb.State.Value(f"STATE_{self.state}"),
            input_json=self.input_json,
            output_json=self.output_json,
            error=self.error,
            priority=self.priority,
            labels=self.labels,
            request_id=self.request_id,
            batch_id=self.batch_id,
            trace_id=self.trace_id,
            steps=[s.to_proto() for s in self.steps],
            namespace=self.namespace,
        )
        m.lineage.extend(pb.LineageEdge(source=a, target=b) for a, b in self.lineage)
        summary = self.summary()
        if summary is not None:
            m.processing_summary.CopyFrom(
                pb.ProcessingSummary(
                    wall_seconds=summary["wall_seconds"],
                    step_seconds_sum=summary["step_seconds_sum"],
                    parallel_speedup=summary["parallel_speedup"],
                    steps=[pb.StepTiming(**t) for t in summary["steps"]],
                    cache_hits=summary.get("cache_hits", 0),
                    taken_over=summary.get("taken_over", 0),
                    signal_wait_seconds=summary.get("signal_wait_seconds", 0.0),
                )
            )
        _set_time(m, "create_time", self.created_at)
        _set_time(m, "start_time", self.started_at)
        _set_time(m, "end_time", self.ended_at)
        _set_time(m, "deadline_time", self.deadline_at)
        _set_time(m, "scheduled_time", self.scheduled_at)
        return m


def _list(text: str | None) -> list[str]:
    """A JSON list from Redis (Lua's cjson writes an empty one as {})."""
    value = json.loads(text or "[]")
    return value if isinstance(value, list) else []


Span = tuple[datetime, datetime | None]


def _merged(spans: list[Span]) -> list[tuple[datetime, datetime]]:
    found: list[tuple[datetime, datetime]] = []
    for a, b in sorted((a, b) for a, b in spans if b is not None and b >= a):
        if found and a <= found[-1][1]:
            found[-1] = (found[-1][0], max(found[-1][1], b))
        else:
            found.append((a, b))
    return found


def _idle(waits: list[Span], busy: list[Span]) -> float:
    """Seconds of ``waits`` (steps waiting for signals) within the span of ``busy`` (steps
    running) when no step ran: an hour's wait for an approval is no hour of slower steps."""
    ran = _merged(busy)  # a no-op's step may start and end in one millisecond: it ran
    if not ran:  # every step's end before its start (clocks apart): nothing to say
        return 0.0
    first, last = ran[0][0], ran[-1][1]
    idle = 0.0
    for a, b in _merged([(max(a, first), min(b, last) if b else b) for a, b in waits]):
        idle += (b - a).total_seconds()
        idle -= sum(max(0.0, (min(b, y) - max(a, x)).total_seconds()) for x, y in ran)
    return idle


def _us_between(timings: dict[str, int], start: str, end: str) -> float:
    if start not in timings or end not in timings:
        return 0.0
    return round((timings[end] - timings[start]) / 1e6, 6)


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return round((end - start).total_seconds(), 6)


def final_output(sinks: list[str], outputs: dict[str, str]) -> str:
    """A run's output: the one sink step's output, or an object of every sink's output (a
    sink that has none, SKIPPED, is left out)."""
    if len(sinks) == 1:
        return outputs.get(sinks[0], "{}")
    return json.dumps({s: json.loads(outputs[s]) for s in sinks if s in outputs})
