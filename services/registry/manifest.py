"""``task.json``: the manifest of a task package, parsed and validated.

A problem is reported as INVALID_ARGUMENT naming the manifest field, e.g.
``task.json: priority: must be an integer from 1 to 10, got 11``; a manifest's problems are
named all at once (``common.problems``), but for one that only follows from another (a
``rate_burst`` whose ``rate_limit`` is refused).
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from common import jsondoc, rate_limits, retry_backoff
from common.errors import InvalidArgument
from common.problems import Problems, all_at_once, unknown_key
from tasks.base import schema

TASK_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)
ENTRY_POINT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
MAX_TIMEOUT_SECONDS = 24 * 3600
MAX_RETRIES = 20
MAX_MANIFEST_BYTES = 64 * 1024  # task.json, as JSON text


def _number(digits: str) -> str:
    """A numeric identifier as text that sorts by value: its length (two digits), then it."""
    return f"{len(digits):02d}{digits}"


def version_sort_key(version: str) -> str:
    """A string whose plain (byte) order is semver 2.0 precedence (§11): major, minor and
    patch compared as numbers of any size; a pre-release before its release; pre-release
    identifiers compared one by one, numbers as numbers and below words, words in ASCII
    order, and a shorter list first when the rest is equal. Build metadata is ignored.

    Each identifier is encoded so that byte order is its order: a number as "0" + its
    length + its digits, a word as "1" + the word; identifiers are joined with "!", which
    sorts below every identifier character; a release ends in "~", above "!" + anything."""
    m = SEMVER.match(version)
    if not m:
        raise InvalidArgument(f"not a semantic version: {version!r}", field="version")
    core = ".".join(_number(str(int(m.group(i)))) for i in (1, 2, 3))
    pre = m.group(4)
    if not pre:
        return f"{core}~"
    parts = [f"0{_number(p)}" if p.isdigit() else f"1{p}" for p in pre.split(".")]
    return f"{core}!" + "!".join(parts)


@dataclass(frozen=True)
class Manifest:
    """A validated task.json."""

    task_id: str
    version: str
    name: str
    description: str = ""
    author: str = ""
    category: str = "general"
    entry_point: str = "task.Task"
    requirements: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    queue: str = "default"
    priority: int = 5
    timeout: int = 300
    max_retries: int = 0
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] = field(default_factory=dict)
    executor_labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, int] = field(default_factory=dict)
    batching: dict[str, int] = field(default_factory=dict)  # {} or both keys, see _batching
    rate_limit: str = ""  # "N/s", "N/m" or "N/h" ("": none), see _rate_limit
    rate_burst: int = 1  # up to this many starts at once, see _rate_burst
    concurrency_limit: int = 0  # at most this many at once (0: none), _concurrency_limit
    concurrency_key: str = ""  # ...per value of this input field ("": for all), _concurrency_key
    concurrency_strategy: str = "wait"  # when every place is held, _concurrency_strategy
    # (first, longest) retry delay, seconds; None: the scheduler's (common/retry_backoff.py)
    retry_backoff: tuple[float, float] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def module_path(self) -> str:
        """The file the entry point's module lives in, relative to the package root."""
        return self.entry_point.rsplit(".", 1)[0].replace(".", "/") + ".py"


def _err(name: str, message: str, value: Any) -> InvalidArgument:
    return InvalidArgument(f"{message}, got {value!r}", field=f"task.json: {name}")


