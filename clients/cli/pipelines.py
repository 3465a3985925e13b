"""``wtm pipeline ...``: register, validate, inspect and run pipelines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from clients import render
from clients.cli.app import (
    AliasedGroup,
    Ctx,
    cli,
    parse_json_object,
    run_timeout_option,
    start_delay_option,
)
from clients.cli.batches import inputs_option, submit_batch, submit_file
from clients.cli.runs import labels_option, submit_and_show
from clients.sdk import PipelineInfo

DEFAULT_CONFIG = (
    Path(__file__).resolve().parents[2] / "tasks" / "pipelines" / "config_pipeline.json"
)


@cli.group(cls=AliasedGroup, aliases={"execute": ("pipeline", "run"), "tasks": ("task", "list")})
def pipeline() -> None:
    """Pipelines in the registry."""


def _config_options(f):  # noqa: ANN001, ANN202
    """A config file, named as the original system's tool named it (``--json-config``) or
    as ``wtm task register`` names a package (a path after the command); the bundled
    examples' config when neither is given."""
    f = click.option(
        "--pipeline", "pipeline_id", default="", help="only this pipeline of the file"
    )(f)
    f = click.option(
        "--json-config",
        "config",
        default=None,
        help=f"the config file (the same as CONFIG)  [default: {DEFAULT_CONFIG}]",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
    )(f)
    return click.argument(
        "config_path",
        metavar="[CONFIG]",
        required=False,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
    )(f)


def _config_file(config: Path | None, config_path: Path | None) -> Path:
    """The one config file asked for: CONFIG or ``--json-config``, not two different ones."""
    if config and config_path and config.resolve() != config_path.resolve():
        raise click.UsageError(
            f"CONFIG ({config_path}) and --json-config ({config}) name two files: give one"
        )
    return config or config_path or DEFAULT_CONFIG


def _summary(pipelines: list[PipelineInfo], verb: str) -> str:
    lines = []
    for p in pipelines:
        state = "unchanged" if p.registered_before else verb
        lines.append(
            f"{state} {p.pipeline_id}@{p.version}: "
            + ", ".join(f"{s.step_id}={s.task_id}@{s.task_version}" for s in p.steps)
        )
    for warning in pipelines[0].warnings if pipelines else []:  # the same for every pipeline
        lines.append(f"[yellow]note[/] {escape(warning)}")
    return "\n".join(lines)


@pipeline.command("register")
@_config_options
@click.pass_obj
def pipeline_register(
    obj: Ctx, config: Path | None, config_path: Path | None, pipeline_id: str
) -> None:
    """Register the pipelines of a JSON config, CONFIG (each step pinned to a task
    version)."""
    path = _config_file(config, config_path)
    with obj.client() as client:
        result = client.register_pipelines(path, pipeline_id)
    obj.out(result, _summary(result, "registered"))


@pipeline.command("validate")
@_config_options
@click.pass_obj
def pipeline_validate(
    obj: Ctx, config: Path | None, config_path: Path | None, pipeline_id: str
) -> None:
    """Check a JSON config, CONFIG, against the registry without storing anything."""
    path = _config_file(config, config_path)
    with obj.client() as client:
        result = client.register_pipelines(path, pipeline_id, validate_only=True)
    obj.out(result, _summary(result, "valid") + "\n(nothing stored)")


@pipeline.command("list")
@click.argument("pipeline_id", required=False, default="")
@click.pass_obj
def pipeline_list(obj: Ctx, pipeline_id: str) -> None:
    """List registered pipeline versions: all, or those of PIPELINE_ID."""
    with obj.client() as client:
        items = list(client.list_pipelines(pipeline_id=pipeline_id))
    obj.out(items, render.pipelines_table(items))


@pipeline.command("info")
@click.argument("ref")
@click.pass_obj
def pipeline_info(obj: Ctx, ref: str) -> None:
    """Show a pipeline version: ID (latest) or ID@VERSION, with its DAG."""
    with obj.client() as client:
        p = client.get_pipeline(ref)
    obj.out(p, render.pipeline_panel(p))


@pipeline.command("show-config")
@click.argument("ref", required=False)
@click.pass_obj
def pipeline_show_config(obj: Ctx, ref: str | None) -> None:
    """Print a registered pipeline (REF: ID or ID@VERSION), or the latest version of every
    registered pipeline, as a config file, task versions pinned."""
    with obj.client() as client:
        if ref:
            found = [client.get_pipeline(ref)]
        else:
            latest: dict[str, PipelineInfo] = {}
            for p in client.list_pipelines():  # by id, newest version first
                latest.setdefault(p.pipeline_id, p)
            found = list(latest.values())
    doc = {"pipelines": {p.pipeline_id: _as_config(p) for p in found}}
    click.echo(json.dumps(doc, indent=2))


