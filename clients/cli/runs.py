"""``wtm run ...``: submit, follow and inspect runs."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from clients import render
from clients.cli.app import (
    Ctx,
    cli,
    parse_json_object,
    parse_moment,
    parse_span,
    parsed_by,
    run_timeout_option,
    start_delay_option,
    upload_inputs,
)
from clients.cli.batches import inputs_option, submit_file
from clients.sdk import Client, RunInfo
from common.states import State


@cli.group()
def run() -> None:
    """Runs in the scheduler."""


def follow(obj: Ctx, client: Client, run_id: str) -> RunInfo:
    """Print a run's events as they happen; return the finished run."""
    for event in client.watch(run_id):
        if not obj.as_json:
            render.console.print(render.event_line(event))
    return client.get_run(run_id)


def label_of(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r}: KEY=VALUE", param_hint="--label")
    return key, value


labels_option = click.option(  # a submit's labels, as a dict (None: none)
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    callback=lambda _ctx, _param, value: dict(label_of(t) for t in value) or None,
    help="a label of the run (repeat for more): `wtm run list --label` finds it",
)


@run.command("submit")
@click.argument("task_ref")
@click.argument("input_json", default="{}")
@click.option(
    "--priority",
    type=click.IntRange(0, 10),
    default=0,
    help="1 (lowest) to 10 (highest); 0: the task's own (task.json)",
)
@click.option("--request-id", default="", help="idempotency key")
@click.option("--wait/--no-wait", default=True, help="follow the run until it finishes")
@click.option(
    "--cache/--no-cache",
    default=None,
    help="reuse cached step outputs (default: as the pipeline's enable_caching; a task: no)",
)
@labels_option
@inputs_option
@run_timeout_option
@start_delay_option
@click.pass_obj
def run_submit(
    obj: Ctx,
    task_ref: str,
    input_json: str,
    labels: dict[str, str] | None,
    inputs: Path | None,
    priority: int,
    request_id: str,
    wait: bool,
    cache: bool | None,
    run_timeout: float | None,
    start_delay: float | None,
) -> None:
    """Run task TASK_REF (ID or ID@VERSION) on INPUT_JSON (inline JSON or @FILE); with
    --inputs, a batch: one run per input in FILE, followed to the end with a progress bar."""
    data = parse_json_object(input_json, "INPUT_JSON")
    if inputs is not None:
        submit_file(
            obj, inputs, data, wait, task=task_ref, priority=priority, request_id=request_id,
            labels=labels, cache=cache, run_timeout=run_timeout, start_delay=start_delay,
        )  # fmt: skip
    submit_and_show(
        obj, wait, task=task_ref, input=data, priority=priority, request_id=request_id,
        labels=labels, cache=cache, run_timeout=run_timeout, start_delay=start_delay,
    )  # fmt: skip


def submit_and_show(obj: Ctx, wait: bool, **submit: Any) -> None:
    """Upload local input files, submit, follow the run live if asked, print it; exit 1 when
    a followed run did not complete."""
    with obj.client() as client:
        submit["input"] = upload_inputs(obj, client, submit["input"])
        show(obj, client, client.submit(**submit), wait)


def show(obj: Ctx, client: Client, r: RunInfo, wait: bool, what: str = "submitted") -> None:
    """Say a run was submitted, follow it live if asked, print it; exit 1 when a followed
    run did not complete."""
    if not obj.as_json:
        trace = f" (trace {r.trace_id})" if r.trace_id else ""
        render.console.print(f"{what} run [bold]{r.run_id}[/]{trace}")
    if wait:
        r = follow(obj, client, r.run_id)
    obj.out(r, render.run_summary(r))
    if wait and r.state != "COMPLETED":
        sys.exit(1)


