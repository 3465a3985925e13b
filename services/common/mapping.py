"""``input_mapping`` expressions: parse them (registry) and evaluate them (scheduler).

An expression is ``$`` followed by segments: ``.name``, ``[3]`` (an index) or ``[*]`` (every
element; the rest of the path applies to each). The first name says where to read:

- a step id of the pipeline -> that step's output (``$.detection.faces[*].bbox``);
- anything else -> the run's input (``$.image_path``).

A mapping value that is not a string starting with ``$`` is a constant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.errors import InvalidArgument

_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+|\*)\]")

Segment = str | int | None  # a key, an index, or None for [*]
MAX_SEGMENTS = 32  # per expression; [*] at most MAX_WILDCARDS times
MAX_WILDCARDS = 4


@dataclass(frozen=True)
class Path:
    """A parsed expression: where it reads from, and the segments after that."""

    source: str  # a step id, or "" for the run input
    segments: tuple[Segment, ...]
    text: str

    @property
    def field_path(self) -> str:
        """The path after its source as written, for lineage names: "tokens[*].text" of
        ``$.A.tokens[*].text``; "" when it reads a whole step output."""
        out = ""
        for s in self.segments:
            if isinstance(s, str):
                out += f".{s}" if out else s
            else:
                out += "[*]" if s is None else f"[{s}]"
        return out


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$")


def parse(text: str, step_ids: set[str], field: str) -> Path:
    """Parse ``text``; ``step_ids`` are the pipeline's steps. Errors name ``field``."""
    segments = segments_of(text, field)
    if not segments or not isinstance(segments[0], str):
        raise InvalidArgument(f"expression {text!r} must name a field", field=field)
    if segments[0] in step_ids:
        return Path(str(segments[0]), segments[1:], text)
    return Path("", segments, text)


def segments_of(text: str, field: str) -> tuple[Segment, ...]:
    """The segments of ``text`` (``$``, ``$.faces[0].score``, ``$[2]``); errors name
    ``field``."""
    if not text.startswith("$"):
        raise InvalidArgument(f"expression {text!r} must start with '$'", field=field)
    segments: list[Segment] = []
    pos = 1
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if m is None:
            raise InvalidArgument(
                f"cannot parse {text!r} at position {pos} ({text[pos:]!r}); "
                "use $.field, $.step.field, [0] or [*]",
                field=field,
            )
        name, index = m.group(1), m.group(2)
        if name is not None:
            segments.append(name)
        else:
            segments.append(None if index == "*" else int(index))
        pos = m.end()
    if len(segments) > MAX_SEGMENTS or segments.count(None) > MAX_WILDCARDS:
        raise InvalidArgument(
            f"expression {text[:60]!r} has {len(segments)} segments and "
            f"{segments.count(None)} [*]; at most {MAX_SEGMENTS} and {MAX_WILDCARDS}",
            field=field,
        )
    return tuple(segments)


class MissingValue(LookupError):
    """The document has nothing at the path."""


def evaluate(path: Path, document: Any) -> Any:
    """The value at ``path`` in ``document`` (the step output or the run input)."""
    return _walk(document, path.segments, path.text)


def _walk(value: Any, segments: tuple[Segment, ...], text: str) -> Any:
    for i, seg in enumerate(segments):
        if seg is None:
            if not isinstance(value, list):
                raise MissingValue(f"{text}: [*] applied to {type(value).__name__}")
            return [_walk(item, segments[i + 1 :], text) for item in value]
        if isinstance(seg, int):
            if not isinstance(value, list) or seg >= len(value):
                raise MissingValue(f"{text}: no element [{seg}]")
            value = value[seg]
        else:
            if not isinstance(value, dict) or seg not in value:
                raise MissingValue(f"{text}: no field {seg!r}")
            value = value[seg]
    return value
