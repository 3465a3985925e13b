"""Every problem of a document at once, as a compiler or ``kubectl apply`` reports them.

A check raises ``InvalidArgument`` naming its field, as everywhere. ``Problems`` runs the
checks of a document that do not depend on each other, notes what each raised, and raises
them as one ``InvalidArgument``, in the order of their fields' paths (``steps[2]`` before
``steps[10]``): the first problem's field and message on the first line (so a caller reading
``field`` finds the first), then one line for each of the others. A check
that needs what an earlier one refused is skipped by its caller (``ok_since``), so one
mistake is named once, not again in everything that follows from it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from common.errors import InvalidArgument

T = TypeVar("T")

MAX_LISTED = 20  # problems named after the first; the rest are counted
_NUMBERS = re.compile(r"(\d+)")


def _path_order(problem: InvalidArgument) -> list[tuple[int, str]]:
    """A field path as a person orders it: its numbers as numbers."""
    parts = _NUMBERS.split(problem.field or "")
    return [(int(p), "") if i % 2 else (-1, p) for i, p in enumerate(parts)]


def unknown_key(key: str, known: Collection[str], holds: str = "known here") -> str:
    """What a key no one knows is told: the known key it is likely a misspelling of
    ("did you mean 'max_retries'?"), else every key known there."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; {holds}: {', '.join(sorted(known))}"


def all_at_once(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``parse(*args, problems=...)`` with a ``Problems`` of its own, raising what it noted:
    how a parser that notes its problems in a caller's ``Problems`` is called alone."""
    problems = Problems()
    result = parse(*args, problems=problems, **kwargs)
    problems.raise_any()
    return result


class Problems:
    """The problems found in one document so far."""

    def __init__(self) -> None:
        self.found: list[InvalidArgument] = []

    def take(self, check: Callable[..., T], *args: Any, fallback: T) -> T:
        """``check(*args)``, or ``fallback`` when it refused (the refusal is noted)."""
        try:
            return check(*args)
        except InvalidArgument as exc:
            self.add(exc)
            return fallback

    def check(self, check: Callable[..., object], *args: Any) -> None:
        """Run ``check(*args)``, noting its refusal."""
        self.take(check, *args, fallback=None)

    def add(self, problem: InvalidArgument) -> None:
        """Note ``problem`` (once: a setting shared by several parts is refused once)."""
        if all(p.message != problem.message for p in self.found):
            self.found.append(problem)

    def ok_since(self, count: int) -> bool:
        """Nothing refused since there were ``count`` problems."""
        return len(self.found) == count

    def __len__(self) -> int:
        return len(self.found)

    def raise_any(self) -> None:
        """Raise what was found (nothing found: return)."""
        if not self.found:
            return
        found = sorted(self.found, key=_path_order)  # stable: a field's own in their order
        first, rest = found[0], found[1:]
        if not rest:
            raise first
        lines = [f"- {p.message}" for p in rest[:MAX_LISTED]]
        if len(rest) > MAX_LISTED:
            lines.append(f"- and {len(rest) - MAX_LISTED} more")
        more = f"{len(rest)} more problem" + ("s" if len(rest) > 1 else "")
        raise InvalidArgument(f"{first.reason}\n{more}:\n" + "\n".join(lines), field=first.field)
