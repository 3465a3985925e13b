"""Base classes for tasks: ``setup`` once, ``process`` per input, ``cleanup`` at the end.

A task receives one input document (a dict) and returns one output document (a dict). What
it needs from the system — progress reporting, a logger, cancellation, its own manifest —
comes through ``self.context``, never through globals.

    from tasks.base.task_base import SimpleTask

    class Task(SimpleTask):
        def process(self, input_data):
            return {"length": len(input_data["text"])}
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.base import schema


class RetryableError(Exception):
    """A failure that a later attempt may not meet (a busy service, a flaky read)."""


class FatalError(Exception):
    """A failure no retry can cure (bad input, unsupported format): fail the step at once."""


ARTIFACT_SCHEME = "artifact://"


def _no_progress(fraction: float, message: str) -> None:
    return None


@dataclass
class TaskContext:
    """What the running system offers a task."""

    task_id: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("task"))
    report: Callable[[float, str], None] = _no_progress
    cancelled: threading.Event = field(default_factory=threading.Event)
    input_id: str = ""
    output_id: str = ""
    upstream_output_ids: dict[str, str] = field(default_factory=dict)
    input_sources: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    # While a dynamic batch runs (process_batch): each input's own meta, in order; the
    # fields above then hold the batch's artifacts together and no single input's ids.
    batch: list[dict[str, Any]] = field(default_factory=list)

    def begin(self, meta: dict[str, Any]) -> None:
        """Set what is particular to the next input: its lineage ids and local artifacts."""
        self.input_id = meta.get("input_id", "")
        self.output_id = meta.get("output_id", "")
        self.upstream_output_ids = dict(meta.get("upstream_output_ids") or {})
        self.input_sources = dict(meta.get("input_sources") or {})
        self.artifacts = dict(meta.get("artifacts") or {})
        self.batch = []

    def meta(self) -> dict[str, Any]:
        """The current input's meta, as ``begin`` was given it (its lineage ids and files)."""
        return {
            "input_id": self.input_id,
            "output_id": self.output_id,
            "upstream_output_ids": dict(self.upstream_output_ids),
            "input_sources": dict(self.input_sources),
            "artifacts": dict(self.artifacts),
        }

    def begin_batch(self, metas: list[dict[str, Any]]) -> None:
        """Set what is particular to the next batch of inputs: every input's artifacts (a
        URI names the same file whichever input brought it) and each one's meta."""
        merged = {k: v for m in metas for k, v in (m.get("artifacts") or {}).items()}
        self.begin({"artifacts": merged})
        self.batch = list(metas)

    def local_path(self, value: str, what: str) -> Path:
        """The local file ``value`` names: a path, or an artifact URI (the executor fetched it
        before the step ran). ``FatalError`` naming ``what`` when the artifact is not one this
        step was given."""
        if not value.startswith(ARTIFACT_SCHEME):
            return Path(value)
        local = self.artifacts.get(value)
        if local is None:
            raise FatalError(f"{what}: artifact {value} was not provided to this step")
        return Path(local)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the current input has got, 0 to 1."""
        self.report(min(max(float(fraction), 0.0), 1.0), message)


def one_per_input(outputs: Any, inputs: int) -> list[Any]:
    """What ``process_batch`` returned, when it is a list of one item per input; else the
    whole call fails (``FatalError``: a task bug no retry cures)."""
    if not isinstance(outputs, list) or len(outputs) != inputs:
        got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
        items = "item" if inputs == 1 else "items"
        raise FatalError(
            f"process_batch() must return a list of {inputs} {items} (one per input), "
            f"returned {got}"
        )
    return outputs


class TaskBase:
    """The base of every task."""

    def __init__(self, context: TaskContext | None = None, config: dict[str, Any] | None = None):
        self.context = context or TaskContext()
        self.config = dict(config or {})
        self.logger = self.context.logger

    @property
    def metadata(self) -> dict[str, Any]:
        """The task's task.json."""
        return self.context.manifest

    def setup(self) -> None:
        """Load models and other expensive state; called once per worker process."""

    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        """Turn one input document into one output document.

        A task that implements only ``process_batch`` has this call it with a batch of one
        (``self.context.batch`` then holds that input's meta): a batching task's step that
        is leased alone — nothing else ready, or an executor that does not batch — runs the
        same code. Its one item, if an exception, is raised."""
        if type(self).process_batch is TaskBase.process_batch:
            raise NotImplementedError(f"{type(self).__name__}.process")
        self.context.batch = [self.context.meta()]
        try:
            [output] = one_per_input(self.process_batch([input_data]), 1)
        finally:
            self.context.batch = []
        if isinstance(output, BaseException):
            raise output
        return output

    def process_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """Turn several input documents — steps of this task version that were ready at once,
        from any runs — into their outputs, in order, in one call (task.json ``batching``).

        An item may be an exception instead of an output: that input fails alone
        (``FatalError``: at once; any other: retried by its step's own retry policy). Raising
        fails every input of the call. This default runs ``process`` on each in turn; a model
        task overrides it to stack the inputs and run the model once (and then need not
        write ``process``: a step leased alone is a batch of one)."""
        outputs: list[dict[str, Any] | Exception] = []
        for data, meta in zip(inputs, self.context.batch or [{}] * len(inputs), strict=True):
            self.context.begin(meta)
            try:
                outputs.append(self.process(data))
            except Exception as exc:  # noqa: BLE001 - that input's failure, not the call's
                outputs.append(exc)
        return outputs

    def cleanup(self) -> None:
        """Release what ``setup`` took; called when the worker process is retired."""

    def validate_input(self, input_data: dict[str, Any]) -> None:
        """Check ``input_data`` against the manifest's ``input_schema`` (JSON Schema); raise
        ``FatalError`` naming the path of what is wrong."""
        found = schema.problems(self.metadata.get("input_schema") or {}, input_data)
        if found:
            raise FatalError("input: " + "; ".join(found))

    def validate_output(self, output: dict[str, Any]) -> None:
        """Check what ``process`` returned against the manifest's ``output_schema``; raise
        ``FatalError`` naming the path of what is wrong (a task bug: no retry helps)."""
        found = schema.problems(self.metadata.get("output_schema") or {}, output)
        if found:
            raise FatalError("output does not fit output_schema: " + "; ".join(found))

    def report_progress(self, fraction: float, message: str = "") -> None:
        self.context.progress(fraction, message)


class SimpleTask(TaskBase):
    """A task that needs no setup: implement ``process``."""


class MLTask(TaskBase):
    """A model-backed task: ``load_model`` once, then preprocess → predict → postprocess."""

    model: Any = None

    def setup(self) -> None:
        self.model = self.load_model()

    def load_model(self) -> Any:
        """Load and return the model."""
        return None

    def preprocess_input(self, input_data: dict[str, Any]) -> Any:
        return input_data

    def predict(self, features: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.predict")

    def postprocess_output(self, prediction: Any) -> dict[str, Any]:
        return prediction if isinstance(prediction, dict) else {"prediction": prediction}

    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        return self.postprocess_output(self.predict(self.preprocess_input(input_data)))