def _string(doc: dict[str, Any], name: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if value is None:
        raise InvalidArgument("is required", field=f"task.json: {name}")
    if not isinstance(value, str):
        raise _err(name, "must be a string", value)
    return value


def _int(doc: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = doc.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _err(name, f"must be an integer from {low} to {high}", value)
    return value


def _strings(doc: dict[str, Any], name: str) -> list[str]:
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _err(name, "must be a list of strings", value)
    return list(value)


def _requirements(doc: dict[str, Any]) -> list[str]:
    """PEP 508 requirements naming distributions on the executors' package index: a direct
    URL is refused here, as executors refuse to fetch one (``services.executor.requirements``)."""
    found = _strings(doc, "requirements")
    for i, text in enumerate(found):
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise _err(f"requirements[{i}]", f"not a PEP 508 requirement ({exc})", text) from None
        if req.url:
            raise _err(
                f"requirements[{i}]",
                "must name a distribution on the package index, not a URL",
                text,
            )
    return found


def _schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise _err(name, "must be a JSON Schema object", value)
    kind = value.get("type")
    allowed = {"object", "array", "string", "number", "integer", "boolean", "null"}
    if (
        kind is not None
        and not isinstance(kind, list)
        and (not isinstance(kind, str) or kind not in allowed)
    ):
        raise _err(f"{name}.type", f"must be one of {sorted(allowed)}", kind)
    props = value.get("properties", {})
    if not isinstance(props, dict):
        raise _err(f"{name}.properties", "must be an object", props)
    required = value.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise _err(f"{name}.required", "must be a list of strings", required)
    found = schema.schema_problems(value)
    if found:
        raise InvalidArgument(f"is not a valid JSON Schema: {found[0]}", field=f"task.json: {name}")
    return value


def _labels(doc: dict[str, Any], name: str) -> dict[str, str]:
    """Labels an executor must have to run the task, e.g. {"gpu": "true"}."""
    value = doc.get(name) or {}
    if not isinstance(value, dict):
        raise _err(name, "must be an object of KEY: VALUE strings", value)
    for k, v in value.items():
        if not isinstance(v, str) or not re.match(r"^[\w.-]+$", k) or not re.match(r"^[\w.-]*$", v):
            raise _err(f"{name}.{k}", "keys and values must be letters, digits, '_', '.', '-'", v)
    return dict(value)


# What a task may ask of its worker process (the executor grants it within its ceilings).
RESOURCE_KEYS = ("memory_mb", "cpu_seconds", "open_files", "file_size_mb", "disk_mb", "processes")


def _resources(doc: dict[str, Any], name: str) -> dict[str, int]:
    value = doc.get(name) or {}
    if not isinstance(value, dict):
        raise _err(name, f"must be an object of {', '.join(RESOURCE_KEYS)}", value)
    for key, amount in value.items():
        if key not in RESOURCE_KEYS:
            raise _err(f"{name}.{key}", f"is not one of {', '.join(RESOURCE_KEYS)}", key)
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= 2**40:
            raise _err(f"{name}.{key}", "must be a positive integer", amount)
    return dict(value)


MAX_BATCH_SIZE = 256
MAX_BATCH_WAIT_MS = 10_000


def _batching(doc: dict[str, Any], name: str) -> dict[str, int]:
    """Dynamic batching: steps of this task version that are ready at once (from any runs)
    are leased together, up to ``max_batch_size``, to one call of ``process_batch``; a batch
    short of that size waits up to ``max_wait_ms`` for more before it is leased."""
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(name, "must be an object {max_batch_size, max_wait_ms}", value)
    extra = sorted(set(value) - {"max_batch_size", "max_wait_ms"})
    if extra:
        raise _err(f"{name}.{extra[0]}", "is not one of max_batch_size, max_wait_ms", extra[0])
    limits = {"max_batch_size": (8, 1, MAX_BATCH_SIZE), "max_wait_ms": (0, 0, MAX_BATCH_WAIT_MS)}
    found = {}
    for key, (default, low, high) in limits.items():
        n = value.get(key, default)
        if isinstance(n, bool) or not isinstance(n, int) or not low <= n <= high:
            raise _err(f"{name}.{key}", f"must be an integer from {low} to {high}", n)
        found[key] = n
    return found


def _rate_limit(doc: dict[str, Any], name: str) -> str:
    """Celery's ``rate_limit``: at most N steps of this task start per second, minute or
    hour ("10/s", "100/m", "1000/h") in a namespace, over every executor and replica, one
    every period/N (a burst: ``_rate_burst``). A task that batches cannot have one: a batch
    is one call."""
    value = doc.get(name)
    if value is None:
        return ""
    try:
        found = rate_limits.normalized(value)
    except ValueError as exc:
        raise _err(name, str(exc), value) from None
    if doc.get("batching") is not None:
        raise _err(name, "cannot be combined with batching (a batch is one call)", value)
    return found


def _rate_burst(doc: dict[str, Any], name: str, rate_limit: str) -> int:
    """A token bucket's size over the rate limit: after a quiet spell up to B steps start at
    once, then one every period/N ("rate_limit": "60/m", "rate_burst": 10 — ten calls to a
    partner API at once, sixty a minute in all). 1, the default, spaces every start."""
    value = doc.get(name)
    if value is None:
        return 1
    try:
        found = rate_limits.burst(value)
    except ValueError as exc:
        raise _err(name, str(exc), value) from None
    if not rate_limit:
        raise _err(name, "needs a rate_limit (it is the rate limit's burst)", value)
    return found


def _retry_backoff(doc: dict[str, Any]) -> tuple[float, float] | None:
    try:
        return retry_backoff.of_manifest(doc)
    except retry_backoff.BadBackoff as exc:
        raise _err(exc.key, str(exc), doc.get(exc.key)) from None


def _concurrency_limit(doc: dict[str, Any], name: str) -> int:
    """Hatchet's concurrency limit (Celery has none): at most N steps of this task running
    at once in a namespace, over every executor and replica (0: no limit, the default) — for
    a task that holds a scarce thing (a licence, a GPU's memory, a partner API's sessions). A
    task that batches cannot have one: its executors lease a batch as one call."""
    if doc.get(name) is None:
        return 0
    found = _int(doc, name, 0, 1, rate_limits.MAX_CONCURRENCY)
    if doc.get("batching") is not None:
        raise _err(name, "cannot be combined with batching (a batch is one call)", found)
    return found


def _concurrency_key(doc: dict[str, Any], name: str, limit: int) -> str:
    """Hatchet's concurrency expression, by one input field: the concurrency limit holds per
    value of this top-level field of the task's input ("document_id": one at a time per
    document), read from each run's input when it is submitted ("": one limit for all)."""
    value = doc.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", value):
        raise _err(name, "must name a top-level field of the input (letters, digits, '_')", value)
    if not limit:
        raise _err(name, "needs a concurrency_limit (how many at once per value)", value)
    props = (doc.get("input_schema") or {}).get("properties") or {}
    if props and value not in props:
        raise _err(name, f"is not a property of input_schema (it has {', '.join(props)})", value)
    return value


# task.json "concurrency_strategy": what a step does when every place is held (Hatchet's
# GROUP_ROUND_ROBIN, CANCEL_IN_PROGRESS, CANCEL_NEWEST).
CONCURRENCY_STRATEGIES = {
    "wait": "the step waits for a place, in arrival order",
    "cancel_in_progress": "the oldest run holding a place is cancelled; the new one takes it",
    "cancel_newest": "the newest run is cancelled; those holding places go on",
}


def _concurrency_strategy(doc: dict[str, Any], name: str, limit: int) -> str:
    value = doc.get(name)
    if value is None:
        return "wait"
    if not isinstance(value, str) or value not in CONCURRENCY_STRATEGIES:
        raise _err(name, f"must be one of {', '.join(CONCURRENCY_STRATEGIES)}", value)
    if not limit:
        raise _err(name, "needs a concurrency_limit (the places a run may be cancelled for)", value)
    return str(value)


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level: classes, functions, assignments, imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


ENTRY_POINT_FIELD = "task.json: entry_point"


def check_package_entry_point(manifest: Manifest, files: dict[str, bytes]) -> None:
    """The package holds the entry point's module, and it defines the class."""
    if manifest.module_path not in files:
        raise InvalidArgument(
            f"entry point {manifest.entry_point!r} needs {manifest.module_path}, "
            "which the package does not contain",
            field=ENTRY_POINT_FIELD,
        )
    check_entry_point(manifest, files[manifest.module_path])


def check_entry_point(manifest: Manifest, source: bytes) -> None:
    """The entry point's module must parse and bind its class at the top level, so a
    package that cannot start is refused at registration, not when a run starts."""
    module, _, name = manifest.entry_point.rpartition(".")
    field = ENTRY_POINT_FIELD
    try:
        tree = ast.parse(source, filename=manifest.module_path)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        where = f"{manifest.module_path}, line {line}" if line else manifest.module_path
        raise InvalidArgument(f"{where} does not parse: {exc}", field=field) from exc
    if name not in _top_level_names(tree):
        hint = (
            f"; {manifest.entry_point!r} reads as module {module!r}, class {name!r}: write "
            "'module.Class', e.g. 'task.Task'"
            if name in {"py", "pyc"}
            else ""
        )
        raise InvalidArgument(
            f"{manifest.module_path} defines no {name!r} at its top level{hint}", field=field
        )


# Every key task.json may hold (all are acted on). Registration refuses any other, so a typo
# ("max_retires") is an error at once, not a silently ignored setting; stored manifests are
# read as they are.
KNOWN_KEYS = {
    "task_id", "name", "description", "version", "author", "category", "entry_point",
    "requirements", "tags", "queue", "priority", "timeout", "max_retries", "input_schema",
    "output_schema", "executor_labels", "resources", "batching", "rate_limit",
    "rate_burst", "concurrency_limit", "concurrency_key", "concurrency_strategy",
    "retry_backoff", "retry_backoff_max",
}  # fmt: skip


def _unknown_key(key: str) -> InvalidArgument:
    return InvalidArgument(
        unknown_key(key, KNOWN_KEYS, "task.json may hold"), field=f"task.json: {key}"
    )


def _identity(doc: dict[str, Any], problems: Problems) -> tuple[str, str, str, str]:
    """task_id, version, entry_point, queue: each checked, each refusal noted."""

    def matching(name: str, default: str | None, pattern: str, what: str) -> str:
        value = _string(doc, name, default)
        if not re.match(pattern, value):
            raise _err(name, what, value)
        return value

    return (
        problems.take(
            matching, "task_id", None, TASK_ID.pattern, "must be lower_snake_case, 1-64 characters",
            fallback="",
        ),
        problems.take(
            matching, "version", None, SEMVER.pattern, "must be a semantic version like 1.0.0",
            fallback="",
        ),
        problems.take(
            matching, "entry_point", "task.Task", ENTRY_POINT.pattern, "must be 'module.Class'",
            fallback="task.Task",
        ),
        problems.take(
            matching, "queue", "default", r"^[a-z0-9][a-z0-9_.-]{0,63}$",
            "must be 1-64 lowercase letters, digits, '_', '.', '-'",
            fallback="default",
        ),
    )  # fmt: skip


def parse_manifest(
    text: bytes | str, strict: bool = False, problems: Problems | None = None
) -> Manifest:
    """Parse and validate task.json text, naming every problem at once (``strict``: a key
    task.json may not hold is one, as at registration; a stored manifest is read as it is).

    With ``problems``, they are noted there instead, and the manifest is returned with
    defaults in place of what was refused, for the caller to go on checking the package.
    """
    if problems is None:
        return all_at_once(parse_manifest, text, strict)
    if len(text if isinstance(text, bytes) else text.encode()) > MAX_MANIFEST_BYTES:
        raise InvalidArgument(f"is over {MAX_MANIFEST_BYTES} bytes", field="task.json")
    doc = jsondoc.loads(text, field="task.json")
    if not isinstance(doc, dict):
        raise InvalidArgument("must be a JSON object", field="task.json")
    if strict:
        for key in sorted(k for k in doc if k not in KNOWN_KEYS):
            problems.add(_unknown_key(key))
    task_id, version, entry_point, queue = _identity(doc, problems)
    text_of = functools.partial(problems.take, _string, doc, fallback="")
    int_of = functools.partial(problems.take, _int, doc, fallback=0)
    input_schema = problems.take(_schema, doc, "input_schema", fallback=None)
    start = len(problems)  # a burst needs its rate limit, a key and a strategy their limit
    rate = problems.take(_rate_limit, doc, "rate_limit", fallback="")
    rate_burst = 1
    if problems.ok_since(start):
        rate_burst = problems.take(_rate_burst, doc, "rate_burst", rate, fallback=1)
    start = len(problems)
    limit = problems.take(_concurrency_limit, doc, "concurrency_limit", fallback=0)
    key, strategy = "", "wait"
    if problems.ok_since(start):
        doc_for_key = doc if input_schema is not None else {**doc, "input_schema": {}}
        key = problems.take(_concurrency_key, doc_for_key, "concurrency_key", limit, fallback="")
        strategy = problems.take(
            _concurrency_strategy, doc, "concurrency_strategy", limit, fallback="wait"
        )
    manifest = Manifest(
        task_id=task_id,
        version=version,
        name=text_of("name", task_id),
        description=text_of("description", ""),
        author=text_of("author", ""),
        category=text_of("category", "general"),
        entry_point=entry_point,
        requirements=problems.take(_requirements, doc, fallback=[]),
        tags=problems.take(_strings, doc, "tags", fallback=[]),
        queue=queue,
        priority=int_of("priority", 5, 1, 10),
        timeout=int_of("timeout", 300, 1, MAX_TIMEOUT_SECONDS),
        max_retries=int_of("max_retries", 0, 0, MAX_RETRIES),
        input_schema=input_schema or {},
        output_schema=problems.take(_schema, doc, "output_schema", fallback={}),
        executor_labels=problems.take(_labels, doc, "executor_labels", fallback={}),
        resources=problems.take(_resources, doc, "resources", fallback={}),
        batching=problems.take(_batching, doc, "batching", fallback={}),
        rate_limit=rate,
        rate_burst=rate_burst,
        concurrency_limit=limit,
        concurrency_key=key,
        concurrency_strategy=strategy,
        retry_backoff=problems.take(_retry_backoff, doc, fallback=None),
        raw=doc,
    )
    return manifest
