"""``wtm``: the command line for tasks, runs and the local stack.

Human output by default; ``--json`` prints machine-readable JSON instead.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from clients import render
from clients.sdk import ApiError, Client


class Ctx:
    def __init__(self, registry: str, scheduler: str, token: str, as_json: bool) -> None:
        self.registry, self.scheduler, self.token, self.as_json = (
            registry,
            scheduler,
            token,
            as_json,
        )

    def client(self) -> Client:
        return Client(self.registry, self.scheduler, token=self.token)

    def out(self, value: Any, human: Any) -> None:
        if self.as_json:
            click.echo(render.as_json(value))
        else:
            render.console.print(human)


@click.group()
@click.option(
    "--registry", envvar="WTM_REGISTRY_ADDR", default="127.0.0.1:50051", show_default=True
)
@click.option(
    "--scheduler", envvar="WTM_SCHEDULER_ADDR", default="127.0.0.1:50052", show_default=True
)
@click.option("--token", envvar="WTM_AUTH_TOKEN", default="", help="bearer token")
@click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
@click.pass_context
def cli(ctx: click.Context, registry: str, scheduler: str, token: str, as_json: bool) -> None:
    """Worker Task Manager: register tasks, run them, watch them."""
    ctx.obj = Ctx(registry, scheduler, token, as_json)


# Tasks -------------------------------------------------------------------------------------


@cli.group()
def task() -> None:
    """Task packages in the registry."""


def task_dirs(path: Path) -> list[Path]:
    """A task directory, or every task directory directly inside a folder."""
    if (path / "task.json").is_file():
        return [path]
    found = (
        sorted(p for p in path.iterdir() if (p / "task.json").is_file()) if path.is_dir() else []
    )
    if not found:
        raise click.BadParameter(
            f"{path} has no task.json and no task directories", param_hint="PATH"
        )
    return found


@task.command("register")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def task_register(obj: Ctx, path: Path) -> None:
    """Register a task directory, or every task directory in a folder."""
    with obj.client() as client:
        results = [client.register_task(d) for d in task_dirs(path)]
    human = "\n".join(
        f"{'registered' if t.created else 'unchanged '} "
        f"{t.task_id}@{t.version} sha256:{t.digest[:12]}"
        for t in results
    )
    obj.out(results, human)


@task.command("list")
@click.option("--category", default="")
@click.option("--tag", default="")
@click.option("--queue", default="")
@click.pass_obj
def task_list(obj: Ctx, category: str, tag: str, queue: str) -> None:
    """List registered task versions."""
    with obj.client() as client:
        tasks = list(client.list_tasks(category=category, tag=tag, queue=queue))
    obj.out(tasks, render.tasks_table(tasks))


@task.command("info")
@click.argument("ref")
@click.pass_obj
def task_info(obj: Ctx, ref: str) -> None:
    """Show one task version: ID (latest) or ID@VERSION."""
    with obj.client() as client:
        t = client.get_task(ref)
    obj.out(t, render.task_panel(t))


# Runs --------------------------------------------------------------------------------------


@cli.group()
def run() -> None:
    """Runs in the scheduler."""


def parse_input(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="INPUT_JSON") from exc
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="INPUT_JSON")
    return value


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
    """Run TASK_REF (ID or ID@VERSION) on INPUT_JSON."""
    with obj.client() as client:
        r = client.submit(
            task=task_ref, input=parse_input(input_json), priority=priority, request_id=request_id
        )
        if not obj.as_json:
            render.console.print(f"submitted run [bold]{r.run_id}[/]")
        if wait:
            for event in client.watch(r.run_id):
                if not obj.as_json:
                    render.console.print(render.event_line(event))
            r = client.get_run(r.run_id)
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


# Local stack -------------------------------------------------------------------------------


@cli.group()
def stack() -> None:
    """The local stack: backing servers and the three services on 127.0.0.1."""


@stack.command("up")
@click.option(
    "--dir", "root", default=".wtm/stack", show_default=True, type=click.Path(path_type=Path)
)
@click.option("--executors", default=1, show_default=True)
def stack_up(root: Path, executors: int) -> None:
    """Start everything in the foreground; Ctrl-C stops it all."""
    import signal

    from services.localstack import Cluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Cluster(root, executors=executors) as cluster:
        click.echo(f"export WTM_REGISTRY_ADDR={cluster.registry_address}")
        click.echo(f"export WTM_SCHEDULER_ADDR={cluster.scheduler_address}")
        click.echo(f"# logs in {root}/logs; Ctrl-C to stop", err=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


@cli.command()
@click.option(
    "--dir", "root", default=".wtm/demo", show_default=True, type=click.Path(path_type=Path)
)
def demo(root: Path) -> None:
    """Start the local stack and services, register the examples, run them, print, stop."""
    from clients.demo import run_demo

    sys.exit(run_demo(root))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ApiError as exc:
        render.console.print(f"[red]error[/] {exc.code}: {exc.message}")
        sys.exit(2)


if __name__ == "__main__":
    main()
