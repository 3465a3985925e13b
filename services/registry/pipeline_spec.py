"""Pipeline definitions: parse the JSON config, check the DAG, pin task versions.

A config is either ``{"pipelines": {id: pipeline, ...}, "global_settings": {...}}`` or one
pipeline object with a ``pipeline_id``. A problem is INVALID_ARGUMENT naming the path of the
offending field, e.g. ``pipelines.face.steps[2].depends_on``; a config's problems are named
all at once (``common.problems``), except those that follow from one already named: the
graph of a pipeline is checked once its steps parse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from common import retry_backoff
from common.errors import InvalidArgument, NotFound, WtmError
from common.problems import Problems, all_at_once, unknown_key
from services.common import conditions, fan_out, mapping, signals
from services.registry.manifest import MAX_RETRIES, MAX_TIMEOUT_SECONDS, SEMVER

PIPELINE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
QUEUE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")  # as task.json's queue
STEP_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
MAX_STEPS = 500  # per pipeline (stated in registry_service.proto and the README)


@dataclass(frozen=True)
class PinnedTask:
    """What pinning learns about a task version from the registry."""

    version: str
    digest: str
    queue: str
    timeout: int
    max_retries: int
    concurrency_key: str = ""  # task.json's: its limit holds per value of this input field


@dataclass(frozen=True)
class StepSpec:
    """One step of a pipeline."""

    step_id: str
    task_id: str
    task_version: str = ""  # as asked ("" = latest) until pinned
    timeout: int | None = None
    retry_count: int | None = None
    depends_on: tuple[str, ...] = ()
    parallel_group: str = ""
    input_mapping: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    queue: str = ""
    cache: bool | None = None  # None: as the pipeline's enable_caching
    # The step's own retry backoff in seconds (first, longest), over its task's (None: the
    # task's own, else the scheduler's policy): "retry_backoff", "retry_backoff_max".
    retry_backoff: float | None = None
    retry_backoff_max: float | None = None
    # Conditions on the run's input or an upstream output under which the step is skipped
    # (services.common.conditions), as {path, op, value} objects; none: it always runs.
    skip_if: list[dict[str, Any]] = field(default_factory=list)
    # Runs the task once per item of a list an upstream step returned ({field: expression};
    # services.common.fan_out), each item given as that input field; {}: it runs once.
    for_each: dict[str, str] = field(default_factory=dict)
    # Waits, once its dependencies are done, for a signal sent to it ({field,
    # timeout_seconds}; services.common.signals), given to its task as that input field.
    await_signal: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline; after ``pin`` every step names an exact task version and digest."""

    pipeline_id: str
    version: str
    name: str
    description: str
    steps: tuple[StepSpec, ...]
    input_validation: dict[str, Any] = field(default_factory=dict)
    output_format: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    max_parallel_tasks: int = 0  # 0: no limit of its own
    enable_caching: bool = False
    log_level: str = ""  # "": each task's own
    run_timeout: int = 0  # each run's time limit in seconds, unless its submit sets one (0: none)

    def to_json(self) -> str:
        return json.dumps(asdict(self))  # keeps the author's order of steps and mappings

    @classmethod
    def from_json(cls, text: str) -> PipelineSpec:
        d = json.loads(text)
        steps = tuple(
            StepSpec(**{**s, "depends_on": tuple(s["depends_on"])}) for s in d.pop("steps")
        )
        return cls(**d, steps=steps)

    @property
    def sinks(self) -> list[str]:
        """Steps no other step depends on: their outputs make the run's output."""
        used = {d for s in self.steps for d in s.depends_on}
        return [s.step_id for s in self.steps if s.step_id not in used]

    def dependents(self, step_id: str) -> list[str]:
        return [s.step_id for s in self.steps if step_id in s.depends_on]


def _err(where: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, field=where)


