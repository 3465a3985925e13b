"""``wtm run ...``: submit, follow and inspect runs."""

from __future__ import annotations

import sys
from typing import Any

import click

from clients import render
from clients.cli.app import Ctx, cli, parse_json_object, upload_inputs
from clients.sdk import Client, RunInfo


@cli.group()
def run() -> None:
    """Runs in the scheduler."""


def follow(obj: Ctx, client: Client, run_id: str) -> RunInfo:
    """Print a run's events as they happen; return the finished run."""
    for event in client.watch(run_id):
        if not obj.as_json:
            render.console.print(render.event_line(event))
    return client.get_run(run_id)


@run.command("submit")
@click.argument("task_ref")
@click.argument("input_json", default="{}")
@click.option("--priority", type=click.IntRange(0, 10), default=0)
@click.option("--request-id", default="", help="idempotency key")
@click.option("--wait/--no-wait", default=True, help="follow the run until it finishes")
@click.pass_obj
def run_submit(
    obj: Ctx, task_ref: str, input_json: str, priority: int, request_id: str, wait: bool
) -> None:
    """Run task TASK_REF (ID or ID@VERSION) on INPUT_JSON (inline JSON or @FILE)."""
    data = parse_json_object(input_json, "INPUT_JSON")
    submit_and_show(obj, wait, task=task_ref, input=data, priority=priority, request_id=request_id)


def submit_and_show(obj: Ctx, wait: bool, **submit: Any) -> None:
    """Upload local input files, submit, follow the run live if asked, print it; exit 1 when
    a followed run did not complete."""
    with obj.client() as client:
        submit["input"] = upload_inputs(obj, client, submit["input"])
        r = client.submit(**submit)
        if not obj.as_json:
            render.console.print(f"submitted run [bold]{r.run_id}[/]")
        if wait:
            r = follow(obj, client, r.run_id)
    obj.out(r, render.run_summary(r))
    if wait and r.state != "COMPLETED":
        sys.exit(1)


@run.command("get")
@click.argument("run_id")
@click.pass_obj
def run_get(obj: Ctx, run_id: str) -> None:
    """Show a run with its steps and output."""
    with obj.client() as client:
        r = client.get_run(run_id)
    obj.out(r, render.run_summary(r))


@run.command("watch")
@click.argument("run_id")
@click.option("--after", default="", help="resume after this event id")
@click.pass_obj
def run_watch(obj: Ctx, run_id: str, after: str) -> None:
    """Stream a run's events until it finishes."""
    with obj.client() as client:
        for event in client.watch(run_id, after_event_id=after):
            if obj.as_json:
                click.echo(render.as_json(event).replace("\n", ""))
            else:
                render.console.print(render.event_line(event))
