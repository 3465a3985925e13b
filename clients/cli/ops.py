"""``wtm health``, ``wtm monitor`` and ``wtm queue list``: how an operator sees the whole
installation (the dashboard shows the same)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import click
from rich.console import Group
from rich.live import Live

from clients import render
from clients.cli.app import Ctx, cli
from clients.health import STALE_AFTER_SECONDS, HealthReport, check_health
from clients.sdk import Client


@cli.command()
@click.option(
    "--gateway",
    envvar="WTM_GATEWAY_URL",
    show_envvar=True,
    default="",
    help="the gateway's URL, to check it too (https://host:port)",
)
@click.option(
    "--stale-after",
    type=click.FloatRange(0),
    default=STALE_AFTER_SECONDS,
    show_default=True,
    help="warn about a queue whose oldest waiting step is older than this (seconds)",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="deadline of each check; above the services' 5 s wait for MongoDB, so that a "
    "service whose MongoDB is down can say so",
)
@click.pass_obj
def health(obj: Ctx, gateway: str, stale_after: float, timeout: float) -> None:
    """Check every part: the registry and the scheduler, their Redis, MongoDB and S3, the
    gateway, the executors and the queues. Exit 0 when nothing is down (warnings allowed:
    a queue with work and no executor, lost executors, unhealthy slots), 1 otherwise."""

    async def check() -> HealthReport:
        client = obj.async_client(timeout=timeout, retry_seconds=0)
        try:
            from common.tls import ca_path

            return await check_health(client, gateway, ca_path(None), stale_after)
        finally:
            await client.close()

    report = asyncio.run(check())
    obj.out(report.to_dict(), render.health_table(report))
    if not obj.as_json:
        for c in report.checks:
            if c.status == "fail":
                render.errors.print(f"[red]down[/] {c.component}: {render.escape(c.detail)}")
    sys.exit(0 if report.healthy else 1)


@cli.group()
def queue() -> None:
    """The queues of the scheduler."""


@queue.command("list")
@click.pass_obj
def queue_list(obj: Ctx) -> None:
    """Queues with waiting work or an executor: depth, the oldest step's age, executors."""
    with obj.client() as client:
        queues, delayed = client.list_queues()
    obj.out({"queues": queues, "delayed": delayed}, render.queues_table(queues, delayed))


@queue.command("pause")
@click.argument("name")
@click.option("--reason", default="", help="why, shown with the queue")
@click.pass_obj
def queue_pause(obj: Ctx, name: str, reason: str) -> None:
    """Stop leasing the steps waiting on queue NAME (as `wtm queue list` names it), on every
    scheduler replica within a second, until `wtm queue resume` (Celery's cancel_consumer
    on every worker): runs are still accepted and wait; running steps go on."""
    with obj.client() as client:
        pause = client.pause_queue(name, reason)
    obj.out(pause, f"queue {render.escape(pause.queue)} paused; its steps wait")


@queue.command("resume")
@click.argument("name")
@click.pass_obj
def queue_resume(obj: Ctx, name: str) -> None:
    """Lease the steps waiting on a paused queue NAME again."""
    with obj.client() as client:
        resumed = client.resume_queue(name)
    obj.out(
        {"queue": name, "resumed": resumed},
        f"queue {render.escape(name)} " + ("resumed" if resumed else "was not paused"),
    )


@cli.group()
def namespace() -> None:
    """The namespaces sharing the installation."""


@namespace.command("list")
@click.pass_obj
def namespace_list(obj: Ctx) -> None:
    """The namespace you act in (with -n '*', every one in use: keys of every namespace
    only): runs queued or running, the limit of those, its weight in the turns new runs
    take between namespaces, steps waiting."""
    with obj.client() as client:
        namespaces = client.list_namespaces()
    obj.out({"namespaces": namespaces}, render.namespaces_table(namespaces))


@cli.group()
def artifact() -> None:
    """Files stored for runs: uploaded inputs and outputs too large to travel inline."""


