"""What a pipeline run's input may carry besides the fields its steps read, and the rule
that every key of it is read, acted on, or refused (INVALID_ARGUMENT naming it).

The original system's execution inputs hold, beside the data:

- ``parameters`` / ``processing_options`` / ``step_parameters.<step_id>``: fields the
  steps' tasks accept (``step_inputs.with_parameters``); ``processing_options.
  enable_parallel: false`` also runs the run's steps one at a time (max_parallel 1);
- ``output_options``: ``format`` (only "json"), ``compression`` (only false: large outputs
  travel by reference instead), ``include_metadata`` (true adds ``metadata`` to the run's
  output: run id, pipeline version, each step's task version and output id);
- ``metadata``: the caller's, kept with the run's input (steps get it only if they map it).

A key no step reads — at the top level, or inside ``parameters``, ``processing_options``
or ``step_parameters`` — is refused, unless a step has no ``input_mapping`` (it gets the
whole input, so every key is read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.errors import InvalidArgument
from services.scheduler.step_inputs import PARAMETER_SOURCES

RUN_KEYS = ("output_options", "metadata")  # acted on or kept by the scheduler
SCHEDULER_PROCESSING_OPTIONS = ("enable_parallel",)
OUTPUT_OPTIONS = ("format", "compression", "include_metadata")


@dataclass(frozen=True)
class StepReads:
    """What one step of a pipeline reads of a run's input."""

    step_id: str
    mapped: frozenset[str]  # run-input fields its input_mapping names (their first segment)
    accepts: frozenset[str]  # fields its task's input_schema declares
    has_mapping: bool


@dataclass(frozen=True)
class RunOptions:
    """What the scheduler itself does with a run's input."""

    one_at_a_time: bool = False  # processing_options.enable_parallel: false
    include_metadata: bool = False  # output_options.include_metadata: true
    # step id -> its group of a concurrency limit per input value (concurrency_groups.py)
    conc_groups: tuple[tuple[str, str], ...] = ()
    # step id -> why its skip_if skips it on this input (services.common.conditions)
    skipped: tuple[tuple[str, str], ...] = ()


def _field(*parts: str) -> str:
    return ".".join(("input_json", *parts))


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"must be an object, got {type(value).__name__}", field=_field(key))
    return value


def _bool(options: dict[str, Any], key: str, where: str) -> bool | None:
    value = options.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidArgument(f"must be true or false, got {value!r}", field=_field(where, key))
    return value


def options_of(doc: dict[str, Any]) -> RunOptions:
    """The run options in a pipeline run's input, checked."""
    output = _object(doc, "output_options")
    for key in output:
        if key not in OUTPUT_OPTIONS:
            raise InvalidArgument(
                f"unknown key; known: {', '.join(OUTPUT_OPTIONS)}",
                field=_field("output_options", key),
            )
    fmt = output.get("format", "json")
    if not isinstance(fmt, str) or fmt.lower() != "json":
        raise InvalidArgument(
            f"only 'json' is supported (a run's output is JSON), got {fmt!r}",
            field=_field("output_options", "format"),
        )
    if _bool(output, "compression", "output_options"):
        raise InvalidArgument(
            "outputs are not compressed: a large one travels by reference, as an artifact",
            field=_field("output_options", "compression"),
        )
    processing = _object(doc, "processing_options")
    parallel = _bool(processing, "enable_parallel", "processing_options")
    return RunOptions(
        one_at_a_time=parallel is False,
        include_metadata=bool(_bool(output, "include_metadata", "output_options")),
    )


def check_every_key_is_read(doc: dict[str, Any], steps: list[StepReads]) -> None:
    """Refuse a key of the run's input that no step reads and the scheduler does not act
    on, naming it and what is read."""
    if any(not s.has_mapping for s in steps):
        return  # that step gets the whole input: every key is read
    mapped = frozenset().union(*(s.mapped for s in steps))
    accepted = frozenset().union(*(s.accepts for s in steps))
    known = mapped | accepted | set(PARAMETER_SOURCES) | set(RUN_KEYS)
    for key in doc:
        if key not in known:
            raise InvalidArgument(
                "no step of the pipeline reads it; they read: "
                + ", ".join(sorted(mapped | accepted)),
                field=_field(key),
            )
    whole_parameters = "parameters" in accepted  # a task that takes the whole object
    for layer in ("parameters", "processing_options"):
        if layer == "parameters" and whole_parameters:
            continue
        extra = SCHEDULER_PROCESSING_OPTIONS if layer == "processing_options" else ()
        for key in _object(doc, layer):
            if key not in accepted and key not in extra:
                raise InvalidArgument(
                    "no step of the pipeline accepts it; they accept: "
                    + ", ".join(sorted(accepted | set(extra))),
                    field=_field(layer, key),
                )
    by_step = {s.step_id: s for s in steps}
    for step_id, fields in _object(doc, "step_parameters").items():
        if step_id not in by_step:
            raise InvalidArgument(
                f"the pipeline has no step {step_id!r}; its steps: {', '.join(by_step)}",
                field=_field("step_parameters", step_id),
            )
        if not isinstance(fields, dict):
            raise InvalidArgument("must be an object", field=_field("step_parameters", step_id))
        for key in fields:
            if key not in by_step[step_id].accepts:
                raise InvalidArgument(
                    f"step {step_id!r} does not accept it; it accepts: "
                    + ", ".join(sorted(by_step[step_id].accepts)),
                    field=_field("step_parameters", step_id, key),
                )
