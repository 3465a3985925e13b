"""What a step receives: its ``input_mapping`` resolved against the run's input and the
outputs upstream, and the lineage edges that record where each field came from.

Edge names follow the brief: ``output_001_faces_array -> input_002_faces_array`` — the
document id, the field's path in it as the mapping wrote it (``output_001_tokens[*].text_array``
for ``$.A.tokens[*].text``; none for a whole step output: ``output_001_object``), and the
JSON type of the value.

Run parameters reach every step that can use them (``with_parameters``): a field the step's
task declares in its ``input_schema`` properties, and that its mapping did not set, is taken
from the run's input — from ``step_parameters.<step_id>`` first, then ``parameters``, then
``processing_options``, then the input's own top-level fields. So the original system's
execution inputs work unchanged: ``{"image_path": …, "min_face_size": 50}`` and
``{"image_path": …, "parameters": {"confidence_threshold": 0.8}}`` both reach
``face_detection`` inside a pipeline. A task whose schema declares a ``parameters``
property gets the whole ``parameters`` object.
"""

from __future__ import annotations

import json
from typing import Any

from services.common import mapping

RUN_INPUT_ID = "run_input"


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def resolve(
    mapping_spec: dict[str, Any],
    step_ids: set[str],
    run_input: dict[str, Any],
    outputs: dict[str, Any],
    output_ids: dict[str, str],
    input_id: str,
    optional: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, str]]:
    """The step's input document, its lineage edges, and for each field read from an
    upstream step the output id it came from.

    ``outputs`` holds the parsed outputs of the steps the mapping reads; ``output_ids`` their
    output ids. A field mapped from one of the run input's ``optional`` fields (the
    pipeline's ``input_validation.optional_fields``) is left out when the run input lacks
    it, as one mapped from a step that has no output (it was SKIPPED: ``outputs`` lacks
    it). Raises ``mapping.MissingValue`` when any other expression finds nothing.
    """
    document: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    sources: dict[str, str] = {}
    for key, expr in mapping_spec.items():
        if not mapping.is_expression(expr):
            document[key] = expr
            continue
        path = mapping.parse(expr, step_ids, key)
        if absent_optional(path, optional, run_input) or (
            path.source and path.source not in outputs
        ):
            continue
        source_doc = outputs[path.source] if path.source else run_input
        value = mapping.evaluate(path, source_doc)
        document[key] = value
        kind = json_type(value)
        source_id = output_ids[path.source] if path.source else RUN_INPUT_ID
        if path.source:
            sources[key] = source_id
        edges.append((lineage_name(source_id, path.field_path, kind), f"{input_id}_{key}_{kind}"))
    return document, edges, sources


def item_edge(
    item: Any, each: dict[str, Any], index: int, output_ids: dict[str, str], input_id: str
) -> tuple[str, str]:
    """The lineage edge of a for_each instance's item: from that item of the list in its
    source's output, or in the run's input (``each``: the step's for_each, as
    ``fan_out.lua_fields`` wrote it)."""
    path = mapping.Path(each["source"], tuple(each["path"]), each["said"])
    kind = json_type(item)
    where = f"{path.field_path}[{index}]" if path.field_path else f"[{index}]"
    source_id = output_ids[each["source"]] if each["source"] else RUN_INPUT_ID
    return lineage_name(source_id, where, kind), f"{input_id}_{each['field']}_{kind}"


def signal_edge(input_id: str, name: str) -> tuple[str, str]:
    """The lineage edge of the signal a step awaited: from the signal's document
    ("signal_003" for "input_003") to the input field it is given as."""
    return f"signal_{input_id.partition('_')[2]}_object", f"{input_id}_{name}_object"


def lineage_name(document_id: str, field_path: str, kind: str) -> str:
    """One end of a lineage edge: document id, the field's path in it ("" for the whole
    document), JSON type."""
    return f"{document_id}_{field_path}_{kind}" if field_path else f"{document_id}_{kind}"


def absent_optional(path: mapping.Path, optional: frozenset[str], run_input: Any) -> bool:
    """Whether ``path`` reads one of the run input's optional fields that this run did not
    give (the mapped field is then left out)."""
    if path.source:  # an upstream step's output (its segments may be empty: the whole of it)
        return False
    return path.segments[0] in optional and path.segments[0] not in run_input


def default_document(run_input: dict[str, Any], dep_outputs: dict[str, str]) -> dict[str, Any]:
    """Without a mapping: a first step gets the run's input; a later one the run's input
    plus its dependencies' outputs under their step ids (so ``image_path`` still arrives)."""
    return {**run_input, **{k: json.loads(v) for k, v in dep_outputs.items() if v is not None}}


def default_input(run_input_json: str, dep_outputs: dict[str, str]) -> str:
    """``default_document`` as JSON text (the run input's text as it is, for a first step)."""
    if not dep_outputs:
        return run_input_json
    return json.dumps(default_document(json.loads(run_input_json), dep_outputs))


# Run-input fields that carry parameters, in the order they are looked in (after the step's
# own step_parameters.<step_id>); then the input's own top-level fields.
PARAMETER_SOURCES = ("step_parameters", "parameters", "processing_options")


def with_parameters(
    document: dict[str, Any],
    run_input: dict[str, Any],
    step_id: str,
    accepts: list[str],
    input_id: str,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``document`` with the run parameters its task accepts added (what its mapping set is
    kept), and the lineage edges of what was added."""
    if not accepts:
        return document, []
    layers: list[tuple[str, dict[str, Any]]] = []
    per_step = run_input.get("step_parameters")
    if isinstance(per_step, dict) and isinstance(per_step.get(step_id), dict):
        layers.append((f"step_parameters.{step_id}", per_step[step_id]))
    shared = run_input.get("parameters")
    if isinstance(shared, dict):
        layers.append(("parameters", shared))
    options = run_input.get("processing_options")
    if isinstance(options, dict):
        layers.append(("processing_options", options))
    top = {k: v for k, v in run_input.items() if k not in PARAMETER_SOURCES}
    layers.append(("", top))
    added = dict(document)
    edges = []
    for key in accepts:
        if key in added:
            continue
        if key == "parameters" and isinstance(shared, dict):
            found: tuple[str, Any] | None = ("", shared)
        else:
            found = next(((where, layer[key]) for where, layer in layers if key in layer), None)
        if found is None:
            continue
        where, value = found
        added[key] = value
        kind = json_type(value)
        field_path = f"{where}.{key}" if where else key
        edges.append((lineage_name(RUN_INPUT_ID, field_path, kind), f"{input_id}_{key}_{kind}"))
    return added, edges


def accepted_fields(input_schema: dict[str, Any]) -> list[str]:
    """The fields a task's ``input_schema`` declares (what run parameters may fill)."""
    properties = input_schema.get("properties") if isinstance(input_schema, dict) else None
    return sorted(properties) if isinstance(properties, dict) else []