@artifact.command("upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def artifact_upload(obj: Ctx, path: str) -> None:
    """Store a file in the namespace you act in; prints the artifact:// URI to put in a
    run's input."""
    with obj.client() as client:
        uri = client.upload_artifact(path)
    obj.out({"uri": uri}, uri)


@artifact.command("download")
@click.argument("uri")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="file to write")
@click.pass_obj
def artifact_download(obj: Ctx, uri: str, output: str | None) -> None:
    """Fetch an artifact (an uploaded file, or an output that went by reference) into
    OUTPUT, or the file name its URI gives in the current directory."""
    with obj.client() as client:
        data = client.download_artifact(uri)
    name = PurePosixPath(uri).name
    target = Path(output or (name if name not in {"", ".", ".."} else "artifact"))
    target.write_bytes(data)
    obj.out({"path": str(target), "bytes": len(data)}, f"wrote {len(data):,} bytes to {target}")


@artifact.command("list")
@click.pass_obj
def artifact_list(obj: Ctx) -> None:
    """The artifacts of the namespace you act in (with -n '*', every namespace's): digest,
    size, when last stored."""
    with obj.client() as client:
        artifacts = client.list_artifacts()
    obj.out({"artifacts": artifacts}, render.artifacts_table(artifacts))


@artifact.command("delete")
@click.argument("artifacts", nargs=-1, required=True)
@click.pass_obj
def artifact_delete(obj: Ctx, artifacts: tuple[str, ...]) -> None:
    """Delete artifacts (URIs or digests) of the namespace you act in (admins). A run that
    names one afterwards fails its step; the daily sweep deletes, unasked, the ones that no
    kept run or pipeline names."""
    with obj.client() as client:
        gone = client.delete_artifacts(list(artifacts))
    obj.out({"deleted": gone}, f"deleted {len(gone)} artifact(s)")


@namespace.command("set")
@click.option(
    "--run-limit", type=click.IntRange(0), help="runs queued or running at most (0: none)"
)
@click.option("--weight", type=float, help="share of new runs while others wait (1/32 to 32)")
@click.option("--retention-days", type=float, help="how long finished runs are kept (0: for good)")
@click.option(
    "--calls-per-second",
    type=click.FloatRange(0),
    help="calls a second to each registry and scheduler replica (0: no limit)",
)
@click.option(
    "--reset",
    "reset",
    multiple=True,
    type=click.Choice(["run_limit", "weight", "history_retention_days", "calls_per_second"]),
    help="return a setting to the installation's (repeatable)",
)
@click.pass_obj
def namespace_set(
    obj: Ctx,
    run_limit: int | None,
    weight: float | None,
    retention_days: float | None,
    calls_per_second: float | None,
    reset: tuple[str, ...],
) -> None:
    """Change the settings of the namespace you act in (-n NAME) over the installation's;
    every scheduler applies them within a second. Keys of every namespace only."""
    with obj.client() as client:
        ns = client.update_namespace(run_limit, weight, retention_days, reset, calls_per_second)
    obj.out({"namespace": ns}, render.namespaces_table([ns]))


def snapshot(client: Client, runs: int = 10) -> dict[str, Any]:
    queues, delayed = client.list_queues()
    recent, _ = client.list_runs_page(page_size=runs)
    return {
        "queues": queues,
        "delayed": delayed,
        "executors": client.list_executors(),
        "runs": recent,
    }


@cli.command()
@click.option("--interval", type=click.FloatRange(0.2), default=2.0, show_default=True)
@click.option("--runs", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--count", type=click.IntRange(0), default=0, help="stop after N refreshes")
@click.pass_obj
def monitor(obj: Ctx, interval: float, runs: int, count: int) -> None:
    """A live view of queues, executors (slots, CPU, memory, in flight) and the runs that
    finish, refreshed in place until Ctrl-C. With --json: one snapshot, printed once."""
    with obj.client() as client:
        if obj.as_json:
            click.echo(render.as_json(snapshot(client, runs)))
            return

        def view() -> Group:
            s = snapshot(client, runs)
            return Group(
                render.queues_table(s["queues"], s["delayed"]),
                render.executors_table(s["executors"]),
                render.runs_table(s["runs"]),
                f"[dim]{time.strftime('%H:%M:%S')} · every {interval:g}s · Ctrl-C stops[/]",
            )

        shown = 0
        with Live(view(), console=render.console, auto_refresh=False) as live:
            try:
                while not count or (shown := shown + 1) < count:
                    time.sleep(interval)
                    live.update(view(), refresh=True)
            except KeyboardInterrupt:
                pass


__all__ = ["health", "monitor", "namespace", "queue"]
