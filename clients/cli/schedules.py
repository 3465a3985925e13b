"""``wtm schedule ...``: runs started at times a cron expression or an interval gives
(what the original system's ``celery beat`` did)."""

from __future__ import annotations

import json
from datetime import datetime

import click
from rich.markup import escape
from rich.table import Table

from clients import render
from clients.cli.app import (
    Ctx,
    cli,
    parse_at,
    parse_json_object,
    parse_span,
    parsed_by,
    run_timeout_option,
    upload_inputs,
)
from clients.schedules import ScheduleInfo


def _when(value: datetime | None, wide: bool = True) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M") if value else ""


def schedules_table(schedules: list[ScheduleInfo], width: int | None = None) -> Table:
    """Schedules, a row each, the id never cut short; a console narrower than ``WIDE``
    leaves out what each runs and its last run (``wtm schedule get`` shows them)."""
    wide = (width or render.console.width) >= render.WIDE
    table = Table(title=f"Schedules ({len(schedules)})")
    table.add_column("schedule", no_wrap=True)
    table.add_column("when", overflow="fold")
    if wide:
        table.add_column("runs", overflow="fold")
    table.add_column("next (UTC)", no_wrap=True)
    table.add_column("started", justify="right")
    table.add_column("skipped", justify="right")
    if wide:
        table.add_column("last run", no_wrap=True)
    several = len({s.namespace for s in schedules}) > 1  # listed with -n '*'
    for s in schedules:
        name = f"{s.namespace}/{s.schedule_id}" if several else s.schedule_id
        cells = [escape(name), escape(s.description)]
        if wide:
            cells.append(escape(s.task or f"pipeline {s.pipeline}"))
        cells.append("[yellow]paused[/]" if s.paused else _when(s.next_run_at, wide) or "done")
        cells += [str(s.runs_started), str(s.times_skipped)]
        if wide:
            cells.append(s.last_run_id)
        table.add_row(*cells)
    return render.when_empty(table, "No schedule in this namespace.")


def schedule_panel(s: ScheduleInfo) -> str:
    """One schedule, whole."""
    target = f"task {s.task}" if s.task else f"pipeline {s.pipeline}"
    lines = [
        f"[bold]{escape(s.schedule_id)}[/]  {escape(s.description)}"
        + ("  [yellow]paused[/]" if s.paused else ""),
        escape(f"  runs {target} on {json.dumps(s.input)}")
        + (f", {escape(s.due_time_field)} = the time it is due" if s.due_time_field else ""),
        f"  next {_when(s.next_run_at)} UTC" if s.next_run_at else "",
        "  done: its last time has come" if not (s.paused or s.next_run_at) else "",
        f"  started {s.runs_started} · skipped {s.times_skipped} · overlap {s.overlap}"
        + (f" · priority {s.priority}" if s.priority else "")
        + (f" · run timeout {s.run_timeout_seconds:g}s" if s.run_timeout_seconds else "")
        + (f" · {s.backfill_waiting} backfill times waiting" if s.backfill_waiting else ""),
        f"  last run {s.last_run_id} (due {_when(s.last_run_at)} UTC)" if s.last_run_id else "",
        f"  [red]last time started nothing: {escape(s.last_error)}[/]" if s.last_error else "",
        f"  namespace {s.namespace} · created {_when(s.created_at)} UTC"
        + (f" by key {s.created_by}" if s.created_by else ""),
    ]
    return "\n".join(line for line in lines if line)


@cli.group()
def schedule() -> None:
    """Runs started again and again, at times a cron expression or an interval gives."""


@schedule.command("create")
@click.argument("schedule_id")
@click.argument("input_json", default="{}")
@click.option("--task", "task_ref", help="the task to run, ID or ID@VERSION")
@click.option("--pipeline", "pipeline_ref", help="the pipeline to run, ID or ID@VERSION")
@click.option("--cron", help="five fields: minute hour day-of-month month day-of-week")
@click.option("--timezone", default="", help="the IANA zone --cron is read in (default UTC)")
@click.option(
    "--every",
    callback=parsed_by(parse_span),
    help="instead of --cron: an interval, such as 90s, 5m, 2h, 1d",
)
@click.option(
    "--at",
    callback=parsed_by(parse_at),
    help="instead: once, at this ISO time (2026-12-24T18:00:00+01:00; no zone: UTC)",
)
@click.option("--priority", type=click.IntRange(0, 10), default=0, help="1 to 10; 0: the task's")
@click.option(
    "--overlap",
    type=click.Choice(["skip", "allow"]),
    default="skip",
    help="while the last run has not ended: start nothing (skip) or another run (allow)",
)
@click.option("--paused", is_flag=True, help="create it paused")
@click.option(
    "--from",
    "start_time",
    callback=parsed_by(parse_at),
    help="with --cron or --every: no time before this ISO time",
)
@click.option(
    "--until",
    "end_time",
    callback=parsed_by(parse_at),
    help="with --cron or --every: no time after this ISO time (then it is done)",
)
@click.option(
    "--due-time-field",
    default="",
    metavar="KEY",
    help="set this input key of each run to the time it was due for (ISO, UTC)",
)
@click.option(
    "--jitter",
    callback=parsed_by(parse_span),
    help="with --cron or --every: start each run up to this much after its time (such as "
    "5m), so that schedules sharing a time do not all start at once",
)
@run_timeout_option
@click.pass_obj
def schedule_create(
    obj: Ctx,
    schedule_id: str,
    input_json: str,
    task_ref: str | None,
    pipeline_ref: str | None,
    cron: str | None,
    timezone: str,
    every: float | None,
    at: datetime | None,
    priority: int,
    overlap: str,
    paused: bool,
    start_time: datetime | None,
    end_time: datetime | None,
    due_time_field: str,
    jitter: float | None,
    run_timeout: float | None,
) -> None:
    """Start a run of --task or --pipeline on INPUT_JSON (inline JSON or @FILE) at every time
    --cron or --every gives, or once --at a time, in the namespace you act in, as your key."""
    data = parse_json_object(input_json, "INPUT_JSON")
    with obj.client() as client:
        data = upload_inputs(obj, client, data)
        created = client.create_schedule(
            schedule_id,
            task=task_ref,
            pipeline=pipeline_ref,
            input=data,
            cron=cron,
            every=every,
            at=at,
            timezone=timezone,
            priority=priority,
            overlap=overlap,
            paused=paused,
            run_timeout=run_timeout,
            start_time=start_time,
            end_time=end_time,
            due_time_field=due_time_field,
            jitter=jitter,
        )
    obj.out({"schedule": created}, schedule_panel(created))


