"""How the CLI shows things: rich tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clients.health import HealthReport
from clients.sdk import ExecutorInfo, PipelineInfo, RunEventInfo, RunInfo, TaskInfo
from clients.types import (
    ApiKeyInfo,
    ArtifactInfo,
    CancelledRuns,
    NamespaceInfo,
    QueueInfo,
    ResumedRuns,
    SignaledRuns,
    StepInfo,
    TaskLimitsInfo,
)
from common import condition_text, retry_backoff

console = Console()
WIDE = 120  # columns: narrower consoles get the tables' less-needed columns left out
errors = Console(stderr=True, soft_wrap=True)  # progress, notes, errors: never mixed with output
STATE_STYLE = {
    "COMPLETED": "green",
    "FAILED": "red",
    "TIMED_OUT": "red",
    "CANCELLED": "yellow",
    "SKIPPED": "magenta",
    "RUNNING": "cyan",
    "QUEUED": "blue",
    "PENDING": "dim",
}


def as_json(value: Any) -> str:
    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        if hasattr(o, "isoformat"):
            return o.isoformat()
        raise TypeError(type(o).__name__)

    return json.dumps(value, default=default, indent=2)


def state(s: str) -> str:
    return f"[{STATE_STYLE.get(s, 'white')}]{s}[/]"


def when_empty(table: Table, note: str) -> Table:
    """``table``, saying ``note`` under its headings when it has no row: headings alone read
    as a listing that failed halfway."""
    if not table.row_count:
        table.caption = note
    return table


def tasks_table(tasks: list[TaskInfo], width: int | None = None) -> Table:
    """Task versions, a row each. A console narrower than ``WIDE`` leaves out the digest
    (``wtm task info`` shows it whole), so the tags have room."""
    wide = _wide(width)
    table = Table(title="Tasks")
    table.add_column("task", no_wrap=True)  # ids are never cut short: they are what one types
    for col in ("version", "category", "queue", "tags", *(["digest"] if wide else [])):
        table.add_column(col)
    for t in tasks:
        cells = [t.task_id, t.version, t.category, t.queue, ", ".join(t.tags)]
        table.add_row(*cells, *([t.digest[:12]] if wide else []))
    return when_empty(table, "No task is registered here.")


def _backoff(manifest: dict[str, Any]) -> tuple[float, float] | None:
    """A task's own retry backoff, as its task.json sets it (None: the scheduler's)."""
    try:
        return retry_backoff.of_manifest(manifest)
    except retry_backoff.BadBackoff:  # not written by this registry: not shown
        return None


def task_panel(t: TaskInfo) -> str:
    m = t.manifest
    lines = [
        f"[bold]{escape(t.task_id)}@{escape(t.version)}[/]  {escape(t.name)}",
        escape(f"  {t.description}") if t.description else "",
        f"  category {t.category} · queue {t.queue} · tags {', '.join(t.tags) or '-'}",
        f"  timeout {m.get('timeout', '-')} s · priority {m.get('priority', '-')} · "
        f"retries {m.get('max_retries', '-')} · entry point {m.get('entry_point', '-')}",
        f"  namespace {t.namespace or '-'}"
        + (" · shared with every namespace" if t.shared else ""),
        f"  rate limit {m['rate_limit']}"
        + (f", bursts of {m['rate_burst']}" if m.get("rate_burst") else "")
        + " (in each namespace, over every executor)"
        if m.get("rate_limit")
        else "",
        f"  at most {m['concurrency_limit']} running at once"
        + escape(f" per value of {m['concurrency_key']}" if m.get("concurrency_key") else "")
        + " (in each namespace, over every executor)"
        + escape(
            f"; when full: {m['concurrency_strategy']}" if m.get("concurrency_strategy") else ""
        )
        if m.get("concurrency_limit")
        else "",
        f"  retries wait {retry_backoff.said(own)} (its own backoff)"
        if (own := _backoff(m))
        else "",
        escape(f"  requirements: {', '.join(m['requirements'])}") if m.get("requirements") else "",
        "  deprecated: " + escape(t.deprecation_reason or "yes") if t.deprecated else "",
        f"  digest sha256:{t.digest} · {t.size_bytes} bytes",
    ]
    for name in ("input_schema", "output_schema"):
        if m.get(name):
            lines.append(f"  {name}:")
            lines += [escape(f"    {line}") for line in json.dumps(m[name], indent=2).splitlines()]
    return "\n".join(line for line in lines if line)


def event_line(e: RunEventInfo) -> str:
    when = e.time.strftime("%H:%M:%S.%f")[:-3] if e.time else ""
    # attempt 0: the step has not started yet (queued for its first attempt)
    what = f"step {e.step_id}" + (f" (attempt {e.attempt})" if e.attempt else "")
    what = what if e.step_id else "run"
    note = escape(f"  {e.message}") if e.message else ""
    if e.kind == "PROGRESS":
        return f"{when}  {what:<32} [dim]{e.progress:4.0%}[/]{note}"
    if e.kind == "LOG":
        return f"{when}  {what:<32} [dim]log[/]{note}"
    if e.kind == "RETRYING":
        return f"{when}  {what:<32} [yellow]RETRYING[/]{note}"
    return f"{when}  {what:<32} {state(e.state)}{note}"


def run_summary(r: RunInfo) -> str:
    took = ""
    if r.ended_at and r.created_at:
        took = f" in {(r.ended_at - r.created_at).total_seconds() * 1000:.0f} ms"
    what = r.what
    lines = [f"Run [bold]{r.run_id}[/] ({escape(what)}) {state(r.state)}{took}"]
    facts = [f"created {r.created_at:%Y-%m-%d %H:%M:%S} UTC" if r.created_at else ""]
    facts += [f"priority {r.priority}", f"namespace {r.namespace}" if r.namespace else ""]
    facts += [f"batch {r.batch_id}" if r.batch_id else ""]
    lines.append(escape("  " + " · ".join(f for f in facts if f)))
    if r.labels:
        lines.append(
            escape("  labels " + ", ".join(f"{k}={v}" for k, v in sorted(r.labels.items())))
        )
    lines.append(escape(f"  input {_cut(json.dumps(r.input), SHOWN_INPUT_CHARS)}"))
    if r.trace_id:
        lines.append(f"  trace {r.trace_id} (Jaeger: /trace/{r.trace_id})")
    if r.scheduled_at and r.started_at is None and not r.finished:
        lines.append(f"  starts at {r.scheduled_at:%Y-%m-%d %H:%M:%S} UTC (its start delay)")
    if r.deadline_at and not r.finished:
        lines.append(f"  times out at {r.deadline_at:%Y-%m-%d %H:%M:%S} UTC (its run_timeout)")
    items = Counter(m[1] for s in r.steps if (m := INSTANCE.match(s.step_id)))
    for s in r.steps:
        ran = f"for each of {items[s.step_id]} items" if items[s.step_id] else _ran(s)
        lines.append(f"  step {s.step_id} ({s.task_id}@{s.task_version}) {state(s.state)} {ran}")
        lines.extend(_signal_lines(r.run_id, s))
        if s.error:
            lines.append(escape(f"    error: {s.error}"))
    if r.error:
        lines.append(escape(f"  error: {r.error}"))
    if r.processing_summary:
        ps = r.processing_summary
        lines.append(
            f"  summary: wall {ps['wall_seconds'] * 1000:.0f} ms · steps "
            f"{ps['step_seconds_sum'] * 1000:.0f} ms · "
            f"parallel speedup {ps['parallel_speedup']:.2f}x"
            + (f" · {ps['cache_hits']} from the cache" if ps.get("cache_hits") else "")
            + (f" · {ps['taken_over']} taken over" if ps.get("taken_over") else "")
            + (
                f" · waited {ps['signal_wait_seconds']:.1f} s for signals"
                if ps.get("signal_wait_seconds")
                else ""
            )
        )
        for t in ps["steps"]:
            lines.append(
                f"    {t['step_id']:<24} queued {t['queued_seconds'] * 1000:7.1f} ms  "
                f"ran {t['run_seconds'] * 1000:7.1f} ms" + ("  (cached)" if t.get("cached") else "")
            )
    if r.lineage:
        lines.append("  lineage:")
        lines.extend(f"    {src} -> {dst}" for src, dst in r.lineage)
    if r.output is not None:
        lines.append(escape("  output: " + shown_output(r.output).replace("\n", "\n  ")))
    return "\n".join(lines)


INSTANCE = re.compile(r"^(.+)\[\d+\]$")  # a for_each step's instance: "step[i]"


def _signal_lines(run_id: str, s: StepInfo) -> list[str]:
    """What a step that awaits a signal waits for, and how to send it; or who sent it, or that
    none came in time and it ran without one."""
    if s.awaiting_signal:
        until = f" until {s.signal_deadline:%Y-%m-%d %H:%M:%S} UTC" if s.signal_deadline else ""
        if s.continues_at_deadline:
            until += " (then it runs without one)"
        return [
            f"    awaits a signal ({s.awaiting_signal}){until}: "
            f"wtm run signal {run_id} {s.step_id} --json '{{...}}'"
        ]
    if s.ran_without_signal:
        return ["    ran without a signal: none came in time (its await_signal's on_timeout)"]
    return [escape(f"    signalled by {s.signaled_by}")] if s.signaled_by else []


def _ran(s: StepInfo) -> str:
    """Where a step's latest attempt ran, or where its output came from."""
    if s.cached_from:  # attempt 0: taken over when the run was created (rerun --from-failure)
        return f"{'taken over' if s.attempt == 0 else 'from the cache'} ({s.cached_from})"
    return f"attempt {s.attempt} on {s.executor_id or '-'}" if s.attempt else "not started"


