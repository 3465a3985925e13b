"""Checks on a run's input before anything is queued: the pipeline's ``input_validation``
(required fields, file formats by extension) and the first steps' ``input_schema``."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from common.artifacts import is_file_field
from common.errors import InvalidArgument
from tasks.base import schema


def check_pipeline_input(validation: dict[str, Any], document: dict[str, Any]) -> None:
    for name in validation.get("required_fields", []):
        if name not in document:
            raise InvalidArgument("is required by the pipeline", field=f"input_json.{name}")
    formats = {f.lower().lstrip(".") for f in validation.get("supported_formats", [])}
    if not formats:
        return
    for name, value in document.items():
        if isinstance(value, str) and is_file_field(name):
            suffix = PurePosixPath(value.split("?")[0]).suffix.lower().lstrip(".")
            if suffix not in formats:
                raise InvalidArgument(
                    f"{value!r} is not one of the supported formats {sorted(formats)}",
                    field=f"input_json.{name}",
                )


def check_step_input(step_id: str, input_schema: dict[str, Any], document: dict[str, Any]) -> None:
    found = schema.problems(input_schema, document)
    if found:
        raise InvalidArgument(
            f"the input of first step {step_id!r} does not fit its task's input_schema: "
            + "; ".join(found),
            field="input_json",
        )


def as_batch_item(exc: InvalidArgument, index: int) -> InvalidArgument:
    """An input document's error as the ``index``-th of a batch's (``SubmitRuns``):
    ``input_json.x: ...`` becomes ``inputs_json[index].x: ...``; an error about another
    field keeps its own name after the document's."""
    field = exc.field or ""
    if field == "input_json" or field.startswith("input_json."):
        return InvalidArgument(
            exc.reason, field=f"inputs_json[{index}]{field.removeprefix('input_json')}"
        )
    return InvalidArgument(exc.message, field=f"inputs_json[{index}]")