@schedule.command("list")
@click.pass_obj
def schedule_list(obj: Ctx) -> None:
    """The schedules of the namespace you act in (with -n '*', every namespace's: keys of
    every namespace only)."""
    with obj.client() as client:
        found = client.list_schedules()
    obj.out({"schedules": found}, schedules_table(found))


@schedule.command("get")
@click.argument("schedule_id")
@click.pass_obj
def schedule_get(obj: Ctx, schedule_id: str) -> None:
    """One schedule: when it runs next, its last run and why a time started nothing."""
    with obj.client() as client:
        found = client.get_schedule(schedule_id)
    obj.out({"schedule": found}, schedule_panel(found))


@schedule.command("pause")
@click.argument("schedule_id")
@click.pass_obj
def schedule_pause(obj: Ctx, schedule_id: str) -> None:
    """Stop a schedule from starting runs until it is resumed."""
    with obj.client() as client:
        found = client.pause_schedule(schedule_id)
    obj.out({"schedule": found}, schedule_panel(found))


@schedule.command("resume")
@click.argument("schedule_id")
@click.pass_obj
def schedule_resume(obj: Ctx, schedule_id: str) -> None:
    """Let a paused schedule start runs again, from its next time after now."""
    with obj.client() as client:
        found = client.resume_schedule(schedule_id)
    obj.out({"schedule": found}, schedule_panel(found))


@schedule.command("trigger")
@click.argument("schedule_id")
@click.pass_obj
def schedule_trigger(obj: Ctx, schedule_id: str) -> None:
    """Start the schedule's run now, as one of its times would (paused or not)."""
    with obj.client() as client:
        run_id = client.trigger_schedule(schedule_id)
    obj.out({"run_id": run_id}, f"started run {run_id}")


@schedule.command("backfill")
@click.argument("schedule_id")
@click.option(
    "--from",
    "start",
    required=True,
    callback=lambda _ctx, _param, value: parse_at(value),
    help="the first moment of the range, an ISO time (no zone: UTC); included",
)
@click.option(
    "--until",
    "end",
    required=True,
    callback=lambda _ctx, _param, value: parse_at(value),
    help="the last moment of the range, past (no zone: UTC); included",
)
@click.option(
    "--max-running",
    type=click.IntRange(0, 1000),
    default=0,
    help="at most this many of its runs at once (1: one after another); the rest wait in "
    "the scheduler and start as runs end (0: all at once)",
)
@click.pass_obj
def schedule_backfill(
    obj: Ctx, schedule_id: str, start: datetime, end: datetime, max_running: int
) -> None:
    """Start a run for each time the schedule gave (or would have) from --from to --until,
    as that time would have: missed nights, or a new schedule run over the past. A time that
    already has a run keeps it, so running this again starts only what is missing."""
    with obj.client() as client:
        runs = client.backfill_schedule(schedule_id, start, end, max_running)
    table = Table(title=f"Backfill of {escape(schedule_id)}: {len(runs)} times")
    table.add_column("due (UTC)", no_wrap=True)
    table.add_column("run", no_wrap=True)
    table.add_column("")
    for r in runs:
        said = "started" if r.started else "waits its turn" if r.waiting else "had its run"
        table.add_row(_when(r.due_time), r.run_id, said)
    started, waiting = sum(r.started for r in runs), sum(r.waiting for r in runs)
    had = len(runs) - started - waiting
    table.caption = f"started {started}; {had} had their run" + (
        f"; {waiting} wait, {max_running} at a time" if waiting else ""
    )
    obj.out({"runs": runs}, table if runs else "the range gives no time of this schedule")


@schedule.command("cancel-backfill")
@click.argument("schedule_id")
@click.pass_obj
def schedule_cancel_backfill(obj: Ctx, schedule_id: str) -> None:
    """Drop the times the schedule's backfills keep waiting (--max-running): no run starts
    for them; the runs they started go on, and so do the schedule's own times."""
    with obj.client() as client:
        dropped = client.cancel_backfill(schedule_id)
    obj.out({"dropped": dropped}, f"dropped {dropped} waiting backfill time(s) of {schedule_id}")


@schedule.command("delete")
@click.argument("schedule_id")
@click.pass_obj
def schedule_delete(obj: Ctx, schedule_id: str) -> None:
    """Remove a schedule; the runs it started stay."""
    with obj.client() as client:
        client.delete_schedule(schedule_id)
    obj.out({"deleted": schedule_id}, f"deleted schedule {schedule_id}")


__all__ = ["schedule", "schedule_panel", "schedules_table"]