SHOWN_INPUT_CHARS = 200  # a run's input on one line; --json has it whole
SHOWN_OUTPUT_BYTES = 16 * 1024  # larger outputs are cut: they would fill the terminal
SHOWN_OUTPUT_LINES = 60


def shown_output(output: object) -> str:
    """An output as indented JSON; one over SHOWN_OUTPUT_BYTES is cut after
    SHOWN_OUTPUT_LINES lines (``--json`` prints it whole)."""
    text = json.dumps(output, indent=2)
    size = len(json.dumps(output))
    lines = text.split("\n")
    if size <= SHOWN_OUTPUT_BYTES or len(lines) <= SHOWN_OUTPUT_LINES:
        return text
    return "\n".join(
        [
            *lines[:SHOWN_OUTPUT_LINES],
            f"… {len(lines) - SHOWN_OUTPUT_LINES} more lines ({size} bytes as JSON); "
            "`wtm --json run get RUN_ID` prints it whole",
        ]
    )


def pipelines_table(pipelines: list[PipelineInfo]) -> Table:
    table = Table(title="Pipelines")
    table.add_column("pipeline", no_wrap=True)
    for col in ("version", "steps", "enabled", "description"):
        table.add_column(col)
    for p in pipelines:
        table.add_row(p.pipeline_id, p.version, str(len(p.steps)), str(p.enabled), p.description)
    return when_empty(table, "No pipeline is registered here.")


