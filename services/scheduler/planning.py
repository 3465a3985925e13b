"""Planning a run: what to run (resolved in the run's namespace), checking its input, and
the run and its Redis submission as they are created. Pure but for the catalog look-up;
``RunService`` (runs.py) accepts, waits and reports; ``submit_checks`` checks a request's
small fields first."""

from __future__ import annotations

import dataclasses
import functools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from common import jsondoc, telemetry
from common.errors import FailedPrecondition, InvalidArgument
from services.common import auth, conditions, fan_out, mapping, signals
from services.common.mapping import MissingValue
from services.scheduler import (
    concurrency_groups,
    input_check,
    queue_names,
    result_cache,
    run_options,
    step_inputs,
    tracing,
)
from services.scheduler.models import Run, StepRun, run_hash_fields
from services.scheduler.queue_records import QueuedStep, Submission
from services.scheduler.task_catalog import ResolvedTask, TaskCatalog, retry_fields

MAX_INPUT_BYTES = 1024 * 1024
# task.json concurrency_strategy -> the run dispatch.lua cancels of those holding a place and
# the one asking ("wait": none, the step waits)
STRATEGY_LOSERS = {"cancel_in_progress": "oldest", "cancel_newest": "newest"}


@dataclass(frozen=True)
class SubmitRequest:
    """A run to start, as the user asked for it."""

    task: str = ""
    pipeline: str = ""
    input_json: str = "{}"
    priority: int = 0
    request_id: str = ""
    labels: dict[str, str] | None = None
    wait_seconds: float = 0.0  # > 0: return once the run has finished, or after this long
    namespace: str = auth.DEFAULT_NAMESPACE  # the run's: its tasks, pipeline and queues
    cache: bool | None = None  # None: as the pipeline says (a task run: no caching)
    run_timeout_seconds: float = 0.0  # > 0: the run ends TIMED_OUT this long after its start
    start_delay_seconds: float = 0.0  # > 0: its first steps are queued this long after acceptance
    reuse_from: str = ""  # an ended run whose completed steps this one takes over


@dataclass
class PlannedStep:
    """A step about to be submitted."""

    step_id: str
    task: ResolvedTask
    deps: list[str]
    dependents: list[str]
    timeout: int
    retries: int
    mapping: dict[str, Any]
    index: int
    all_steps: frozenset[str] = frozenset()
    output_ids: dict[str, str] = field(default_factory=dict)
    namespace: str = auth.DEFAULT_NAMESPACE
    queue_key: str = ""  # the queue variant its attempts wait on ("": the task's)
    optional: frozenset[str] = frozenset()  # run-input fields the pipeline calls optional
    cache: bool = False  # reuse an earlier output of this task digest on the same input
    log_level: str = ""  # the task logger's level ("": the task's own)
    max_parallel: int = 0  # the run's limit on steps in flight (0: none)
    retry_backoff_ms: tuple[int, int] | None = None  # the step's own (None: its task's)
    skip_if: tuple[conditions.Condition, ...] = ()  # on the run's input: skipped if one holds
    # on upstream outputs: decided by the scripts where the step becomes ready (lib.lua)
    skip_on: tuple[conditions.Condition, ...] = ()
    # where later steps' skip_on read this step's output (sent to the executor: a view of them
    # comes back with an output stored by reference)
    condition_paths: tuple[str, ...] = ()
    for_each: fan_out.ForEach | None = None  # run once per item of an upstream list (lib.lua)
    await_signal: signals.AwaitSignal | None = None  # waits for a signal once ready (lib.lua)

    @property
    def input_id(self) -> str:
        return f"input_{self.index:03d}"

    @property
    def output_id(self) -> str:
        return f"output_{self.index:03d}"

    @property
    def reads(self) -> list[str]:
        """The steps whose outputs this step's input is made of."""
        sources = [
            mapping.parse(e, set(self.all_steps), k).source
            for k, e in self.mapping.items()
            if mapping.is_expression(e)
        ]
        if self.for_each:
            sources.append(self.for_each.path.source)
        return list(dict.fromkeys([*self.deps, *(s for s in sources if s)]))

    @functools.cached_property
    def spec(self) -> QueuedStep:
        t = self.task
        return QueuedStep(
            step_id=self.step_id,
            deps=self.deps,
            dependents=self.dependents,
            fields={
                "task_id": t.task_id,
                "task_version": t.version,
                "digest": t.digest,
                "entry_point": t.entry_point,
                "queue": queue_names.in_namespace(self.namespace, self.queue_key or t.queue_key),
                "namespace": self.namespace,
                "timeout": str(self.timeout),
                "max_retries": str(self.retries),
                "input_id": self.input_id,
                "output_id": self.output_id,
                "mapping": json.dumps(self.mapping),
                **({"optional": json.dumps(sorted(self.optional))} if self.optional else {}),
                "accepts": json.dumps(step_inputs.accepted_fields(t.input_schema)),
                "reads": json.dumps(self.reads),
                "read_output_ids": json.dumps(self.output_ids),
                **({"cache": "1"} if self.cache else {}),
                **(
                    {"batch": str(t.batching[0]), "batch_wait": str(t.batching[1])}
                    if t.batching[0]
                    else {}
                ),
                **(
                    {"rate": repr(t.rate_interval_ms), "rate_key": f"{self.namespace}/{t.task_id}"}
                    if t.rate_interval_ms
                    else {}
                ),
                **({"rate_burst": str(t.rate_burst)} if t.rate_burst > 1 else {}),
                **retry_fields(self.retry_backoff_ms or t.retry_backoff_ms),
                **(
                    {"conc": str(t.concurrency_limit), "conc_key": f"{self.namespace}/{t.task_id}"}
                    if t.concurrency_limit
                    else {}
                ),
                # which run gives up a place when every place is held (dispatch.lua)
                **(
                    {"conc_strategy": STRATEGY_LOSERS[t.concurrency_strategy]}
                    if t.concurrency_limit and t.concurrency_strategy in STRATEGY_LOSERS
                    else {}
                ),
                **({"log_level": self.log_level} if self.log_level else {}),
                **({"max_parallel": str(self.max_parallel)} if self.max_parallel else {}),
                **({"skip_on": conditions.lua_fields(self.skip_on)} if self.skip_on else {}),
                **(
                    {"condition_paths": json.dumps(self.condition_paths)}
                    if self.condition_paths
                    else {}
                ),
                **({"for_each": self.for_each.lua_fields()} if self.for_each else {}),
                **({"signal": self.await_signal.lua_fields()} if self.await_signal else {}),
            },
        )


