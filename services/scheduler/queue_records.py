"""What the run queue takes and gives: steps and runs to submit, leases, results and the
verdicts on them, and a run as Redis holds it; and reading them out of Lua replies."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from services.scheduler import keys


class RunSnapshot(NamedTuple):
    """A run as Redis holds it at one moment."""

    run: dict[str, str]  # the run hash
    steps: list[dict[str, str]]  # its step hashes, in pipeline order
    outputs: dict[str, str]  # step id -> output JSON, of the steps that completed


@dataclass(frozen=True)
class QueuedStep:
    """One step as submitted: its id, dependencies and the flat fields of its Redis hash."""

    step_id: str
    deps: list[str]
    dependents: list[str]
    fields: dict[str, str]


@dataclass(frozen=True)
class Leased:
    """A step attempt that dispatch leased to an executor."""

    member: str
    run_id: str
    step_id: str
    attempt: int
    step: dict[str, str]
    run_input_json: str
    dep_outputs: dict[str, str]
    trace_id: str = ""  # the run's trace, when it is traced
    run_span: str = ""
    upstream_spans: dict[str, str] = field(default_factory=dict)  # step read -> its span id
    run_started: bool = False  # this lease made the run RUNNING
    call: str = ""  # of a dynamic batch: the id its steps share (one process_batch call)


class Want(NamedTuple):
    """What a lease round asks for one executor: up to ``n`` steps (a dynamic batch counts
    as one) from its queues; batches only if it runs them (``batching``); ``held``: for its
    prefetch room, steps it holds until a slot frees (a concurrency-limited task's steps
    are not taken for that: they would hold one of its few places while they wait)."""

    executor_id: str
    queues: list[str]
    n: int
    batching: bool = False
    held: bool = False


def dispatch_calls(
    wants: list[Want], lease_ms: int, now: int, finished_ttl_s: int
) -> list[tuple[str, list[Any]]]:
    """The dispatch.lua calls (script name, ARGV after the prefix) for ``wants``."""
    return [
        (
            "dispatch",
            [
                now,
                lease_ms,
                w.executor_id,
                w.n,
                secrets.token_hex(8),
                int(w.batching),
                int(w.held),
                finished_ttl_s,
                *w.queues,
            ],
        )
        for w in map(lambda w: Want(*w), wants)  # a plain (id, queues, n) tuple will do
    ]


# A run a task's concurrency_strategy cancelled, and its running steps (step key, executor).
Ended = tuple[str, list[tuple[str, str]]]


def leases_of(raw: list[Any]) -> tuple[list[Leased], dict[str, int], list[Ended]]:
    """A dispatch.lua reply: the leased steps; what it left waiting until when (ms):
    ``batch`` a short batch in its queue, ``delayed`` a rate-limited step put aside; and the
    runs a concurrency strategy cancelled."""
    leased = [leased_of(item) for item in raw if not isinstance(item, list)]
    marks = [words_of(i) for i in raw if isinstance(i, list)]
    due = {m[0]: int(m[1]) for m in marks if m[0] != "cancelled"}
    ended = [(m[1], pairs_of(m[2:])) for m in marks if m[0] == "cancelled"]
    return leased, due, ended


@dataclass(frozen=True)
class Submission:
    """A run to create in Redis (or to rebuild: steps may carry their output already)."""

    run_id: str
    run_fields: dict[str, str]
    steps: list[QueuedStep]
    request_id: str = ""
    done: dict[str, str] = field(default_factory=dict)  # step id -> output JSON (rebuild)
    attempts: dict[str, int] = field(default_factory=dict)  # step id -> attempts so far
    # Rebuild: steps ready to run wait until then (ms), so that executions of the lost state
    # still running somewhere are stopped (their leases can no longer be renewed) first.
    not_before_ms: int = 0
    # Resuming a run (run_reuse.py): what the steps taken over show (their ``done`` output
    # beside), and the run's first event's message.
    done_fields: dict[str, dict[str, str]] = field(default_factory=dict)
    note: str = ""
    # A new run: the entry of ``keys.UNRECORDED`` it is kept under, with its plan, until its
    # MongoDB insert is known (its submit call's first run id; unrecorded_runs.py). "": a
    # rebuild (MongoDB holds it).
    index_key: str = ""


@dataclass(frozen=True)
class Completion:
    """The end of a step attempt, to record."""

    member: str
    attempt: int
    outcome: str  # SUCCEEDED | FAILED | FATAL | TIMED_OUT | CANCELLED | RELEASED
    output_json: str = ""
    error: str = ""
    retry_at_ms: int = 0
    # Fields set on the step hash with the result: the executor's timings (µs); a cache
    # hit's cleared executor; the view of an output by reference that conditions read.
    timings: dict[str, int | str] = field(default_factory=dict)
    lease: str = ""  # the dispatch it is for ("" from executors that do not echo it)
    executor: str = ""  # who reports it ("": not checked)


@dataclass(frozen=True)
class Verdict:
    """What the scheduler decided about a result: the verdict, the attempts to cancel, and
    the step's hash right after the change (empty when the result was stale)."""

    verdict: str
    cancel: list[tuple[str, str]]  # (step-key, executor id)
    snapshot: dict[str, str] = field(default_factory=dict)
    final: RunSnapshot | None = None  # the whole run, when this result ended it
    queued_on: list[str] = field(default_factory=list)  # the queue of each step it queued

    @property
    def ends_run(self) -> bool:
        return self.verdict in {"run_completed", "failed"}