def _opt_int(value: Any, where: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _err(where, f"must be an integer from {low} to {high}, got {value!r}")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(where, f"must be an object, got {type(value).__name__}")
    return value


# Every key a config may hold: each is acted on, or listed in KEPT_ONLY with what becomes of
# it (a warning in the registration's answer). Any other key is refused, naming its path.
GLOBAL_KEYS = {
    "default_timeout", "default_retry_count", "max_retries", "max_parallel_tasks",
    "enable_caching", "log_level", "run_timeout",
}  # fmt: skip
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_PARALLEL_TASKS = 10_000
MAX_RUN_TIMEOUT_SECONDS = 30 * 86400  # as SubmitRunRequest.run_timeout's
PIPELINE_KEYS = {
    "pipeline_id", "id", "name", "description", "version", "steps", "input_validation",
    "output_format", "metadata", "enabled", "global_settings",
}  # fmt: skip
STEP_KEYS = {
    "step_id", "task_id", "timeout", "retry_count", "depends_on", "parallel_group",
    "input_mapping", "queue", "cache", "retry_backoff", "retry_backoff_max", "skip_if",
    "for_each", "await_signal",
}  # fmt: skip
VALIDATION_KEYS = {"required_fields", "optional_fields", "supported_formats"}
KEPT_ONLY = {
    "output_format": "kept as documentation: the run's output is its last step's output "
    "(or an object of every last step's output)",
    "input_processors": "not acted on: tasks read their inputs themselves (paths and "
    "artifact URIs are fetched for them)",
    "output_processors": "not acted on: a run's output is its steps' JSON",
}
TOP_KEEPS = ("input_processors", "output_processors")  # of the original system's configs


def _unknown(doc: dict[str, Any], known: set[str], where: str, problems: Problems) -> None:
    for key in sorted(k for k in doc if k not in known):
        path = f"{where}.{key}" if where else key
        problems.add(_err(path, unknown_key(key, known)))


def config_warnings(doc: Any, problems: Problems | None = None) -> list[str]:
    """Note each config key the registry does not know in ``problems`` (INVALID_ARGUMENT
    naming its path; without ``problems``, raise them); return one warning per key it keeps
    without acting on."""
    if problems is None:
        return all_at_once(config_warnings, doc)
    if not isinstance(doc, dict):
        return []
    warnings = []
    settings = doc.get("global_settings")
    if isinstance(settings, dict):
        _unknown(settings, GLOBAL_KEYS, "global_settings", problems)
    warnings += [f"{k}: {KEPT_ONLY[k]}" for k in TOP_KEEPS if k in doc]
    if "pipelines" in doc:
        _unknown(doc, {"pipelines", "global_settings", *TOP_KEEPS}, "", problems)
        pipelines = doc["pipelines"] if isinstance(doc["pipelines"], dict) else {}
        items = [(f"pipelines.{pid}", p) for pid, p in pipelines.items()]
    else:
        items = [("", doc)]
    for where, p in items:
        if not isinstance(p, dict):
            continue
        _unknown(p, PIPELINE_KEYS, where, problems)
        prefix = f"{where}." if where else ""
        if isinstance(p.get("global_settings"), dict):
            _unknown(p["global_settings"], GLOBAL_KEYS, f"{prefix}global_settings", problems)
        if isinstance(p.get("input_validation"), dict):
            _unknown(p["input_validation"], VALIDATION_KEYS, f"{prefix}input_validation", problems)
        steps = p.get("steps")  # not a list: parse_config names it
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if isinstance(step, dict):
                _unknown(step, STEP_KEYS, f"{prefix}steps[{i}]", problems)
        if p.get("output_format"):
            warnings.append(f"{prefix}output_format: {KEPT_ONLY['output_format']}")
    return warnings


def parse_config(doc: Any, only: str = "", problems: Problems | None = None) -> list[PipelineSpec]:
    """Parse a config document into validated (not yet pinned) pipelines.

    Without ``problems``, raise every problem found. With it, note them there and return the
    pipelines that parsed, for the caller to go on checking them (pinning) before it raises.
    A config that is not one at all (not an object, no pipelines) is refused at once.
    """
    if problems is None:
        return all_at_once(parse_config, doc, only)
    if not isinstance(doc, dict):
        raise _err("config", "must be a JSON object")
    settings = _dict(doc.get("global_settings"), "global_settings")
    if "pipelines" in doc:
        pipelines = _dict(doc["pipelines"], "pipelines")
        items = [(pid, p, f"pipelines.{pid}") for pid, p in pipelines.items()]
    elif "steps" in doc:
        pid = doc.get("pipeline_id") or doc.get("id")
        if not isinstance(pid, str):
            raise _err("pipeline_id", "is required for a single pipeline")
        items = [(pid, doc, "pipeline")]
    else:
        raise _err("config", "needs a 'pipelines' map or a single pipeline with 'steps'")
    if only:
        items = [i for i in items if i[0] == only]
        if not items:
            raise _err("pipeline_id", f"the config has no pipeline {only!r}")
    if not items:
        raise _err("pipelines", "is empty")
    specs = []
    for pid, p, where in items:
        own: dict[str, Any] = problems.take(_own_settings, p, where, fallback={})
        spec = problems.take(
            parse_pipeline, pid, p, {**settings, **own}, where, problems, fallback=None
        )
        if spec is not None:
            specs.append(spec)
    return specs


def _own_settings(doc: Any, where: str) -> dict[str, Any]:
    """A pipeline's own global_settings (over the config's)."""
    if where == "pipeline" or not isinstance(doc, dict):
        return {}  # a single pipeline's global_settings are the config's
    return _dict(doc.get("global_settings"), f"{where}.global_settings")


def parse_pipeline(
    pipeline_id: str,
    doc: Any,
    settings: dict[str, Any],
    where: str,
    problems: Problems | None = None,
) -> PipelineSpec | None:
    """One pipeline of a config; None when ``problems`` got any of it (without ``problems``,
    they are raised)."""
    if problems is None:
        return all_at_once(parse_pipeline, pipeline_id, doc, settings, where)
    start = len(problems)
    if not PIPELINE_ID.match(pipeline_id):
        problems.add(_err(where, f"pipeline id {pipeline_id!r} must be lower_snake_case"))
    doc = _dict(doc, where)
    inner_id = doc.get("pipeline_id")
    if inner_id is not None and inner_id != pipeline_id:
        problems.add(
            _err(f"{where}.pipeline_id", f"{inner_id!r} differs from the key {pipeline_id!r}")
        )
    version = problems.take(_version, doc, where, fallback="")
    options = _options(settings, problems)
    raw_steps: list[Any] = problems.take(_raw_steps, doc, where, fallback=[])
    defaults = (options or {}).get("default_timeout"), (options or {}).get("default_retries")
    steps = [
        problems.take(_parse_step, s, f"{where}.steps[{i}]", *defaults, problems, fallback=None)
        for i, s in enumerate(raw_steps)
    ]
    parsed = [s for s in steps if s is not None]
    if parsed and len(parsed) == len(steps):  # each step's place in the graph is known
        conditions_of = [s.get("skip_if") for s in raw_steps]  # each a dict: it parsed
        parsed = _check_graph(parsed, conditions_of, where, problems)
    validation: dict[str, Any] = problems.take(_input_validation, doc, where, fallback={})
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(_err(f"{where}.enabled", "must be true or false"))
    output_format: dict[str, Any] = problems.take(
        _dict, doc.get("output_format"), f"{where}.output_format", fallback={}
    )
    metadata: dict[str, Any] = problems.take(
        _dict, doc.get("metadata"), f"{where}.metadata", fallback={}
    )
    if not problems.ok_since(start) or options is None:
        return None
    return PipelineSpec(
        pipeline_id=pipeline_id,
        version=version,
        name=str(doc.get("name", pipeline_id)),
        description=str(doc.get("description", "")),
        steps=tuple(parsed),
        input_validation=validation,
        output_format=output_format,
        metadata=metadata,
        enabled=enabled,
        max_parallel_tasks=options["max_parallel"] or 0,
        enable_caching=options["caching"],
        log_level=options["log_level"],
        run_timeout=options["run_timeout"] or 0,
    )


def _version(doc: dict[str, Any], where: str) -> str:
    """The version: "version", else the original system's metadata.version, else 1.0.0."""
    meta = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    version = doc.get("version", meta.get("version", "1.0.0"))
    if not isinstance(version, str) or not SEMVER.match(version):
        raise _err(f"{where}.version", f"must be a semantic version, got {version!r}")
    if "version" in doc and "version" in meta and meta["version"] != version:
        raise _err(
            f"{where}.metadata.version",
            f"{meta['version']!r} differs from version {version!r}; give one of them",
        )
    return version


def _raw_steps(doc: dict[str, Any], where: str) -> list[Any]:
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _err(f"{where}.steps", "must be a non-empty list")
    if len(raw_steps) > MAX_STEPS:
        raise _err(f"{where}.steps", f"has {len(raw_steps)} steps; at most {MAX_STEPS}")
    return raw_steps


def _options(settings: dict[str, Any], problems: Problems) -> dict[str, Any] | None:
    """A pipeline's global settings, checked; None when one is refused (in ``problems``)."""
    start = len(problems)
    options = {
        "default_timeout": problems.take(
            _opt_int,
            settings.get("default_timeout"),
            "global_settings.default_timeout",
            1,
            MAX_TIMEOUT_SECONDS,
            fallback=None,
        ),
        "default_retries": problems.take(
            _opt_int,
            settings.get("default_retry_count", settings.get("max_retries")),
            "global_settings.max_retries",
            0,
            MAX_RETRIES,
            fallback=None,
        ),
        "max_parallel": problems.take(
            _opt_int,
            settings.get("max_parallel_tasks"),
            "global_settings.max_parallel_tasks",
            1,
            MAX_PARALLEL_TASKS,
            fallback=None,
        ),
        "run_timeout": problems.take(
            _opt_int,
            settings.get("run_timeout"),
            "global_settings.run_timeout",
            1,
            MAX_RUN_TIMEOUT_SECONDS,
            fallback=None,
        ),
        "caching": settings.get("enable_caching", False),
        "log_level": settings.get("log_level") or "",
    }
    if not isinstance(options["caching"], bool):
        problems.add(
            _err(
                "global_settings.enable_caching",
                f"must be true or false, got {options['caching']!r}",
            )
        )
    level = options["log_level"]
    if not isinstance(level, str) or (level and level.upper() not in LOG_LEVELS):
        problems.add(_err("global_settings.log_level", f"must be one of {', '.join(LOG_LEVELS)}"))
    else:
        options["log_level"] = level.upper()
    return options if problems.ok_since(start) else None


def _input_validation(doc: dict[str, Any], where: str) -> dict[str, Any]:
    validation = _dict(doc.get("input_validation"), f"{where}.input_validation")
    for key in ("required_fields", "optional_fields", "supported_formats"):
        value = validation.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _err(f"{where}.input_validation.{key}", "must be a list of strings")
    return validation


def _check_graph(
    steps: list[StepSpec], conditions_of: list[Any], where: str, problems: Problems
) -> list[StepSpec]:
    """Resolve and check the dependencies; then, when they hold, the graph they make: the
    mappings, the parallel groups, and each step's ``skip_if`` as the config gave it
    (``conditions_of``, in the steps' order: a condition may read an upstream output)."""
    start = len(problems)
    resolved = _resolve_dependencies(steps, where, problems)
    if problems.ok_since(start):
        problems.check(_check_acyclic, resolved, where)
    if problems.ok_since(start):
        _check_mappings(resolved, where, problems)
        _check_parallel_groups(resolved, where, problems)
        above = ancestors(resolved)
        resolved = [
            _with_conditions(s, conditions_of[i], i, resolved, above[s.step_id], where, problems)
            for i, s in enumerate(resolved)
        ]
        for i, s in enumerate(resolved):
            if s.for_each:
                problems.check(
                    fan_out.parse,
                    s.for_each,
                    {x.step_id for x in resolved},
                    above[s.step_id],
                    set(s.input_mapping),
                    f"{where}.steps[{i}].for_each",
                )
            if s.await_signal and s.for_each:
                problems.add(
                    _err(
                        f"{where}.steps[{i}].await_signal",
                        "a step that runs for each item cannot also await a signal; await "
                        "it in a step before",
                    )
                )
    return resolved


def _with_conditions(
    step: StepSpec,
    raw: Any,
    i: int,
    steps: list[StepSpec],
    upstream: set[str],
    where: str,
    problems: Problems,
) -> StepSpec:
    """``step`` with its skip_if (``raw``, as the config gave it) checked — a condition may
    read the output of a step ``upstream`` of it — and written as a list of conditions."""
    if raw is None:
        return step
    ids = {s.step_id for s in steps}
    found: tuple[conditions.Condition, ...] = problems.take(
        conditions.parse,
        raw,
        ids,
        f"{where}.steps[{i}].skip_if",
        upstream,
        step.step_id,
        fallback=(),
    )
    return replace(step, skip_if=[c.to_json() for c in found])


def _task_ref(doc: dict[str, Any], where: str) -> tuple[str, str]:
    ref = doc.get("task_id")
    if not isinstance(ref, str) or not ref:
        raise _err(f"{where}.task_id", "is required")
    task_id, _, task_version = ref.partition("@")
    if task_version and not SEMVER.match(task_version):
        raise _err(f"{where}.task_id", f"version {task_version!r} is not a semantic version")
    return task_id, task_version


def _parse_step(
    doc: Any,
    where: str,
    default_timeout: int | None,
    default_retries: int | None,
    problems: Problems,
) -> StepSpec | None:
    """One step. None when its place in the graph (its task, id, dependencies, group or
    mapping) is refused; a problem with its other fields is noted in ``problems`` and the
    step returned, so that the pipeline's graph is checked all the same."""
    doc = _dict(doc, where)
    start = len(problems)
    task_id, task_version = problems.take(_task_ref, doc, where, fallback=("", ""))
    step_id = doc.get("step_id", task_id.rsplit("/", 1)[-1])  # "namespace/task": a shared one
    if (step_id or "step_id" in doc) and (
        not isinstance(step_id, str) or not STEP_ID.match(step_id)
    ):
        problems.add(_err(f"{where}.step_id", f"must be a short identifier, got {step_id!r}"))
    depends_on = doc.get("depends_on") or []
    if isinstance(depends_on, str):
        depends_on = [depends_on]
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        problems.add(_err(f"{where}.depends_on", "must be a list of step ids"))
    group = doc.get("parallel_group") or ""
    if not isinstance(group, str):
        problems.add(_err(f"{where}.parallel_group", "must be a string"))
    mapping_doc: dict[str, Any] = problems.take(
        _dict, doc.get("input_mapping"), f"{where}.input_mapping", fallback={}
    )
    if not problems.ok_since(start):
        return None
    timeout = problems.take(
        _opt_int, doc.get("timeout"), f"{where}.timeout", 1, MAX_TIMEOUT_SECONDS, fallback=None
    )
    retries = problems.take(
        _opt_int, doc.get("retry_count"), f"{where}.retry_count", 0, MAX_RETRIES, fallback=None
    )
    queue = doc.get("queue") or ""  # overrides the task's queue for this step
    if not isinstance(queue, str) or (queue and not QUEUE.match(queue)):
        problems.add(
            _err(
                f"{where}.queue",
                f"must be 1-64 lowercase letters, digits, '_', '.', '-', got {queue!r}",
            )
        )
    cache = doc.get("cache")
    if cache is not None and not isinstance(cache, bool):
        problems.add(_err(f"{where}.cache", f"must be true or false, got {cache!r}"))
    backoff = problems.take(_retry_backoff, doc, where, fallback=None)
    for_each = doc.get("for_each") or {}
    if not isinstance(for_each, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in for_each.items()
    ):
        problems.add(_err(f"{where}.for_each", 'must be an object {"field": "$.step.list"}'))
        for_each = {}
    await_signal: dict[str, Any] = {}
    if doc.get("await_signal") is not None:
        found = problems.take(
            signals.parse,
            doc["await_signal"],
            set(mapping_doc),
            f"{where}.await_signal",
            fallback=None,
        )
        await_signal = found.to_json() if found else {}
    return StepSpec(
        step_id=step_id,
        task_id=task_id,
        task_version=task_version,
        timeout=timeout if timeout is not None else default_timeout,
        retry_count=retries if retries is not None else default_retries,
        depends_on=tuple(depends_on),
        parallel_group=group,
        input_mapping=mapping_doc,
        queue=queue,
        cache=cache,
        retry_backoff=backoff[0] if backoff else None,
        retry_backoff_max=backoff[1] if backoff else None,
        for_each=for_each,
        await_signal=await_signal,
    )


def _retry_backoff(doc: dict[str, Any], where: str) -> tuple[float, float] | None:
    """A step's own retry backoff, as task.json's (``common.retry_backoff``)."""
    try:
        return retry_backoff.of_manifest(doc)
    except retry_backoff.BadBackoff as exc:
        raise _err(f"{where}.{exc.key}", f"{exc}, got {doc.get(exc.key)!r}") from None


def _resolve_dependencies(steps: list[StepSpec], where: str, problems: Problems) -> list[StepSpec]:
    """Check ids are unique; accept a task id in depends_on when exactly one step runs it."""
    seen: dict[str, int] = {}
    for i, s in enumerate(steps):
        if s.step_id in seen:
            problems.add(
                _err(
                    f"{where}.steps[{i}].step_id",
                    f"duplicate step id {s.step_id!r} (also steps[{seen[s.step_id]}]); "
                    "give each step its own step_id",
                )
            )
        seen.setdefault(s.step_id, i)
    by_task: dict[str, list[str]] = {}
    for s in steps:
        by_task.setdefault(s.task_id, []).append(s.step_id)
    resolved = []
    for i, s in enumerate(steps):
        deps = []
        for d in s.depends_on:
            if d in seen:
                deps.append(d)
            elif len(by_task.get(d, [])) == 1:
                deps.append(by_task[d][0])
            elif d in by_task:
                problems.add(
                    _err(
                        f"{where}.steps[{i}].depends_on",
                        f"{d!r} is ambiguous: steps {by_task[d]} all run that task; name a step id",
                    )
                )
            else:
                problems.add(_err(f"{where}.steps[{i}].depends_on", f"unknown step {d!r}"))
        if s.step_id in deps:
            problems.add(_err(f"{where}.steps[{i}].depends_on", "a step cannot depend on itself"))
        resolved.append(replace(s, depends_on=tuple(dict.fromkeys(deps))))
    return resolved


def _check_acyclic(steps: list[StepSpec], where: str) -> None:
    """A depth-first search with its own stack (no recursion, whatever the pipeline's
    depth); names the first cycle found."""
    deps = {s.step_id: s.depends_on for s in steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for s in steps:
        if s.step_id in state:
            continue
        path = [s.step_id]
        todo = [iter(deps[s.step_id])]
        state[s.step_id] = 1
        while todo:
            d = next(todo[-1], None)
            if d is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(d) == 1:
                cycle = path[path.index(d) :] + [d]
                raise _err(f"{where}.steps", "dependency cycle: " + " -> ".join(cycle))
            elif d not in state:
                state[d] = 1
                path.append(d)
                todo.append(iter(deps[d]))


def topological(steps: tuple[StepSpec, ...] | list[StepSpec]) -> list[str]:
    """Step ids, every step after its dependencies (the steps must be acyclic)."""
    waiting = {s.step_id: len(s.depends_on) for s in steps}
    dependents: dict[str, list[str]] = {s.step_id: [] for s in steps}
    for s in steps:
        for d in s.depends_on:
            dependents[d].append(s.step_id)
    ready = [s.step_id for s in steps if not s.depends_on]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for x in dependents[node]:
            waiting[x] -= 1
            if waiting[x] == 0:
                ready.append(x)
    return order


def ancestors(steps: tuple[StepSpec, ...] | list[StepSpec]) -> dict[str, set[str]]:
    """Every step's transitive dependencies (in topological order: no recursion)."""
    deps = {s.step_id: s.depends_on for s in steps}
    found: dict[str, set[str]] = {}
    for node in topological(steps):
        found[node] = set(deps[node]).union(*(found[d] for d in deps[node]))
    return found


def _check_mappings(steps: list[StepSpec], where: str, problems: Problems) -> None:
    ids = {s.step_id for s in steps}
    above = ancestors(steps)
    for i, s in enumerate(steps):
        for key, expr in s.input_mapping.items():
            if not mapping.is_expression(expr):
                continue
            at = f"{where}.steps[{i}].input_mapping.{key}"
            path = problems.take(mapping.parse, expr, ids, at, fallback=None)
            if path and path.source and path.source not in above[s.step_id]:
                problems.add(
                    _err(
                        at,
                        f"{expr!r} reads step {path.source!r}, which is not upstream of "
                        f"{s.step_id!r}; add it to depends_on",
                    )
                )


def _check_parallel_groups(steps: list[StepSpec], where: str, problems: Problems) -> None:
    groups: dict[str, list[StepSpec]] = {}
    for s in steps:
        if s.parallel_group:
            groups.setdefault(s.parallel_group, []).append(s)
    for name, members in groups.items():
        first = set(members[0].depends_on)
        for m in members[1:]:
            if set(m.depends_on) != first:
                problems.add(
                    _err(
                        f"{where}.parallel_group",
                        f"group {name!r}: {m.step_id!r} depends on {sorted(m.depends_on)} "
                        f"but {members[0].step_id!r} on {sorted(first)}; members of a "
                        "parallel group must share their dependencies",
                    )
                )
                break


def config_path(doc: Any, pipeline_id: str) -> str:
    """Where a pipeline of a config is, as its problems name it."""
    in_map = isinstance(doc, dict) and "pipelines" in doc
    return f"pipelines.{pipeline_id}" if in_map else "pipeline"


def pin(
    spec: PipelineSpec,
    lookup: Callable[[str, str], PinnedTask],
    problems: Problems | None = None,
    where: str = "",
) -> PipelineSpec:
    """Fix every step to an exact task version and digest (``lookup`` raises NotFound, or
    InvalidArgument for a version that may not be pinned).

    Without ``problems``, the first refusal is raised; with it, each step's is noted there
    as INVALID_ARGUMENT naming the step's ``task_id`` (for the config is what is wrong), the
    pipeline being at ``where`` in its config (``config_path``).

    A disabled pipeline may name tasks that are not registered: it can never run (versions
    are immutable, so it stays disabled), and refusing it would refuse configs that park
    work in progress. Such steps stay unpinned (no version, no digest).
    """
    where = where or f"pipelines.{spec.pipeline_id}"
    steps = []
    looked_up: dict[tuple[str, str], PinnedTask | WtmError] = {}  # one lookup per version
    for i, s in enumerate(spec.steps):
        key = (s.task_id, s.task_version)
        if key not in looked_up:
            try:
                looked_up[key] = lookup(*key)
            except (NotFound, InvalidArgument) as exc:
                looked_up[key] = exc
        task = looked_up[key]
        if isinstance(task, NotFound) and not spec.enabled:
            steps.append(s)
            continue
        if isinstance(task, WtmError):
            if problems is None:
                raise task
            unknown = "uses a task that is not registered: " if isinstance(task, NotFound) else ""
            at = f"{where}.steps[{i}].task_id"
            problems.add(InvalidArgument(unknown + task.reason, field=at))
            continue
        if task.concurrency_key:
            if problems is None:
                _check_group_known_at_submit(spec, i, task.concurrency_key, where)
            else:
                problems.check(_check_group_known_at_submit, spec, i, task.concurrency_key, where)
        steps.append(
            replace(
                s,
                task_version=task.version,
                digest=task.digest,
                queue=s.queue or task.queue,  # the step's own queue wins
                timeout=s.timeout if s.timeout is not None else task.timeout,
                retry_count=s.retry_count if s.retry_count is not None else task.max_retries,
            )
        )
    return replace(spec, steps=tuple(steps))


def _check_group_known_at_submit(spec: PipelineSpec, i: int, key: str, where: str) -> None:
    """A task limited per value of an input field (task.json ``concurrency_key``) is grouped
    when a run is submitted (the scheduler's ``concurrency_groups``): its step may not map
    that field from another step's output, which is known only later."""
    s = spec.steps[i]
    expr = s.input_mapping.get(key)
    if not isinstance(expr, str) or not mapping.is_expression(expr):
        return
    at = f"{where}.steps[{i}].input_mapping.{key}"
    path = mapping.parse(expr, {x.step_id for x in spec.steps}, at)
    if path.source:
        raise _err(
            at,
            f"task {s.task_id} runs a limited number at once per value of its input's {key!r}, "
            f"read when a run is submitted; {expr!r} reads step {path.source!r}'s output, "
            "known only later: map it from the run's input",
        )