def pipeline_panel(p: PipelineInfo) -> str:
    lines = [f"[bold]{p.pipeline_id}@{p.version}[/]  {p.name}"]
    if p.description:
        lines.append(f"  {p.description}")
    for s in p.steps:
        after = f" after {', '.join(s.depends_on)}" if s.depends_on else ""
        group = escape(f" [{s.parallel_group}]") if s.parallel_group else ""
        backoff = f" waiting {retry_backoff.said(s.retry_backoff)}" if s.retry_backoff else ""
        lines.append(
            f"  {s.step_id}{group}: {s.task_id}@{s.task_version}{after} "
            f"(timeout {s.timeout_seconds}s, retries {s.retry_count}{backoff}, queue {s.queue})"
        )
        for key, expr in s.input_mapping.items():
            lines.append(escape(f"      {key} <- {expr}"))
        for key, expr in s.for_each.items():
            lines.append(escape(f"      {key} <- each item of {expr} (a run of the task each)"))
        if s.await_signal:
            goes_on = s.await_signal.get("on_timeout") == "continue"
            then = ", then runs without it" if goes_on else ""
            lines.append(
                escape(
                    f"      {s.await_signal['field']} <- a signal, awaited up to "
                    f"{s.await_signal['timeout_seconds']} s{then} (wtm run signal)"
                )
            )
        if s.skip_if:
            said = " or ".join(condition_text.said(c) for c in s.skip_if)
            lines.append(escape(f"      skipped when {said}"))
    if p.input_validation:
        lines.append(escape(f"  input: {json.dumps(p.input_validation)}"))
    if p.run_timeout_seconds:
        lines.append(
            f"  each run's time limit: {p.run_timeout_seconds}s (unless its submit sets one)"
        )
    return "\n".join(lines)


