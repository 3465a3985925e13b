"""JSON Schema checks (the ``jsonschema`` library) for task inputs and outputs.

Shared by the registry (``check_schema`` at registration), the scheduler (a pipeline's first
steps, before anything is queued) and the task kit (every input before ``process``, every
output after it, in a worker and in ``wtm task test``). A schema without ``$schema`` is read
as draft 2020-12. Problems name the path of what is wrong: ``$.faces[0].bbox: ...``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator, SchemaError, validators

MAX_PROBLEMS = 10


def path_of(parts: Iterable[Any]) -> str:
    """A JSON path: ``$``, ``$.faces``, ``$.faces[0].bbox``."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    cls = validators.validator_for(schema, default=Draft202012Validator)
    return cls(schema)


def schema_problems(schema: dict[str, Any]) -> list[str]:
    """What makes ``schema`` not a valid JSON Schema; empty when it is one."""
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        return [f"{path_of(exc.absolute_path)}: {exc.message}"]
    return []


def problems(schema: dict[str, Any], document: Any) -> list[str]:
    """What is wrong with ``document`` under ``schema`` (at most ``MAX_PROBLEMS``, in path
    order); empty when it fits."""
    if not schema:
        return []
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.path])
    return [f"{path_of(e.absolute_path)}: {e.message}" for e in errors[:MAX_PROBLEMS]]
