"""A pipeline step's ``skip_if``: conditions under which the step does not run (it ends
SKIPPED, and counts as done for the steps after it), as Hatchet's ``skip_if`` and Argo's
``when``.

A condition is ``{"path": "$.mode", "op": "==", "value": "fast"}``; ``skip_if`` is one, or a
list of them (the step is skipped when any holds). ``path`` is an ``input_mapping``
expression (``[*]`` excepted): on the run's input, or on the output of a step upstream of
this one (``$.detect.faces``, as a mapping reads it); ``op`` one of ``OPS``:

- ``==``, ``!=``: JSON equality (``true`` is not ``1``; ``1`` is ``1.0``);
- ``<``, ``<=``, ``>``, ``>=``: two numbers, or two strings; anything else does not hold;
- ``in``, ``not_in``: ``value`` is a list, and the field equals one of its items (or none);
- ``exists``, ``not_exists``: whether the input has the field (no ``value``).

A field the document does not have makes every condition but ``not_exists`` false: a
missing field is no reason to skip a step. The registry checks conditions (``parse``). The
scheduler decides those on the run's input when the run is submitted (``skip_reason``), and
gives a step those on upstream outputs as its ``skip_on`` field (``lua_fields``), which the
scheduler's scripts decide where the step becomes ready (``lib.lua``'s ``skip_on_reason``,
with these semantics; a step output decoded there cannot tell an empty list from an empty
object, so the two are equal in such a condition). An output stored by reference is read
there through its view (``view``), which the executor that stored it sends with the result:
what is at the paths later steps' conditions read (``output_paths``)."""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from common import condition_text
from common.errors import InvalidArgument
from common.problems import unknown_key
from services.common import mapping

ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
OPS = ("==", "!=", *ORDER, "in", "not_in", "exists", "not_exists")
MAX_CONDITIONS = 16  # per step
KEYS = {"path", "op", "value"}


@dataclass(frozen=True)
class Condition:
    path: str
    op: str
    value: Any = None
    source: str = ""  # the step whose output it reads ("": the run's input)

    @functools.cached_property
    def parsed(self) -> mapping.Path:
        """``path`` parsed once (read at every submit of the step's pipeline)."""
        return mapping.parse(self.path, {self.source} if self.source else set(), "skip_if")

    def said(self) -> str:
        """As a person reads it: ``$.mode == "fast"``, ``$.debug exists``."""
        return condition_text.said(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "op": self.op,
            **({} if self.op.endswith("exists") else {"value": self.value}),
        }


def _condition(
    doc: Any, step_ids: set[str], upstream: set[str], where: str, step_id: str
) -> Condition:
    if not isinstance(doc, dict):
        raise InvalidArgument("must be an object {path, op, value}", field=where)
    extra = sorted(set(doc) - KEYS)
    if extra:
        raise InvalidArgument(unknown_key(extra[0], KEYS), field=f"{where}.{extra[0]}")
    path, op = doc.get("path"), doc.get("op")
    if not isinstance(path, str) or not mapping.is_expression(path):
        raise InvalidArgument(
            f"must be an expression such as '$.mode', got {path!r}", field=f"{where}.path"
        )
    parsed = mapping.parse(path, step_ids, f"{where}.path")
    if parsed.source and parsed.source not in upstream:
        raise InvalidArgument(
            f"{path!r} reads step {parsed.source!r}, which is not upstream of "
            f"{repr(step_id) if step_id else 'this step'}; add it to depends_on",
            field=f"{where}.path",
        )
    if None in parsed.segments:
        raise InvalidArgument(
            f"{path!r}: a condition reads one field, not [*]", field=f"{where}.path"
        )
    if op not in OPS:
        raise InvalidArgument(f"must be one of {', '.join(OPS)}, got {op!r}", field=f"{where}.op")
    has_value = "value" in doc
    value = doc.get("value")
    if op in ("exists", "not_exists") and has_value:
        raise InvalidArgument(f"{op} takes no value", field=f"{where}.value")
    if op not in ("exists", "not_exists") and not has_value:
        raise InvalidArgument(f"{op} needs a value", field=f"{where}.value")
    if op in ("in", "not_in") and not isinstance(value, list):
        raise InvalidArgument(f"{op} needs a list, got {value!r}", field=f"{where}.value")
    if op in ORDER and (isinstance(value, bool) or not isinstance(value, int | float | str)):
        raise InvalidArgument(
            f"{op} needs a number or a string, got {value!r}", field=f"{where}.value"
        )
    return Condition(path, op, value, parsed.source)