def cancelled_runs(done: CancelledRuns) -> str:
    lines = [f"cancelled {len(done.cancelled)} runs"]
    lines += [f"  {r.run_id} ({r.pipeline_id or r.task_id})" for r in done.cancelled]
    if done.ended:
        lines.append(
            f"{len(done.ended)} had ended first: " + ", ".join(r.run_id for r in done.ended)
        )
    if done.not_theirs:
        lines.append(
            f"{len(done.not_theirs)} were submitted by another key, which your role may not "
            "cancel: " + ", ".join(done.not_theirs)
        )
    return "\n".join(lines)


def resumed_runs(done: ResumedRuns) -> str:
    lines = [f"resumed {len(done.resumed)} runs"]
    lines += [f"  {was} as {r.run_id} ({r.state})" for was, r in done.resumed]
    if done.refused:
        lines.append(f"{len(done.refused)} could not be resumed:")
        lines += [escape(f"  {was}: {why}") for was, why in done.refused]
    return "\n".join(lines)


def signaled_runs(step_id: str, done: SignaledRuns) -> str:
    lines = [f"step {step_id} signalled in {len(done.signaled)} runs"]
    lines += [f"  {run_id}" for run_id in done.signaled]
    if done.refused:
        lines.append(f"{len(done.refused)} did not take it:")
        lines += [escape(f"  {run_id}: {why}") for run_id, why in done.refused]
    return "\n".join(lines)


def counts_of(output: Any) -> dict[str, Any]:
    """What a batch table shows of a run's output: its top-level counts (``*_count``)."""
    if not isinstance(output, dict):
        return {}
    return {k: v for k, v in output.items() if k.endswith("_count") and isinstance(v, int)}


def output_brief(output: Any, width: int = 48) -> str:
    """A run's output in a few words: its top-level numbers, strings and booleans."""
    if not isinstance(output, dict):
        return ""
    text = " ".join(f"{k}={v}" for k, v in output.items() if isinstance(v, (str, int, float, bool)))
    return _cut(text, width)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


RUN_ID_CHARS = 32
NAME_CHARS = 24  # a batch's image names fold past this
ERROR_CHARS = 30  # the least room an error's column of its own is worth


