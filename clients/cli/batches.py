"""Batches from the CLI: one run per input in one call (``SubmitRuns``), followed with a
progress bar, then a table of how each ended — for ``wtm run submit --inputs``, ``wtm
pipeline run --inputs`` and ``wtm pipeline run --input-dir``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from clients import render
from clients.cli.app import Ctx, upload_inputs
from clients.errors import ApiError
from clients.sdk import Client, RunInfo

_ITEM = re.compile(r"^inputs_json\[(\d+)\]")

inputs_option = click.option(  # wtm run submit / wtm pipeline run: a batch from a file
    "--inputs",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="one run per input in FILE (JSON Lines, or a JSON array), as one batch; INPUT_JSON "
    "is the shared rest of each input",
)


def read_inputs(path: Path, shared: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The inputs in ``path`` — JSON Lines (an object a line; blank lines skipped) or one JSON
    array of objects — each over ``shared``, with where each came from ("line 3", "item 3").
    A line that is not a JSON object is refused naming it."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--inputs") from exc
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise click.BadParameter(f"not a JSON array: {exc}", param_hint="--inputs") from exc
        found = [(f"item {n}", item) for n, item in enumerate(items, 1)]
    else:
        found = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    found.append((f"line {n}", json.loads(line)))
                except ValueError as exc:
                    where = f"{path} line {n}"
                    raise click.BadParameter(
                        f"{where}: not JSON: {exc}", param_hint="--inputs"
                    ) from None
    for where, item in found:
        if not isinstance(item, dict):
            raise click.BadParameter(
                f"{path} {where}: must be a JSON object", param_hint="--inputs"
            )
    if not found:
        raise click.BadParameter(f"{path} holds no input", param_hint="--inputs")
    return [w for w, _ in found], [{**shared, **item} for _, item in found]


def submit_file(
    obj: Ctx, path: Path, shared: dict[str, Any], wait: bool, **submit: Any
) -> NoReturn:
    """``--inputs FILE``: a batch of its inputs (``read_inputs``), submitted and, with
    ``wait``, followed; exits with ``submit_batch``'s status."""
    names, inputs = read_inputs(path, shared)
    with obj.client() as client:
        status = submit_batch(obj, client, names, inputs, wait, **submit)
    sys.exit(status)


def submit_batch(
    obj: Ctx,
    client: Client,
    names: list[str],
    inputs: list[dict[str, Any]],
    wait: bool,
    column: str = "input",
    show: str = "output",
    **submit: Any,
) -> int:
    """Submit ``inputs`` as one batch (local files their fields name uploaded first) and, with
    ``wait``, follow it to the end; the exit status: 1 if a run did not complete. A refused
    input is named by where it came from (``names``). Each row shows the run's ``output``,
    or its ``counts`` (a face batch's: ``render.counts_of``)."""
    inputs = [upload_inputs(obj, client, data) for data in inputs]
    try:
        batch_id, run_ids = client.submit_many(inputs, **submit)
    except ApiError as exc:
        if (found := _ITEM.match(exc.field or "")) and int(found[1]) < len(names):
            exc.message += f" ({column} {names[int(found[1])]})"
        raise
    if not wait:
        obj.out(
            {"batch_id": batch_id, "run_ids": run_ids},
            f"submitted batch [bold]{batch_id}[/]: {len(run_ids)} runs "
            f"(wtm run list --batch {batch_id})",
        )
        return 0
    finished = follow_batch(obj, client, batch_id, run_ids)
    name_of = dict(zip(run_ids, names, strict=True))
    rows = [
        {
            column: name_of[r.run_id],
            "run_id": r.run_id,
            "state": r.state,
            show: render.counts_of(r.output) if show == "counts" else r.output,
            "wall_ms": round((r.processing_summary or {}).get("wall_seconds", 0) * 1000),
            "error": r.error,
        }
        for r in finished
    ]
    obj.out({"batch_id": batch_id, "runs": rows}, render.batch_table(batch_id, rows, column))
    return 0 if all(r.state == "COMPLETED" for r in finished) else 1


def follow_batch(obj: Ctx, client: Client, batch_id: str, run_ids: list[str]) -> list[RunInfo]:
    """Wait for each run of the batch, a progress bar on stderr meanwhile."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    finished: list[RunInfo] = []
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=render.errors,
        disable=obj.as_json,
    ) as bar:
        task = bar.add_task(f"batch {batch_id}", total=len(run_ids))
        for run_id in run_ids:  # one watch at a time: the batch runs all the while
            finished.append(client.wait(run_id, timeout=3600, raise_on_failure=False))
            bar.advance(task)
    return finished
