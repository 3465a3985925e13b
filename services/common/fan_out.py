"""A pipeline step's ``for_each``: its task run once per item of a list that a step upstream
of it returned, or that the run's input holds (Airflow's dynamic task mapping, Argo's
``withParam``, a Celery chord's group), in parallel, each item given to it as one input
field.

``{"step_id": "describe", "task_id": "face_attribute", "depends_on": ["detect"],
"for_each": {"face": "$.detect.faces"}, "input_mapping": {"image_path": "$.image_path"}}``
makes, when ``detect`` has returned three faces, the instances ``describe[0]``,
``describe[1]`` and ``describe[2]``: steps of the run with their own attempts, retries,
leases, lineage and events, each with the input its ``input_mapping`` builds plus ``face``:
that item. Once all have completed, ``describe`` completes with the list of their outputs,
in the items' order, which later steps read as any output (``$.describe[*].age``). An empty
list completes it at once with ``[]``; an instance that fails for good fails the run, as any
step does. The expression must read a step upstream of this one, or the run's input (a
list there is checked at submit: ``check_input``), and give a list of at most
``MAX_ITEMS`` items.

The registry checks a ``for_each`` (``parse``). The scheduler gives the step its
``for_each`` field (``lua_fields``), and ``lib.lua`` makes the instances where the step
becomes ready (``fan_out``) and gathers their outputs when the last completes. When an
instance is leased, its input is built as the step's, and the item put in
(``item_input``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from common.errors import InvalidArgument
from services.common import mapping

MAX_ITEMS = 1024  # instances of one step in one run (Airflow's max_map_length)
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
INSTANCE = re.compile(r"^(?P<step>.+)\[(?P<index>\d+)\]$")


@dataclass(frozen=True)
class ForEach:
    """The input field each item is given as, and where the list is read."""

    field: str
    path: mapping.Path

    def to_json(self) -> dict[str, str]:
        return {self.field: self.path.text}

    def lua_fields(self) -> str:
        """As ``lib.lua`` reads it: the field, the source step, the path after it as
        segments (a key, or an index from 0) and the expression."""
        return json.dumps(
            {
                "field": self.field,
                "source": self.path.source,
                "path": list(self.path.segments),
                "said": self.path.text,
            }
        )


def parse(
    doc: Any, step_ids: set[str], upstream: set[str], mapped: set[str], where: str
) -> ForEach:
    """A step's ``for_each``, checked: one ``field: expression`` whose expression reads a step
    in ``upstream`` or the run's input (not ``[*]``), and whose field is not also one of the
    fields its ``input_mapping`` maps (``mapped``). Errors name ``where``."""
    if not isinstance(doc, dict) or len(doc) != 1:
        raise InvalidArgument(
            'must be one field and where its list is: {"face": "$.detect.faces"}', field=where
        )
    [(name, expr)] = doc.items()
    if not isinstance(name, str) or not FIELD.match(name):
        raise InvalidArgument(f"{name!r} is not an input field name", field=where)
    at = f"{where}.{name}"
    if name in mapped:
        raise InvalidArgument(
            f"{name!r} is also in input_mapping; each item is given as this field", field=at
        )
    if not mapping.is_expression(expr):
        raise InvalidArgument(
            f"must be an expression such as '$.step.items', got {expr!r}", field=at
        )
    path = mapping.parse(expr, step_ids, at)
    if path.source and path.source not in upstream:
        raise InvalidArgument(
            f"{expr!r} reads step {path.source!r}, which is not upstream of this one; add it "
            "to depends_on",
            field=at,
        )
    if None in path.segments:
        raise InvalidArgument(f"{expr!r}: the list itself, not [*]", field=at)
    return ForEach(name, path)


def check_input(each: ForEach, doc: Any, step_id: str) -> list[Any]:
    """The list a step fans out over from the run's input ``doc``, checked at submit
    (INVALID_ARGUMENT naming ``input_json`` and the step, not a run that fails later)."""
    try:
        found = mapping.evaluate(each.path, doc)
    except mapping.MissingValue as exc:
        raise InvalidArgument(f"step {step_id!r}: for_each {exc}", field="input_json") from exc
    if not isinstance(found, list):
        raise InvalidArgument(
            f"step {step_id!r}: for_each {each.path.text} must be a list, got "
            f"{type(found).__name__}",
            field="input_json",
        )
    if len(found) > MAX_ITEMS:
        raise InvalidArgument(
            f"step {step_id!r}: for_each {each.path.text} has {len(found)} items, over the "
            f"{MAX_ITEMS} a step may run",
            field="input_json",
        )
    return found


def of_json(doc: dict[str, str], step_ids: frozenset[str]) -> ForEach | None:
    """A ``for_each`` as the registry stored it (checked when it was registered)."""
    if not doc:
        return None
    [(name, expr)] = doc.items()
    return ForEach(name, mapping.parse(expr, set(step_ids), "for_each"))


def instance_id(step_id: str, index: int) -> str:
    """The step id of a ``for_each`` step's instance for item ``index``."""
    return f"{step_id}[{index}]"


def instance_of(step_id: str) -> tuple[str, int] | None:
    """The ``for_each`` step and item index of an instance's step id; None for a step of the
    pipeline itself (whose ids have no brackets)."""
    found = INSTANCE.match(step_id)
    return (found["step"], int(found["index"])) if found else None


def item_input(
    document: dict[str, Any], each: dict[str, Any], outputs: dict[str, Any], index: int
) -> Any:
    """The item an instance gets (``each``: the step's ``lua_fields``, parsed), put into its
    input ``document``; returns the item. ``outputs`` holds the source's output (under "" the
    run input, for a list there)."""
    found = mapping.evaluate(
        mapping.Path(each["source"], tuple(each["path"]), each["said"]), outputs[each["source"]]
    )
    document[each["field"]] = found[index]
    return found[index]