def parse(
    doc: Any,
    step_ids: set[str],
    where: str,
    upstream: set[str] | None = None,
    step_id: str = "",
) -> tuple[Condition, ...]:
    """A step's ``skip_if`` (one condition or a list), checked; errors name ``where``.
    ``step_ids`` are the pipeline's steps, ``upstream`` those whose outputs the step
    (``step_id``) may read (none when not given)."""
    items = doc if isinstance(doc, list) else [doc]
    if not items or len(items) > MAX_CONDITIONS:
        raise InvalidArgument(f"must hold 1 to {MAX_CONDITIONS} conditions", field=where)
    return tuple(
        _condition(
            c,
            step_ids,
            upstream or set(),
            f"{where}[{i}]" if isinstance(doc, list) else where,
            step_id,
        )
        for i, c in enumerate(items)
    )


def of_json(
    items: list[dict[str, Any]], step_ids: frozenset[str] = frozenset()
) -> tuple[Condition, ...]:
    """Conditions as the registry stored them (checked when they were registered);
    ``step_ids``, the pipeline's steps, tell those that read a step's output."""
    return tuple(
        Condition(
            c["path"],
            c["op"],
            c.get("value"),
            mapping.parse(c["path"], set(step_ids), "skip_if").source,
        )
        for c in items
    )


def lua_fields(found: tuple[Condition, ...]) -> str:
    """Conditions on upstream outputs as the scheduler's scripts read them (a step's
    ``skip_on``): each one's source step, its path's segments (a key, or an index from 0),
    its operator, its value and how it reads."""
    return json.dumps(
        [
            {
                "source": c.source,
                "path": list(c.parsed.segments),
                "op": c.op,
                **({} if c.op.endswith("exists") else {"value": c.value}),
                "said": c.said(),
            }
            for c in found
        ]
    )


def output_paths(found: Iterable[mapping.Path], source: str) -> tuple[str, ...]:
    """Where the expressions ``found`` (conditions' ``parsed``, a ``for_each``'s path) read
    the output of step ``source``, each once, as expressions on that output (``$.faces`` of
    ``$.detect.faces``; ``$`` for the whole of it)."""
    return tuple(
        dict.fromkeys(
            "$" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in p.segments)
            for p in found
            if p.source == source
        )
    )


def view(document: Any, paths: Iterable[str]) -> Any:
    """``document`` with only what is at ``paths`` (expressions on it, as ``output_paths``
    gives them): every other field left out, a list kept up to the last index read, null
    before an index not read. A condition that reads one of ``paths`` holds on the view as on
    the document. None when a path reads the whole document (the view would be all of it),
    or is not such an expression."""
    root: Any = None
    for text in paths:
        try:
            segments = mapping.segments_of(text, "condition_paths")
        except InvalidArgument:
            return None
        if not segments or None in segments:
            return None
        try:
            value = mapping.evaluate(mapping.Path("", segments, text), document)
        except mapping.MissingValue:
            continue
        if root is None:
            root = [] if isinstance(segments[0], int) else {}
        _place(root, segments, value)
    return {} if root is None else root


def _place(node: Any, segments: tuple[mapping.Segment, ...], value: Any) -> None:
    """Put ``value`` at ``segments`` under ``node``, making the objects and lists on the way
    (a list padded with null up to the index)."""
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        made: Any = value if last else ([] if isinstance(segments[i + 1], int) else {})
        if isinstance(seg, int):
            node.extend([None] * (seg + 1 - len(node)))
            if last or not isinstance(node[seg], dict | list):
                node[seg] = made
        elif last or not isinstance(node.get(seg), dict | list):
            node[seg] = made
        node = node[seg]


def _same(a: Any, b: Any) -> bool:
    """JSON equality: a boolean is never a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    numbers = all(isinstance(x, int | float) for x in (a, b))
    return (numbers or type(a) is type(b)) and a == b


def holds(condition: Condition, document: Any) -> bool:
    """Whether ``condition`` holds on ``document`` (the run's input, or the output of the
    step it reads)."""
    try:
        found = mapping.evaluate(condition.parsed, document)
    except mapping.MissingValue:
        return condition.op == "not_exists"
    op, value = condition.op, condition.value
    if op in ("exists", "not_exists"):
        return op == "exists"
    if op in ("==", "!="):
        return _same(found, value) == (op == "==")
    if op in ("in", "not_in"):
        return any(_same(found, v) for v in value) == (op == "in")
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (found, value))
    strings = isinstance(found, str) and isinstance(value, str)
    return (numbers or strings) and ORDER[op](found, value)


def skip_reason(conditions: tuple[Condition, ...], document: Any) -> str:
    """Why a step is skipped on this input ("skip_if $.mode == "fast""), or "" to run it."""
    for c in conditions:
        if holds(c, document):
            return f"skip_if {c.said()}"
    return ""