@run.command("rerun")
@click.argument("run_id")
@click.option(
    "--latest", is_flag=True, help="the latest version of its task or pipeline, not the one it ran"
)
@click.option(
    "--from-failure",
    is_flag=True,
    help="take over the steps it completed (unchanged ones); run only the rest",
)
@click.option("--request-id", default="", help="idempotency key")
@click.option("--wait/--no-wait", default=True, help="follow the new run until it finishes")
@click.pass_obj
def run_rerun(
    obj: Ctx, run_id: str, latest: bool, from_failure: bool, request_id: str, wait: bool
) -> None:
    """Run again what RUN_ID ran, on the same input: a new run of the same version, priority,
    time limit and labels, labelled wtm.rerun_of=RUN_ID (Flower's retry). With
    --from-failure, a run that failed, was cancelled or timed out resumes: the steps it
    completed are taken over where this run has them unchanged, and only the rest run
    (Argo's retry; with --latest, after registering a fixed task)."""
    with obj.client() as client:
        again = client.rerun(
            run_id, latest=latest, request_id=request_id, from_failure=from_failure
        )
        show(obj, client, again, wait, what=f"{run_id} runs again as")


@run.command("signal")
@click.argument("ids", nargs=-1, required=True, metavar="[RUN_ID] STEP_ID")
@click.option(
    "--json",
    "payload",
    default="{}",
    help="the signal's document, a JSON object (or @FILE): what the step's task gets",
)
@click.option("--wait/--no-wait", default=False, help="follow the run until it finishes")
@click.option("--batch", "batch_id", default="", help="instead: every unfinished run of a batch")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="instead: ... label")
@click.option("--schedule", default="", help="instead: ... this schedule started")
@click.option("--task", "task_id", default="", help="instead: ... of this task (or @version)")
@click.option(
    "--pipeline", "pipeline_id", default="", help="instead: ... of this pipeline (or @version)"
)
@click.pass_obj
def run_signal(
    obj: Ctx,
    ids: tuple[str, ...],
    payload: str,
    wait: bool,
    batch_id: str,
    labels: tuple[str, ...],
    schedule: str,
    task_id: str,
    pipeline_id: str,
) -> None:
    """Send STEP_ID of RUN_ID the signal it awaits (its pipeline step's await_signal: an
    approval, another system's answer); its task gets the document as the field that
    await_signal names. A step still waiting for its dependencies keeps it until it is
    ready. A step takes one signal. Without RUN_ID, STEP_ID of every unfinished run the
    filters match (all of them): --batch, --label, --schedule, --task, --pipeline."""
    if len(ids) > 2:
        raise click.UsageError("give [RUN_ID] STEP_ID")
    run_id, step_id = ids if len(ids) == 2 else (None, ids[0])
    wanted = run_or_filters(run_id, batch_id, labels, schedule, task_id, pipeline_id)
    document = parse_json_object(payload, "--json")
    with obj.client() as client:
        if not run_id:
            if wait:
                raise click.UsageError("--wait follows one run: give its RUN_ID")
            done = client.signal_runs(
                step_id, document, batch_id=batch_id, labels=wanted, task_id=task_id,
                pipeline_id=pipeline_id,
            )  # fmt: skip
            obj.out(done, render.signaled_runs(step_id, done))
            return
        r = client.signal(run_id, step_id, document)
        show(obj, client, r, wait, what=f"step {step_id} signalled in")


def run_or_filters(
    run_id: str | None,
    batch_id: str,
    labels: tuple[str, ...],
    schedule: str,
    task_id: str,
    pipeline_id: str,
) -> dict[str, str]:
    """The label filter of a command that takes a RUN_ID or filters, not both, not neither
    (``--schedule ID`` is the label ``wtm.schedule=ID``)."""
    wanted = dict(label_of(text) for text in labels)
    if schedule:
        wanted["wtm.schedule"] = schedule
    filters = bool(batch_id or wanted or task_id or pipeline_id)
    if bool(run_id) == filters:
        which = "not both" if filters else "--batch, --label, --schedule, --task or --pipeline"
        raise click.UsageError(f"give a RUN_ID, or filters ({which})")
    return wanted


