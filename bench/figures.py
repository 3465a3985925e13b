"""Percentiles and units, for every benchmark's figures."""

from __future__ import annotations


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def reaches(value: float, must: float, higher_better: bool) -> bool:
    """Whether ``value`` reaches the target ``must`` (at or above it, or at or below it)."""
    return value >= must if higher_better else value <= must
