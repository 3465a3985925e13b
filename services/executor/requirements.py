"""Task ``requirements`` checked against what this executor has installed.

A package that needs something the executor lacks fails at once (FATAL, naming the
requirement) instead of failing later with an ImportError. Installing missing requirements
into a per-requirements cache is not built yet: executors run with what their image has.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement


@cache
def unmet(requirement: str) -> str | None:
    """Why ``requirement`` (a PEP 508 string) is not met here, or None when it is."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        return f"{requirement!r} is not a valid requirement ({exc})"
    if req.marker is not None and not req.marker.evaluate():
        return None
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return f"{requirement!r} is not installed on this executor"
    if req.specifier and not req.specifier.contains(installed, prereleases=True):
        return f"{requirement!r} is not met: this executor has {req.name} {installed}"
    return None


def missing(requirements: list[str]) -> list[str]:
    """The problems with ``requirements`` here; empty when every one is met."""
    return [problem for r in requirements if (problem := unmet(r)) is not None]