@dataclass
class Plan:
    """The steps of a run and where its output comes from."""

    steps: list[PlannedStep]
    sinks: list[str]
    priority: int
    task_id: str = ""
    pipeline_id: str = ""
    pipeline_version: str = ""
    input_validation: dict[str, Any] = field(default_factory=dict)
    run_timeout_seconds: int = 0  # the pipeline's global_settings.run_timeout (0: none)

    @functools.cached_property
    def reads(self) -> list[run_options.StepReads]:
        """What each step reads of a run's input."""
        step_ids = {p.step_id for p in self.steps}
        found = []
        for p in self.steps:
            paths = [
                mapping.parse(e, step_ids, k)
                for k, e in p.mapping.items()
                if mapping.is_expression(e)
            ]
            if p.for_each:
                paths.append(p.for_each.path)
            tested = [c.parsed.segments for c in p.skip_if]
            in_layers = {
                str(t[1]) for t in tested if len(t) > 1 and t[0] in step_inputs.PARAMETER_SOURCES
            }
            found.append(
                run_options.StepReads(
                    p.step_id,
                    frozenset({str(x.segments[0]) for x in paths if not x.source})
                    | {str(t[0]) for t in tested},  # what its skip_if reads is read too
                    frozenset(step_inputs.accepted_fields(p.task.input_schema)) | in_layers,
                    bool(p.mapping),
                )
            )
        return found


_last_id_us = 0