def text_of(mapping: Any) -> dict[str, str]:
    """A Redis reply mapping of bytes to bytes, as text."""
    return {k.decode(): v.decode() for k, v in mapping.items()}


def pairs_of(flat: list[str]) -> list[tuple[str, str]]:
    return list(zip(flat[0::2], flat[1::2], strict=True))


def words_of(raw: list[Any]) -> list[str]:
    """A script's flat reply of bytes and numbers, as text."""
    return [w.decode() if isinstance(w, bytes) else str(w) for w in raw]


def verdict_of(raw: list[Any]) -> Verdict:
    words = words_of(raw)
    cancel = pairs_of(words[3:]) if words[0] == "failed" else []
    queued_on = words[3:] if words[0] in {"completed", "run_completed", "released"} else []
    final = run_snapshot_of(json.loads(words[2])) if words[2] else None
    return Verdict(words[0], cancel, flat_dict(json.loads(words[1])), final, queued_on)


def flat_dict(flat: Any) -> dict[str, str]:
    """A flat [k, v, k, v...] list from Lua as a dict (Lua encodes an empty one as {})."""
    return dict(pairs_of(flat)) if isinstance(flat, list) else {}


def run_snapshot_of(doc: dict[str, Any]) -> RunSnapshot:
    """A run as the complete script returns it: the same shape ``read_run`` gives."""
    run = flat_dict(doc["run"])
    steps = [
        {"step_id": step_id, **flat_dict(h)}
        for step_id, h in zip(json.loads(run["steps"]), doc["steps"] or [], strict=True)
    ]
    return RunSnapshot(run, steps, flat_dict(doc["outputs"]))


def leased_of(item: bytes) -> Leased:
    d = json.loads(item)
    run_id, _, step_id = d["member"].partition(":")
    outputs = d["outputs"] if isinstance(d["outputs"], dict) else {}
    # A step read that has no output (it was SKIPPED: Lua's HMGET gives false) is left out.
    outputs = {k: v for k, v in outputs.items() if isinstance(v, str)}
    trace = d.get("trace") or [None, None]
    spans = d.get("spans") if isinstance(d.get("spans"), dict) else {}
    return Leased(
        d["member"],
        run_id,
        step_id,
        int(d["attempt"]),
        flat_dict(d["step"]),
        d["input"] or "{}",
        outputs,
        trace[0] or "",
        trace[1] or "",
        {k: v for k, v in (spans or {}).items() if isinstance(v, str)},
        d.get("started") is True,
        d.get("call") or "",
    )


IDEMPOTENCY_TTL_S = 24 * 3600  # how long a request id finds its run


def submit_args(r: Submission, now: int, finished_ttl_s: int) -> list[Any]:
    """``submit_run.lua``'s arguments for a run (after the key prefix)."""
    payload = [
        {
            "step_id": s.step_id,
            "deps": s.deps,
            "dependents": s.dependents,
            "fields": {**s.fields, **r.done_fields[s.step_id]}
            if s.step_id in r.done_fields
            else s.fields,
            **({"output": r.done[s.step_id]} if s.step_id in r.done else {}),
            **({"attempt": r.attempts[s.step_id]} if s.step_id in r.attempts else {}),
        }
        for s in r.steps
    ]
    return [
        r.run_id,
        json.dumps(r.run_fields),
        json.dumps(payload),
        now,
        r.request_id,
        IDEMPOTENCY_TTL_S,
        finished_ttl_s,
        r.not_before_ms,
        r.note,
    ]


def index_commands(runs: list[Submission], args: list[list[Any]], now: int) -> list[Any]:
    """What keeps new runs' plans until their MongoDB inserts are known (``unrecorded_runs``):
    per index key (a submit call's first run), an HSET of each run's plan — its
    ``submit_run.lua`` arguments ``args`` (run fields, then steps, JSON joined by a newline)
    — and a ZADD of the key at ``now``. Sent before the runs' scripts in the same pipeline,
    so Redis never holds a new run without them; none for rebuilt runs."""
    plans: dict[str, list[str]] = {}
    for r, a in zip(runs, args, strict=True):
        if r.index_key:
            plans.setdefault(r.index_key, []).extend((r.run_id, f"{a[1]}\n{a[2]}"))
    commands: list[Any] = [("HSET", keys.plan(key), *fields) for key, fields in plans.items()]
    if plans:
        commands.append(("ZADD", keys.UNRECORDED, *(x for key in plans for x in (now, key))))
    return commands


def ready_queues(runs: list[Submission]) -> Counter[str] | None:
    """How many steps each queue gets from these new runs (their steps whose dependencies,
    if any, their skip_if skipped: one of them a skip_if on outputs may skip still; none of
    a run whose start waits, for ``promote_due`` to name); ``None`` for rebuilt runs, whose
    ready steps are not known here."""
    if any(r.done for r in runs):
        return None
    return Counter(
        s.fields.get("queue", "")
        for r in runs
        if not r.not_before_ms
        for skipped in [{s.step_id for s in r.steps if "skip" in s.fields}]
        for s in r.steps
        if "skip" not in s.fields and all(d in skipped for d in s.deps)
    )