@run.command("resume")
@click.argument("run_id", required=False)
@click.option(
    "--latest", is_flag=True, help="the latest version of its task or pipeline (a fixed one)"
)
@click.option("--batch", "batch_id", default="", help="instead: every failed run of a batch")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="instead: ... with this label"
)
@click.option("--schedule", default="", help="instead: ... this schedule started")
@click.option("--task", "task_id", default="", help="instead: ... of this task (or task@version)")
@click.option(
    "--pipeline", "pipeline_id", default="", help="instead: ... of this pipeline (or @version)"
)
@click.option("--wait/--no-wait", default=True, help="follow a single run until it finishes")
@click.pass_obj
def run_resume(
    obj: Ctx,
    run_id: str | None,
    latest: bool,
    batch_id: str,
    labels: tuple[str, ...],
    schedule: str,
    task_id: str,
    pipeline_id: str,
    wait: bool,
) -> None:
    """Resume a run that failed, was cancelled or timed out: a new run that takes over the
    steps it completed and runs the rest (run rerun --from-failure). Without RUN_ID, every
    such run the filters match (all of them), each resumed once however often this is
    called: --batch, --label, --schedule, --task, --pipeline."""
    wanted = run_or_filters(run_id, batch_id, labels, schedule, task_id, pipeline_id)
    with obj.client() as client:
        if run_id:
            again = client.rerun(run_id, latest=latest, from_failure=True)
            show(obj, client, again, wait, what=f"{run_id} resumes as")
            return
        done = client.resume_runs(
            batch_id=batch_id,
            labels=wanted,
            task_id=task_id,
            pipeline_id=pipeline_id,
            latest=latest,
        )
    obj.out(done, render.resumed_runs(done))


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


@run.command("wait")
@click.argument("run_ids", nargs=-1, required=True)
@click.option(
    "--timeout",
    callback=lambda _ctx, _param, value: parse_span(value),
    default="1h",
    show_default=True,
    help="give up after this long, such as 90s, 10m (the runs go on)",
)
@click.pass_obj
def run_wait(obj: Ctx, run_ids: tuple[str, ...], timeout: float) -> None:
    """Wait until every run of RUN_IDS has finished, and show them (Celery's
    `AsyncResult.get`, for scripts: `wtm run submit --no-wait` now, this later). Exit status
    1 when one did not complete; 4 when the time ran out first (the runs go on)."""
    deadline = time.monotonic() + timeout
    with obj.client() as client:
        runs = [
            client.wait(r, timeout=max(deadline - time.monotonic(), 0.0), raise_on_failure=False)
            for r in run_ids
        ]
    if len(runs) == 1:
        obj.out(runs[0], render.run_summary(runs[0]))
    else:
        obj.out(runs, render.runs_table(runs))
    if any(r.state != "COMPLETED" for r in runs):
        sys.exit(1)


@run.command("cancel")
@click.argument("run_id", required=False)
@click.option("--reason", default="", help="shown as the run's error")
@click.option("--batch", "batch_id", default="", help="instead: every unfinished run of a batch")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="instead: ... with this label"
)
@click.option("--schedule", default="", help="instead: ... this schedule started")
@click.option("--task", "task_id", default="", help="instead: ... of this task (or task@version)")
@click.option(
    "--pipeline", "pipeline_id", default="", help="instead: ... of this pipeline (or @version)"
)
@click.pass_obj
def run_cancel(
    obj: Ctx,
    run_id: str | None,
    reason: str,
    batch_id: str,
    labels: tuple[str, ...],
    schedule: str,
    task_id: str,
    pipeline_id: str,
) -> None:
    """Cancel a run: queued steps are dropped and running ones stopped. A run that has
    already ended is left as it ended (cancelling is idempotent, so a retried cancel is
    harmless); a note on stderr says so. Without RUN_ID, every unfinished run the filters
    match (all of them): --batch, --label, --schedule, --task, --pipeline."""
    wanted = run_or_filters(run_id, batch_id, labels, schedule, task_id, pipeline_id)
    with obj.client() as client:
        if not run_id:
            done = client.cancel_runs(
                reason, batch_id=batch_id, labels=wanted, task_id=task_id, pipeline_id=pipeline_id
            )
            obj.out(done, render.cancelled_runs(done))
            return
        r = client.cancel(run_id, reason)
    obj.out(r, render.run_summary(r))
    if r.state != State.CANCELLED:
        ended = r.state.value
        click.echo(f"run {run_id} had already ended {ended}: nothing was cancelled", err=True)


STATES = [s.value for s in State]