def new_run_id() -> str:
    """A run id that sorts by creation: 16 hex digits of a strictly increasing microsecond
    clock, then 16 random ones. Runs submitted together keep their order in a queue (equal
    scores fall back to the member's order) and in MongoDB's index."""
    global _last_id_us
    _last_id_us = max(_last_id_us + 1, time.time_ns() // 1000)
    return f"{_last_id_us:016x}{secrets.token_hex(8)}"


def whole_ms(moment: datetime) -> datetime:
    """``moment`` to the millisecond, as Redis keeps times (the run reads the same from both)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_input(text: str) -> dict[str, object]:
    if len(text.encode()) > MAX_INPUT_BYTES:
        raise InvalidArgument(f"is over {MAX_INPUT_BYTES} bytes", field="input_json")
    doc = jsondoc.loads(text or "{}", field="input_json")
    if not isinstance(doc, dict):
        raise InvalidArgument("must be a JSON object", field="input_json")
    return doc


async def plan_run(catalog: TaskCatalog, req: SubmitRequest) -> Plan:
    """Resolve what to run (the same for every input of a batch)."""
    ns = req.namespace
    if req.task:
        task = await catalog.resolve(ns, req.task, field="task")
        step_id = task.task_id.rsplit("/", 1)[-1]  # "owner/task_id": a shared one
        step = PlannedStep(
            step_id,
            task,
            [],
            [],
            task.timeout_seconds,
            task.max_retries,
            {},
            1,
            frozenset([step_id]),
            namespace=ns,
            cache=bool(req.cache),
        )
        return Plan([step], [step.step_id], task.priority, task_id=task.task_id)
    pipeline = await catalog.resolve_pipeline(ns, req.pipeline, field="pipeline")
    if not pipeline.enabled:
        raise FailedPrecondition(
            f"{pipeline.pipeline_id}@{pipeline.version} is disabled", field="pipeline"
        )
    declared = pipeline.input_validation.get("optional_fields")
    optional = frozenset(
        f for f in (declared if isinstance(declared, list) else []) if isinstance(f, str)
    )
    planned = [
        PlannedStep(
            s.step_id,
            s.task,
            s.depends_on,
            [d.step_id for d in pipeline.steps if s.step_id in d.depends_on],
            s.timeout_seconds,
            s.retry_count,
            s.input_mapping,
            i + 1,
            frozenset(x.step_id for x in pipeline.steps),
            namespace=ns,
            queue_key=s.queue_key,
            optional=optional,
            cache=result_cache.step_caches(req.cache, s.cache, pipeline.enable_caching),
            log_level=pipeline.log_level,
            max_parallel=pipeline.max_parallel_tasks,
            retry_backoff_ms=s.retry_backoff_ms,
            skip_if=tuple(c for c in s.skip_if if not c.source),
            skip_on=tuple(c for c in s.skip_if if c.source),
            for_each=s.for_each,
            await_signal=s.await_signal,
        )
        for i, s in enumerate(pipeline.steps)
    ]
    output_ids = {p.step_id: p.output_id for p in planned}
    # where conditions and for_each lists read outputs: an output by reference brings a view
    reading = [c.parsed for p in planned for c in p.skip_on]
    reading += [p.for_each.path for p in planned if p.for_each]
    for p in planned:
        p.output_ids = {src: output_ids[src] for src in p.reads}
        p.condition_paths = conditions.output_paths(reading, p.step_id)
    sinks = [p.step_id for p in planned if not p.dependents]
    priority = max(p.task.priority for p in planned)
    return Plan(
        planned,
        sinks,
        priority,
        pipeline_id=pipeline.pipeline_id,
        pipeline_version=pipeline.version,
        input_validation=pipeline.input_validation,
        run_timeout_seconds=pipeline.run_timeout_seconds,
    )


def check_input(plan: Plan, doc: dict[str, Any]) -> run_options.RunOptions:
    """Check an input document before anything is stored: the pipeline's
    input_validation; what every step maps from the run's input (so a later step cannot
    fail mid-run for a field the input never had, unless that field is optional); then each
    first step's input against its task's input_schema. Returns what the scheduler itself
    does with the input (``RunOptions``), read once here for ``new_run``: the steps its
    skip_if skips on this input among it (they are not checked)."""
    input_check.check_pipeline_input(plan.input_validation, doc)
    options = run_options.RunOptions()
    if plan.pipeline_id:
        options = run_options.options_of(doc)
        run_options.check_every_key_is_read(doc, plan.reads)
        skipped = {p.step_id: conditions.skip_reason(p.skip_if, doc) for p in plan.steps}
        options = dataclasses.replace(
            options, skipped=tuple((k, v) for k, v in skipped.items() if v)
        )
    step_ids = {p.step_id for p in plan.steps}
    skips = dict(options.skipped)
    for p in plan.steps:
        if not p.deps or p.step_id in skips:
            continue  # a first step's whole input is resolved below
        for key, expr in p.mapping.items():
            if not mapping.is_expression(expr):
                continue
            path = mapping.parse(expr, step_ids, key)
            if path.source or step_inputs.absent_optional(path, p.optional, doc):
                continue  # an upstream output, or an optional field this run did not give
            try:
                mapping.evaluate(path, doc)
            except MissingValue as exc:
                raise InvalidArgument(f"step {p.step_id!r}: {exc}", field="input_json") from exc
    for p in plan.steps:
        if p.deps or p.step_id in skips:
            continue  # a later step's input exists only once its upstream steps ran
        try:
            first_input = (
                step_inputs.resolve(p.mapping, step_ids, doc, {}, {}, p.input_id, p.optional)[0]
                if p.mapping
                else doc
            )
        except MissingValue as exc:
            raise InvalidArgument(str(exc), field="input_json") from exc
        if p.for_each:  # on a list in the input: checked with its first item, if any
            items = fan_out.check_input(p.for_each, doc, p.step_id)
            if not items:
                continue
            first_input = {**first_input, p.for_each.field: items[0]}
        accepts = step_inputs.accepted_fields(p.task.input_schema)
        first_input, _ = step_inputs.with_parameters(
            first_input, doc, p.step_id, accepts, p.input_id
        )
        schema = signals.schema_before(p.task.input_schema, p.await_signal)
        input_check.check_step_input(p.step_id, schema, first_input)
    groups = concurrency_groups.of_run([p for p in plan.steps if p.step_id not in skips], doc)
    return dataclasses.replace(options, conc_groups=tuple(groups.items())) if groups else options


def new_run(
    req: SubmitRequest,
    plan: Plan,
    doc: dict[str, Any],
    request_key: str,
    batch_id: str = "",
    trace: telemetry.Parent | None = None,
    trace_link: str = "",
    options: run_options.RunOptions = run_options.RunOptions(),
) -> tuple[Run, Submission]:
    """A new run of ``plan`` on ``doc`` (for history), and its submission (for Redis)."""
    skips = dict(options.skipped)
    now = whole_ms(datetime.now(UTC))  # as Redis keeps it (created_ms), and MongoDB
    delay, limit = req.start_delay_seconds, req.run_timeout_seconds or plan.run_timeout_seconds
    # when it may start and when it times out, as Redis will keep them (whole ms); most runs
    # have neither, and pay nothing for them
    start = whole_ms(now + timedelta(seconds=delay)) if delay or limit else now
    run = Run(
        run_id=new_run_id(),
        state="QUEUED",
        input_json=json.dumps(doc),
        priority=req.priority or plan.priority,
        task_id=plan.task_id,
        task_version=plan.steps[0].task.version if plan.task_id else "",
        pipeline_id=plan.pipeline_id,
        pipeline_version=plan.pipeline_version,
        labels=dict(req.labels or {}),
        request_id=req.request_id if request_key else "",
        batch_id=batch_id,
        trace_id=f"{trace.trace_id:032x}" if trace else "",
        submitted_by=auth.current().key_id,
        namespace=req.namespace,
        created_at=now,
        scheduled_at=start if delay else None,
        deadline_at=start + timedelta(seconds=limit) if limit else None,
        cache=req.cache,
        steps=[
            StepRun(
                step_id=p.step_id,
                task_id=p.task.task_id,
                task_version=p.task.version,
                state="SKIPPED" if p.step_id in skips else "PENDING",
                input_id=p.input_id,
                output_id=p.output_id,
                error=skips.get(p.step_id, ""),
            )
            for p in plan.steps
        ],
    )
    run_fields = {**run_hash_fields(vars(run)), "sinks": json.dumps(plan.sinks)}
    specs = [  # a skipped step's "skip" (submit_run.lua) rides in its plan, for a rebuild
        dataclasses.replace(p.spec, fields={**p.spec.fields, "skip": skips[p.step_id]})
        if p.step_id in skips
        else p.spec
        for p in plan.steps
    ]
    max_parallel = 1 if options.one_at_a_time else plan.steps[0].max_parallel
    if max_parallel:
        run_fields["max_parallel"] = str(max_parallel)
        if max_parallel != plan.steps[0].max_parallel:  # this run's own limit
            specs = [
                dataclasses.replace(x, fields={**x.fields, "max_parallel": str(max_parallel)})
                for x in specs
            ]
    if req.cache is not None:  # what a rerun repeats
        run_fields["cache"] = "1" if req.cache else "0"
    if options.include_metadata:
        run_fields["output_metadata"] = "1"
    if options.conc_groups:  # submit_run.lua appends each to its step's conc_key
        run_fields["conc_groups"] = json.dumps(dict(options.conc_groups))
    if trace is not None:  # the run span, recorded at the end: a child of the submit call,
        run_fields["trace_id"] = run.trace_id  # or its trace's root (telemetry.run_parents)
        run_fields["trace_parent"] = trace.header()
        run_fields["run_span"] = f"{telemetry.new_span_id():016x}"
        if not trace.span_id and trace_link:
            run_fields["trace_link"] = trace_link
        parent = tracing.span_parent(run.trace_id, run_fields["run_span"])
        specs = [dataclasses.replace(x, fields={**x.fields, "span_parent": parent}) for x in specs]
    not_before = int(start.timestamp() * 1000) if run.scheduled_at else 0  # a delayed start
    return run, Submission(run.run_id, run_fields, specs, request_key, not_before_ms=not_before)
