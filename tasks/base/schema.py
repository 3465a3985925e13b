"""A small JSON Schema check for task inputs: required fields and top-level types.

Shared by the task kit (``TaskBase.validate_input``) and the scheduler (which checks a
pipeline's first steps before anything is queued). Full JSON Schema is not attempted.
"""

from __future__ import annotations

from typing import Any

_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "object": dict,
    "array": list,
}


def problems(schema: dict[str, Any], document: Any) -> list[str]:
    """What is wrong with ``document`` under ``schema``; empty when it fits."""
    if not isinstance(document, dict):
        return ["input must be a JSON object"]
    found = [
        f"missing required field {name!r}"
        for name in schema.get("required", [])
        if name not in document
    ]
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        expected = _TYPES.get(kind) if isinstance(kind, str) else None
        if name in document and expected is not None:
            value = document[name]
            wrong_bool = isinstance(value, bool) and kind in {"number", "integer"}
            if wrong_bool or not isinstance(value, expected):
                found.append(f"field {name!r} must be {kind}, got {type(value).__name__}")
    return found