@run.command("list")
@click.option(
    "--state",
    "--status",  # the original system's name (worker_cli executions --status failed)
    "state",
    type=click.Choice(STATES, case_sensitive=False),
    default=None,
)
@click.option(
    "--pipeline", "pipeline_id", default="", help="only runs of this pipeline (or pipeline@version)"
)
@click.option(
    "--task", "task_id", default="", help="only single-task runs of this task (or @version)"
)
@click.option("--batch", "batch_id", default="", help="only runs of this batch")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="only runs with this label"
)
@click.option("--schedule", default="", help="only runs this schedule started")
@click.option(
    "--since",
    callback=parsed_by(parse_moment),
    help="only runs created since: a time ago (2h, 3d) or an ISO time",
)
@click.option(
    "--until",
    callback=parsed_by(parse_moment),
    help="only runs created before: a time ago (30m) or an ISO time",
)
@click.option(
    "--awaiting-signal",
    is_flag=True,
    help="only runs with a step waiting for a signal now (wtm run signal sends it)",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.pass_obj
def run_list(
    obj: Ctx,
    state: str | None,
    pipeline_id: str,
    task_id: str,
    batch_id: str,
    labels: tuple[str, ...],
    schedule: str,
    since: datetime | None,
    until: datetime | None,
    awaiting_signal: bool,
    limit: int,
) -> None:
    """List runs, newest first: the execution history."""
    wanted = dict(label_of(text) for text in labels)
    if schedule:
        wanted["wtm.schedule"] = schedule
    with obj.client() as client:
        runs = list(
            client.list_runs(
                state=(state or "").upper(),
                pipeline_id=pipeline_id,
                task_id=task_id,
                batch_id=batch_id,
                created_after=since,
                created_before=until,
                page_size=min(limit, 1000),
                limit=limit,
                labels=wanted,
                awaiting_signal=awaiting_signal,
            )
        )
    obj.out(runs, render.runs_table(runs))


@cli.group()
def executor() -> None:
    """The executor fleet."""


@executor.command("list")
@click.pass_obj
def executor_list(obj: Ctx) -> None:
    """List executors: connected, draining, and recently lost ones."""
    with obj.client() as client:
        executors = client.list_executors()
    obj.out(executors, render.executors_table(executors))


@executor.command("pause")
@click.argument("executor_id")
@click.option("--reason", default="", help="why, shown with the executor")
@click.pass_obj
def executor_pause(obj: Ctx, executor_id: str, reason: str) -> None:
    """Give EXECUTOR_ID no new step (a cordon), on every scheduler replica within a second,
    until `wtm executor resume`: its running steps go on, other executors take the work."""
    with obj.client() as client:
        pause = client.pause_executor(executor_id, reason)
    obj.out(pause, f"executor {render.escape(executor_id)} paused; it is given nothing new")


@executor.command("resume")
@click.argument("executor_id")
@click.pass_obj
def executor_resume(obj: Ctx, executor_id: str) -> None:
    """Give a paused EXECUTOR_ID work again, and end its rest if it rests (steps kept failing
    in it): it takes work again within about a second. Should its steps fail in it again, it
    rests twice as long as before."""
    with obj.client() as client:
        done = client.resume_executor(executor_id)
        resting = [] if done else [
            e for e in client.list_executors() if e.executor_id == executor_id and e.resting()
        ]  # fmt: skip
    again = "it takes work again within about a second"
    text = {
        (True, False): f"executor {executor_id} resumed",
        (False, True): f"executor {executor_id}'s rest is ended: {again}",
        (True, True): f"executor {executor_id} resumed and its rest ended: {again}",
        (False, False): f"executor {executor_id} was not paused or resting",
    }[(done.resumed, done.rest_ended)]
    found: dict[str, object] = {
        "executor_id": executor_id,
        "resumed": done.resumed,
        "rest_ended": done.rest_ended,
    }
    if resting and resting[0].resting_until is not None:  # it rests, too old to be told
        until = resting[0].resting_until
        found["resting_until"] = until  # as every other time in the JSON output
        text = (
            f"executor {executor_id} was not paused; it rests until {until:%H:%M:%S} UTC "
            f"because steps kept failing in it (last: {resting[0].last_slot_error or '?'}), "
            "and is too old to be told its rest is over: restart it to end the rest sooner"
        )
    obj.out(found, text)