def batch_table(
    batch_id: str, rows: list[dict[str, Any]], column: str = "image", width: int | None = None
) -> Table:
    """A batch's runs, one row each, named by ``column`` (the image, or the input's line),
    with their counts (``counts``, a face batch's) or their outputs in brief, or what went
    wrong, one line a run in the room the other columns leave. A console narrower than
    ``WIDE`` leaves out the wall times."""
    wide = _wide(width)
    names = max((len(str(r[column])) for r in rows), default=len(column))
    # the other columns' widths, and each column's three of borders and padding
    others = RUN_ID_CHARS + len("COMPLETED") + min(names, NAME_CHARS) + 3 * (4 + wide) + 1
    room = max(12, (width or console.width) - others - 7 * wide)
    brief = "counts" if rows and "counts" in rows[0] else "output"
    table = Table(title=f"Batch {batch_id}")
    table.add_column(column, overflow="fold", max_width=NAME_CHARS)
    table.add_column("state", no_wrap=True)
    table.add_column(brief + (" / error" if any(r["error"] for r in rows) else ""), no_wrap=True)
    if wide:
        table.add_column("wall ms", justify="right")
    table.add_column("run", no_wrap=True)
    for r in rows:
        if r["error"]:
            said = f"[red]{escape(_cut(r['error'], room))}[/]"
        elif "counts" in r:
            said = escape(_cut(" ".join(f"{k}={v}" for k, v in r["counts"].items()), room))
        else:
            said = escape(output_brief(r.get("output"), room))
        cells = [r[column], state(r["state"]), said]
        if wide:
            cells.append(str(r["wall_ms"]))
        table.add_row(*cells, r["run_id"])
    return table


