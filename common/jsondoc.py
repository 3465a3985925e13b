"""JSON documents from users and task code, parsed within limits every language can read.

Every JSON text that crosses the API (a run's input, a pipeline config, a ``task.json``) and
every output a task returns goes through here:

- nesting is at most ``MAX_DEPTH`` levels (objects and arrays), checked without recursion,
  so no document can exhaust the interpreter's stack in a parser or a mapping walker;
- ``NaN``, ``Infinity`` and ``-Infinity`` are refused: they are not JSON (RFC 8259), and
  other languages' parsers reject them;
- a string holding a lone surrogate (``"\\ud800"``, half of a UTF-16 pair) is refused: it
  is not Unicode text (I-JSON, RFC 7493, forbids it), so it cannot be written as UTF-8, and
  every reader that must (a JSON API, a gRPC string, a log line) failed on it.

Errors are ``InvalidArgument`` naming the field, never a ``RecursionError`` or ``ValueError``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from common.errors import InvalidArgument

MAX_DEPTH = 64


class NotJson(ValueError):
    """A value that JSON cannot carry (NaN, Infinity), or nesting over the limit."""


def _refuse_constant(name: str) -> Any:
    raise NotJson(f"{name} is not JSON (use null or a string)")


def depth_of(text: str) -> int:
    """The deepest nesting of objects and arrays in JSON ``text``, without parsing it (brackets
    inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def within_depth(text: str, max_depth: int = MAX_DEPTH) -> bool:
    """True when JSON ``text`` nests at most ``max_depth`` levels."""
    # Most documents are far shallower than the limit: count brackets first (C speed) and
    # only scan character by character when there might be too many.
    if text.count("[") + text.count("{") <= max_depth:
        return True
    return depth_of(text) <= max_depth


def loads(text: str | bytes, field: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON ``text`` from a user or a task; ``InvalidArgument`` naming ``field`` when it
    is not JSON, holds NaN or Infinity, or nests deeper than ``max_depth``."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"is not UTF-8 ({exc})", field=field) from exc
    if not within_depth(text, max_depth):
        raise InvalidArgument(
            f"nests deeper than {max_depth} levels of objects and arrays", field=field
        )
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except NotJson as exc:
        raise InvalidArgument(str(exc), field=field) from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"is not valid JSON ({exc})", field=field) from exc
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and not _utf8_writable(value):
        found = _first_lone_surrogate(value)  # (a pair is one character once read)
        if found is not None:
            path, char = found
            raise InvalidArgument(
                f"holds a lone surrogate ({char!a}) at {path}, which is not Unicode text",
                field=field,
            )
    return value


# A \u escape of half of a UTF-16 surrogate pair: D800-DFFF.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def _utf8_writable(value: Any) -> bool:
    """Whether every string of ``value`` can be written as UTF-8 (no lone surrogate): one
    C-speed pass, so an input of emoji (escaped as pairs) costs no walk in Python."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _first_lone_surrogate(value: Any) -> tuple[str, str] | None:
    """The path (``$.a[2]``) of the first string or key holding a lone surrogate in
    ``value``, and that character; None when there is none."""
    for path, v in _nodes(value):
        if isinstance(v, str) and (match := _SURROGATES.search(v)):
            return path, match.group()
    return None


def text_safe(value: Any) -> Any:
    """``value`` as it is, unless a string in it holds a lone surrogate (only documents
    recorded before ``loads`` refused them can): then a copy with each replaced by U+FFFD,
    so that whoever must write it as UTF-8 (a JSON API) can. One C-speed encode to find out."""
    try:
        if _utf8_writable(value):
            return value
    except (TypeError, ValueError):  # not a JSON document: left to its own reader
        return value
    text = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.loads(text.decode("utf-8", "replace"))


def dumps(value: Any, max_depth: int = MAX_DEPTH) -> str:
    """JSON text of ``value``; ``NotJson`` for NaN, Infinity or nesting over ``max_depth``
    (a ``ValueError``, so a task's own failure), never a ``RecursionError``."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError as exc:
        path, bad = _first_non_finite(value)
        raise NotJson(f"holds {bad} at {path}, which is not JSON (use null or a string)") from exc
    except RecursionError as exc:
        raise NotJson(f"nests deeper than {max_depth} levels") from exc
    if not within_depth(text, max_depth):
        raise NotJson(f"nests deeper than {max_depth} levels of objects and arrays")
    if _SURROGATE_ESCAPE.search(text) and not _utf8_writable(value):
        path, char = _first_lone_surrogate(value) or ("$", "?")
        raise NotJson(f"holds a lone surrogate ({char!a}) at {path}, which is not Unicode text")
    return text


def _first_non_finite(value: Any) -> tuple[str, float]:
    """The path of the first NaN or Infinity in ``value`` (``$.a[2]``) and it."""
    for path, v in _nodes(value):
        if isinstance(v, float) and not math.isfinite(v):
            return path, v
    return "$", math.nan


def _nodes(value: Any) -> Iterator[tuple[str, Any]]:
    """Every value in ``value`` with its path, in document order, an object's keys with
    theirs ("$.a (a key)"); iteratively, so no nesting exhausts the stack."""
    stack: list[tuple[str, Any]] = [("$", value)]
    while stack:
        path, v = stack.pop()
        yield path, v
        if isinstance(v, dict):
            yield from ((f"{path} (a key)", k) for k in v)
            stack.extend((f"{path}.{k}", x) for k, x in reversed(list(v.items())))
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v))))
