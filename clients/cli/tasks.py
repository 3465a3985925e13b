"""``wtm task ...``: create, test, register and inspect task packages."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path

import click
from rich.markup import escape

from clients import render
from clients.cli.app import Ctx, cli, parse_json_object
from clients.errors import ApiError
from clients.scaffold import create_task, template_names
from common import rate_limits


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


@task.command("create")
@click.argument("name")
@click.option(
    "--template", type=click.Choice(template_names()), default="simple", show_default=True
)
@click.option("--author", default="")
@click.option(
    "--dir",
    "dest",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="where to write it (default: tasks/ at the repository's root, else here)",
)
@click.pass_obj
def task_create(obj: Ctx, name: str, template: str, author: str, dest: Path | None) -> None:
    """Scaffold task NAME from a template; it registers and runs as it is."""
    if dest is None:  # as the original system documented: new tasks go under tasks/
        dest = Path("tasks") if Path("tasks", "templates").is_dir() else Path(".")
    try:
        path = create_task(name, template, dest, author)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    obj.out({"path": str(path)}, f"created {path} from the {template!r} template")


@task.command("list-templates")
@click.pass_obj
def task_list_templates(obj: Ctx) -> None:
    """List the templates ``wtm task create --template`` takes."""
    names = template_names()
    obj.out(names, "\n".join(names))


@task.command("register")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="show each task as registered")
@click.pass_obj
def task_register(obj: Ctx, path: Path, verbose: bool) -> None:
    """Register a task directory, or every task directory in a folder."""
    with obj.client() as client:
        results = [client.register_task(d) for d in task_dirs(path)]
    human = "\n".join(
        f"{'registered' if t.created else 'unchanged '} "
        f"{t.task_id}@{t.version} sha256:{t.digest[:12]}"
        + (f"\n{render.task_panel(t)}" if verbose else "")
        for t in results
    )
    obj.out(results, human)


@task.command("list")
@click.argument("task_id", required=False, default="")
@click.option("--category", default="")
@click.option("--tag", default="")
@click.option("--queue", default="")
@click.pass_obj
def task_list(obj: Ctx, task_id: str, category: str, tag: str, queue: str) -> None:
    """List registered task versions: all, or those of TASK_ID."""
    with obj.client() as client:
        tasks = list(client.list_tasks(task_id=task_id, category=category, tag=tag, queue=queue))
    obj.out(tasks, render.tasks_table(tasks))


@task.command("info")
@click.argument("ref")
@click.pass_obj
def task_info(obj: Ctx, ref: str) -> None:
    """Show one task version: ID (latest) or ID@VERSION, with the limits an operator set
    for it in this namespace (`wtm task limit`), if any."""
    with obj.client() as client:
        t = client.get_task(ref)
        try:
            limits = [x for x in client.task_limits() if x.task_id == t.task_id]
        except ApiError:  # the scheduler is not needed to show the task
            limits = []
    panel = render.task_panel(t)
    if limits:
        panel += f"\n  set by an operator here: {render.task_limit_text(limits[0])}"
    # --json: the task, and what an operator set (null: nothing, or the scheduler is away)
    obj.out({**dataclasses.asdict(t), "operator_limits": limits[0] if limits else None}, panel)


@task.command("delete")
@click.argument("ref")
@click.option("--reason", default="")
@click.pass_obj
def task_delete(obj: Ctx, ref: str, reason: str) -> None:
    """Retire ID@VERSION. It is deprecated, not erased: pipelines pinned to it keep running,
    but it is no longer "latest" and new pipelines cannot use it."""
    with obj.client() as client:
        t = client.deprecate_task(ref, reason)
    obj.out(t, f"deprecated {t.task_id}@{t.version} (kept for pinned pipelines)")


@task.command("download")
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="file to write (default: ID-VERSION.tar.gz)",
)
@click.pass_obj
def task_download(obj: Ctx, ref: str, output: str | None) -> None:
    """Fetch the package of task REF (ID: the latest, or ID@VERSION) as registered — the code
    the executors run, checked against its digest — into a .tar.gz file."""
    with obj.client() as client:
        t = client.get_task(ref)
        data = client.download_package(t.digest)
    target = Path(output or f"{t.task_id}-{t.version}.tar.gz")
    target.write_bytes(data)
    obj.out(
        {"path": str(target), "bytes": len(data), "digest": t.digest},
        f"wrote {t.task_id}@{t.version} ({len(data):,} bytes, sha256 {t.digest[:12]}…) to "
        f"{escape(str(target))}",
    )


@task.command("share")
@click.argument("task_id")
@click.option("--unshare", is_flag=True, help="stop sharing it")
@click.pass_obj
def task_share(obj: Ctx, task_id: str, unshare: bool) -> None:
    """Let pipelines of every namespace use TASK_ID of this namespace (all its versions), as
    "NAMESPACE/TASK_ID" (admins). --unshare stops that: other namespaces can then neither
    register pipelines with it nor run those that use it."""
    with obj.client() as client:
        t = client.share_task(task_id, not unshare)
    state = f"shared as {t.namespace}/{t.task_id}" if t.shared else "not shared"
    obj.out(t, f"{t.task_id} of namespace {t.namespace}: {state}")


@task.command("limit")
@click.argument("task_id")
@click.option("--rate-limit", default=None, help='"N/s", "N/m" or "N/h"; "" for none')
@click.option(
    "--rate-burst",
    type=click.IntRange(1, rate_limits.MAX_BURST),
    default=None,
    help="starts at once under the rate limit, the next ones at its rate (1: spaced)",
)
@click.option(
    "--concurrency-limit",
    type=click.IntRange(0, rate_limits.MAX_CONCURRENCY),
    default=None,
    help="0 for none",
)
@click.option(
    "--reset",
    type=click.Choice(["rate_limit", "rate_burst", "concurrency_limit"]),
    multiple=True,
    help="return this limit to the task's own (task.json's)",
)
@click.pass_obj
def task_limit(
    obj: Ctx,
    task_id: str,
    rate_limit: str | None,
    rate_burst: int | None,
    concurrency_limit: int | None,
    reset: tuple[str, ...],
) -> None:
    """Set TASK_ID's rate limit, its burst or its concurrency limit in this namespace over
    its task.json's (Celery's `control rate_limit`): every scheduler applies it within a
    second, to steps already queued too (operators and admins)."""
    with obj.client() as client:
        t = client.set_task_limits(task_id, rate_limit, concurrency_limit, reset, rate_burst)
    obj.out(
        t or {"task_id": task_id, "limits": None},
        f"{escape(task_id)}: " + (render.task_limit_text(t) if t else "its task.json's limits"),
    )


@task.command("limits")
@click.pass_obj
def task_limits(obj: Ctx) -> None:
    """The task limits operators set in this namespace (`wtm task limit`)."""
    with obj.client() as client:
        found = client.task_limits()
    obj.out(found, render.task_limits_table(found))


@task.command("test")
@click.argument("task_ref")
@click.argument("input_json", default="{}")
@click.option("--verbose", "-v", is_flag=True, help="also show the task's log lines")
@click.pass_obj
def task_test(obj: Ctx, task_ref: str, input_json: str, verbose: bool) -> None:
    """Run a task in this process on INPUT_JSON (inline JSON or @FILE), with no services:
    TASK_REF is a task directory, or ID[@VERSION] fetched from the registry."""
    from tasks.base.runtime import load_task, run_once
    from tasks.base.task_base import TaskContext

    data = parse_json_object(input_json, "INPUT_JSON")
    context = TaskContext(report=lambda f, m: render.errors.print(f"  progress {f:.0%} {m}"))
    if verbose:  # the task's log lines, to stderr (stdout stays the output)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("  log %(levelname)s %(message)s"))
        context.logger.addHandler(handler)
        context.logger.setLevel(logging.DEBUG)
    with tempfile.TemporaryDirectory() as tmp:
        if Path(task_ref).is_dir():
            package = Path(task_ref)
            if not (package / "task.json").is_file():
                raise click.BadParameter(f"{task_ref} has no task.json", param_hint="TASK_REF")
        else:
            from common.packaging import extract_to, inspect_archive

            with obj.client() as client:
                info = client.get_task(task_ref)
                archive = client.download_package(info.digest)
            package = Path(tmp) / "pkg"
            extract_to(inspect_archive(archive), package)
        task_obj = load_task(package, context=context)
        task_obj.setup()
        try:
            verdict, payload = run_once(task_obj, json.dumps(data))
        finally:
            task_obj.cleanup()
    if verdict != "ok":
        if obj.as_json:
            error = {"code": verdict.upper(), "message": payload, "field": None, "exit_code": 1}
            click.echo(json.dumps({"error": error}), err=True)
        else:
            render.errors.print(f"[red]{verdict}[/] {escape(payload)}")
        raise SystemExit(1)
    obj.out(json.loads(payload), json.dumps(json.loads(payload), indent=2))
