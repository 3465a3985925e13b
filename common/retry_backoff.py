"""A task's own retry backoff (task.json), named as Celery names it: ``retry_backoff``
seconds before its first retry, doubling with each retry up to ``retry_backoff_max``
seconds (600 when it is not given, Celery's default), each delay drawn between half and all
of that (the scheduler's own policy's jitter). A task without one retries on the scheduler's
policy (1 s doubling to 60 s). Temporal gives each activity a retry policy the same way.

The registry checks it; the scheduler gives each of the task's steps the two figures in ms,
and ``complete.lua`` turns a failed attempt into the time of its retry."""

from __future__ import annotations

from typing import Any

MAX_SECONDS = 86_400.0  # a day
LEAST_SECONDS = 0.1
DEFAULT_MAX_SECONDS = 600.0


class BadBackoff(ValueError):
    """A task.json retry backoff that is not one: ``key`` is the key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _seconds(doc: dict[str, Any], key: str, least: float) -> float:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadBackoff(key, "must be a number of seconds")
    if not least <= value <= MAX_SECONDS:
        raise BadBackoff(key, f"must be from {least:g} to {MAX_SECONDS:g} seconds")
    return float(value)


def of_manifest(doc: dict[str, Any]) -> tuple[float, float] | None:
    """(the first retry's delay, the longest) in seconds, or None for the scheduler's own;
    ``BadBackoff`` naming the key when it is not one."""
    if doc.get("retry_backoff") is None:
        if doc.get("retry_backoff_max") is not None:
            raise BadBackoff("retry_backoff_max", "needs a retry_backoff (the first delay)")
        return None
    first = _seconds(doc, "retry_backoff", LEAST_SECONDS)
    if doc.get("retry_backoff_max") is None:
        return first, max(first, DEFAULT_MAX_SECONDS)
    return first, _seconds(doc, "retry_backoff_max", first)


def said(backoff: tuple[float, float]) -> str:
    """How a task's backoff reads: "5s doubling to 600s"."""
    return f"{backoff[0]:g}s doubling to {backoff[1]:g}s"
