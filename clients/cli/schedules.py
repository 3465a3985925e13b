"""``wtm schedule ...``: runs started at times a cron expression or an interval gives
(what the original system's ``celery beat`` did)."""

from __future__ import annotations

import re

import click
from rich.markup import escape
from rich.table import Table

from clients.cli.app import Ctx, cli, parse_json_object, upload_inputs
from clients.schedules import ScheduleInfo

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_every(text: str) -> float:
    """Seconds from "90", "90s", "5m", "2h", "1d"."""
    match = _SPAN.match(text)
    if not match:
        raise click.BadParameter(f"{text!r}: a number and s, m, h or d (90s, 5m, 1d)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else ""


def schedules_table(schedules: list[ScheduleInfo]) -> Table:
    table = Table(title=f"Schedules ({len(schedules)})")
    for col in ("id", "when", "runs", "next (UTC)", "runs started", "skipped", "last run"):
        table.add_column(col)
    for s in schedules:
        last = s.last_run_id + (f"\n[red]{escape(s.last_error)}[/]" if s.last_error else "")
        table.add_row(
            escape(s.schedule_id),
            escape(s.description),
            escape(s.task or f"pipeline {s.pipeline}"),
            "[yellow]paused[/]" if s.paused else _when(s.next_run_at),
            str(s.runs_started),
            str(s.times_skipped),
            last,
        )
    return table


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
    callback=lambda _ctx, _param, value: None if value is None else parse_every(value),
    help="instead of --cron: an interval, such as 90s, 5m, 2h, 1d",
)
@click.option("--priority", type=click.IntRange(0, 10), default=0, help="1 to 10; 0: the task's")
@click.option(
    "--overlap",
    type=click.Choice(["skip", "allow"]),
    default="skip",
    help="while the last run has not ended: start nothing (skip) or another run (allow)",
)
@click.option("--paused", is_flag=True, help="create it paused")
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
    priority: int,
    overlap: str,
    paused: bool,
) -> None:
    """Start a run of --task or --pipeline on INPUT_JSON (inline JSON or @FILE) at every time
    --cron or --every gives, in the namespace you act in, as your key."""
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
            timezone=timezone,
            priority=priority,
            overlap=overlap,
            paused=paused,
        )
    obj.out({"schedule": created}, schedules_table([created]))


@schedule.command("list")
@click.pass_obj
def schedule_list(obj: Ctx) -> None:
    """The schedules of the namespace you act in."""
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
    obj.out({"schedule": found}, schedules_table([found]))


@schedule.command("pause")
@click.argument("schedule_id")
@click.pass_obj
def schedule_pause(obj: Ctx, schedule_id: str) -> None:
    """Stop a schedule from starting runs until it is resumed."""
    with obj.client() as client:
        found = client.pause_schedule(schedule_id)
    obj.out({"schedule": found}, schedules_table([found]))


@schedule.command("resume")
@click.argument("schedule_id")
@click.pass_obj
def schedule_resume(obj: Ctx, schedule_id: str) -> None:
    """Let a paused schedule start runs again, from its next time after now."""
    with obj.client() as client:
        found = client.resume_schedule(schedule_id)
    obj.out({"schedule": found}, schedules_table([found]))


@schedule.command("delete")
@click.argument("schedule_id")
@click.pass_obj
def schedule_delete(obj: Ctx, schedule_id: str) -> None:
    """Remove a schedule; the runs it started stay."""
    with obj.client() as client:
        client.delete_schedule(schedule_id)
    obj.out({"deleted": schedule_id}, f"deleted schedule {schedule_id}")


__all__ = ["parse_every", "schedule", "schedules_table"]