def _as_config(p: PipelineInfo) -> dict[str, Any]:
    """The pipeline as a config that registers as the same pipeline: every step's settings
    as pinned (its queue is the task's unless it had its own), the pipeline's own
    global_settings."""
    steps = [
        {
            "step_id": s.step_id,
            "task_id": f"{s.task_id}@{s.task_version}",
            "timeout": s.timeout_seconds,
            "retry_count": s.retry_count,
            "depends_on": s.depends_on,
            **({"parallel_group": s.parallel_group} if s.parallel_group else {}),
            "input_mapping": s.input_mapping,
            **({"queue": s.queue} if s.queue else {}),
            **({"cache": s.cache} if s.cache is not None else {}),
            **(
                {"retry_backoff": s.retry_backoff[0], "retry_backoff_max": s.retry_backoff[1]}
                if s.retry_backoff
                else {}
            ),
            **({"skip_if": s.skip_if} if s.skip_if else {}),
            **({"for_each": s.for_each} if s.for_each else {}),
            **({"await_signal": s.await_signal} if s.await_signal else {}),
        }
        for s in p.steps
    ]
    settings = {
        "max_parallel_tasks": p.max_parallel_tasks,
        "enable_caching": p.enable_caching,
        "log_level": p.log_level,
        "run_timeout": p.run_timeout_seconds,
    }
    return {
        "name": p.name,
        "description": p.description,
        "version": p.version,
        "steps": steps,
        "input_validation": p.input_validation,
        "output_format": p.output_format,
        "metadata": p.metadata,
        "enabled": p.enabled,
        **(
            {"global_settings": {k: v for k, v in settings.items() if v}}
            if any(settings.values())
            else {}
        ),
    }


@pipeline.command("run")
@click.argument("ref")
@click.argument("input_json", default="{}")
@click.option(
    "--input-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="one run per image in DIR (a batch), with INPUT_JSON as the shared rest of the input",
)
@click.option(
    "--field", default="image_path", show_default=True, help="input field for --input-dir"
)
@inputs_option
@click.option(
    "--priority",
    type=click.IntRange(0, 10),
    default=0,
    help="1 (lowest) to 10 (highest); 0: the highest of its tasks' own",
)
@click.option("--request-id", default="", help="idempotency key")
@click.option("--wait/--no-wait", default=True, help="follow the run until it finishes")
@click.option(
    "--cache/--no-cache",
    default=None,
    help="reuse cached step outputs (default: as the pipeline's enable_caching; a task: no)",
)
@labels_option
@run_timeout_option
@start_delay_option
@click.pass_obj
def pipeline_run(
    obj: Ctx,
    ref: str,
    input_json: str,
    input_dir: Path | None,
    field: str,
    inputs: Path | None,
    priority: int,
    request_id: str,
    wait: bool,
    cache: bool | None,
    labels: dict[str, str] | None,
    run_timeout: float | None,
    start_delay: float | None,
) -> None:
    """Run pipeline REF (ID or ID@VERSION) on INPUT_JSON (inline JSON or @FILE); local
    files named by file fields (image_path...) are uploaded as artifacts first."""
    data = parse_json_object(input_json, "INPUT_JSON")
    if input_dir is not None and inputs is not None:
        raise click.BadParameter("give --input-dir or --inputs, not both", param_hint="--inputs")
    if input_dir is not None:
        sys.exit(run_batch(obj, ref, data, input_dir, field, priority, run_timeout, labels))
    if inputs is not None:
        submit_file(
            obj, inputs, data, wait, pipeline=ref, priority=priority, request_id=request_id,
            labels=labels, cache=cache, run_timeout=run_timeout, start_delay=start_delay,
        )  # fmt: skip
    submit_and_show(
        obj, wait, pipeline=ref, input=data, priority=priority, request_id=request_id,
        labels=labels, cache=cache, run_timeout=run_timeout, start_delay=start_delay,
    )  # fmt: skip


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def run_batch(
    obj: Ctx,
    ref: str,
    shared: dict[str, object],
    folder: Path,
    field: str,
    priority: int,
    run_timeout: float | None = None,
    labels: dict[str, str] | None = None,
) -> int:
    """Submit one run per image in ``folder`` in one call (a batch); show overall progress
    while they run, then a summary table. Exit status 1 if any run did not complete."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise click.BadParameter(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    with obj.client() as client:
        inputs = [{**shared, field: client.upload_artifact(image)} for image in images]
        return submit_batch(
            obj, client, [p.name for p in images], inputs, True, "image", "counts",
            pipeline=ref, priority=priority, run_timeout=run_timeout, labels=labels,
        )  # fmt: skip