def _size(n: int) -> str:
    """Bytes as people read them: 28 KiB, 3.2 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{n} B"


def _wide(width: int | None) -> bool:
    """Whether a table printed ``width`` columns wide (None: this console's) shows every
    column."""
    return (width or console.width) >= WIDE


def runs_table(runs: list[RunInfo], width: int | None = None, now: datetime | None = None) -> Table:
    """Runs, a line each; the run id (what ``wtm run get`` takes) is never cut short. A
    console narrower than ``WIDE`` (a terminal's 80 columns) gives each run's age where a
    wide one gives its creation time and how long it took (``kubectl get``'s AGE: 42s, 5m,
    3h, 2d). A run's error has a column of its own when the others leave it
    ``ERROR_CHARS`` or more, cut to that room; otherwise it goes under the run's id, cut to
    the id's width. So the task's name and version keep their room (``wtm run get`` and
    ``--json`` have the error whole)."""
    wide = _wide(width)
    now = now or datetime.now(UTC)
    names = min(max((len(r.what) for r in runs), default=0), NAME_CHARS + 8)
    # the other columns' widths, and each column's three of borders and padding
    others = RUN_ID_CHARS + len("COMPLETED") + names + len("2026-12-06 23:57:00 100.00s")
    room = (width or console.width) - others - 3 * 6 - 1
    column = wide and room >= ERROR_CHARS and any(r.error for r in runs)
    table = Table(title="Runs (newest first)")
    table.add_column("run", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("what", overflow="fold")
    table.add_column("created" if wide else "age", no_wrap=True)
    if wide:
        table.add_column("took")
    if column:
        table.add_column("error", no_wrap=True)
    for r in runs:
        shown = state(r.state)
        if r.scheduled_at and r.started_at is None and not r.finished:  # a start delay
            starts = "starts " if wide else "starts\n"  # as narrow as the state's name
            shown += f"\n[dim]{starts}{r.scheduled_at:%m-%d %H:%M}[/]"
        run = r.run_id
        if r.error and not column:
            run += f"\n[red]{escape(_cut(r.error, RUN_ID_CHARS))}[/]"
        cells = [run, shown, escape(r.what), _created(r.created_at, wide, now)]
        if wide:
            took = ""
            if r.created_at and r.ended_at:
                took = f"{(r.ended_at - r.created_at).total_seconds():.2f}s"
            cells.append(took)
        if column:
            cells.append(f"[red]{escape(_cut(r.error, room))}[/]")
        table.add_row(*cells)
    return when_empty(table, "No runs match.")


def _created(at: datetime | None, wide: bool, now: datetime) -> str:
    if at is None:
        return ""
    if wide:
        return at.strftime("%Y-%m-%d %H:%M:%S")
    return age(at, now)


def age(at: datetime, now: datetime) -> str:
    """How long ago ``at`` was, in its largest unit: 42s, 5m, 3h, 2d (naive times are UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    seconds = max(0.0, (now - at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:.0f}s"


def keys_table(keys: list[ApiKeyInfo], width: int | None = None, everywhere: bool = False) -> Table:
    """API keys, a row each; a key's id (what ``wtm auth revoke`` takes) is never cut short.
    A console narrower than ``WIDE`` gives times without their year; the revoked column is
    there when a key is revoked."""
    wide = _wide(width)
    revoked = any(k.revoked_at for k in keys)
    table = Table(title="API keys")
    table.add_column("key", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("role", no_wrap=True)
    table.add_column("namespace", overflow="fold")
    for col in ("created", "expires", *(["revoked"] if revoked else [])):
        table.add_column(col, no_wrap=not wide)
    shown = "%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M"
    for k in keys:
        cells = [
            k.key_id,
            escape(k.name),
            k.role,
            escape(k.namespace),
            f"{k.created_at:{shown}}" if k.created_at else "",
            f"{k.expires_at:{shown}}" if k.expires_at else "never",
        ]
        if revoked:
            cells.append(f"{k.revoked_at:{shown}}" if k.revoked_at else "")
        table.add_row(*cells)
    where = "" if everywhere else " in this namespace (-n '*': in all)"
    return when_empty(table, f"No API key{where}.")


# How task code is confined on an executor: anything short of isolated stands out.
SANDBOX_CELL = {"isolated": "isolated", "limits": "[red]limits only[/]", "": "?"}


def executors_table(executors: list[ExecutorInfo], width: int | None = None) -> Table:
    """The fleet, a row per executor. Its ids are never cut short; a console narrower than
    ``WIDE`` (a terminal's 80 columns) leaves out the labels, last seen and scheduler
    columns, which ``--json`` always has."""
    table = Table(title="Executors")
    wide = _wide(width)
    table.add_column("executor", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for col in ("queues", "slots", "busy", "cpu", "memory", "errors"):
        table.add_column(col)
    if wide:
        for col in ("disk", "sandbox", "labels", "last seen", "scheduler"):
            table.add_column(col)
    style = {"CONNECTED": "green", "DRAINING": "yellow", "LOST": "red"}
    for e in executors:
        live = e.state != "LOST"
        cells = [
            escape(e.executor_id),
            (  # a resting one is connected: it says how long its rest has left instead
                f"[red]RESTING {_rest_left(e)}[/]"
                if e.resting()
                else f"[{style.get(e.state, 'white')}]{e.state}[/]"
            )
            + (" [cyan]paused[/]" if e.pause is not None else ""),
            escape(",".join(e.queues)),
            str(e.slots),
            # slots taken; and the steps, when a dynamic batch runs several on one slot
            f"{e.busy_slots} ({e.in_flight} steps)"
            if e.in_flight > e.busy_slots
            else str(e.busy_slots),
            f"{e.cpu_percent:.0f}%" if live else "",
            f"{e.memory_bytes / 2**20:.0f} MiB" if live and e.memory_bytes else "",
            f"[red]{e.slot_errors}[/]" if e.slot_errors else "0",
        ]
        if wide:
            cells += [
                _size(e.disk_bytes) if live and e.disk_bytes else "",
                SANDBOX_CELL.get(e.sandbox, escape(e.sandbox)),
                escape(",".join(f"{k}={v}" for k, v in sorted(e.labels.items()))),
                e.last_seen_at.strftime("%H:%M:%S") if e.last_seen_at else "",
                escape(e.scheduler_id),
            ]
        table.add_row(*cells)
    return when_empty(table, "No executor has connected.")


def _rest_left(e: ExecutorInfo) -> str:
    """How long a resting executor's rest has left, "25s" (``resting_until`` is naive UTC)."""
    until = e.resting_until or datetime.now(UTC).replace(tzinfo=None)
    return f"{max(0.0, (until - datetime.now(UTC).replace(tzinfo=None)).total_seconds()):.0f}s"


def queues_table(queues: list[QueueInfo], delayed: int) -> Table:
    table = Table(
        title=f"Queues ({delayed} step{'' if delayed == 1 else 's'} held back: retries, "
        "delayed starts, rate and concurrency limits)"
    )
    for col in ("queue", "waiting", "oldest", "executors", "free slots", "note"):
        table.add_column(col)
    for q in queues:
        table.add_row(
            escape(q.queue),
            str(q.depth),
            f"{q.oldest_age_seconds:.1f}s" if q.depth else "",
            str(q.executors),
            str(q.free_slots),
            queue_note(q),
        )
    return when_empty(table, "No queue has work or an executor.")


def queue_note(q: QueueInfo) -> str:
    if q.pause is not None:
        why = f": {q.pause.reason}" if q.pause.reason else ""
        return f"[cyan]paused[/] by {escape(q.pause.paused_by or '?')}{escape(why)}"
    return "[yellow]work waits and no executor takes from it[/]" if q.stranded else ""


def namespaces_table(namespaces: list[NamespaceInfo]) -> Table:
    table = Table(title="Namespaces")
    for col in ("namespace", "runs", "limit", "weight", "waiting steps", "kept", "calls/s", "note"):
        table.add_column(col)
    for n in namespaces:
        table.add_row(
            escape(n.namespace),
            str(n.unfinished_runs),
            str(n.run_limit) if n.run_limit else "none",
            f"{n.weight:g}",
            str(n.waiting_steps),
            f"{n.history_retention_days:g} d" if n.history_retention_days else "for good",
            f"{n.calls_per_second:g}" if n.calls_per_second else "no limit",
            "[yellow]at its limit: submits are refused until runs end[/]" if n.at_limit else "",
        )
    return table


def task_limit_text(t: TaskLimitsInfo) -> str:
    """An operator's limits of a task in a few words ("rate 5/s · at most 2 at once")."""
    parts = []
    if t.rate_limit is not None:
        parts.append(f"rate {t.rate_limit or 'no limit'}")
    if t.rate_burst is not None:
        parts.append(f"bursts of {t.rate_burst}")
    if t.concurrency_limit is not None:
        parts.append(
            f"at most {t.concurrency_limit} at once"
            if t.concurrency_limit
            else "no concurrency limit"
        )
    return " · ".join(parts)


def task_limits_table(limits: list[TaskLimitsInfo]) -> Table:
    table = Table(title="Task limits set by operators (over task.json's)")
    for col in ("task", "limits", "set by", "at"):
        table.add_column(col)
    for t in limits:
        at = t.set_at.strftime("%Y-%m-%d %H:%M:%S") if t.set_at else ""
        table.add_row(escape(t.task_id), task_limit_text(t), escape(t.set_by), at)
    return when_empty(table, "No operator has set a task's limits in this namespace.")


def artifacts_table(artifacts: list[ArtifactInfo], width: int | None = None) -> Table:
    """Artifacts, a row each; the digest (what ``wtm artifact delete`` takes) is never cut
    short. A console narrower than ``WIDE`` leaves out the namespace and the time."""
    wide = _wide(width)
    table = Table(title=f"Artifacts ({len(artifacts)})")
    if wide:
        table.add_column("namespace")
    table.add_column("digest", no_wrap=True)
    table.add_column("bytes", justify="right")
    if wide:
        table.add_column("stored", no_wrap=True)
    for a in artifacts:
        stored = a.stored_at.strftime("%Y-%m-%d %H:%M:%S") if a.stored_at else ""
        cells = [escape(a.namespace), a.digest, f"{a.size_bytes:,}", stored]
        table.add_row(*(cells if wide else cells[1:3]))
    return when_empty(table, "No artifact matches.")


def health_table(report: HealthReport) -> Table:
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    table = Table(title=f"Health: [{colour[report.status]}]{report.status}[/]")
    for col in ("part", "status", "detail"):
        table.add_column(col)
    for c in report.checks:
        table.add_row(escape(c.component), f"[{colour[c.status]}]{c.status}[/]", escape(c.detail))
    return table
