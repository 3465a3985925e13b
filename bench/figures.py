"""Percentiles and units, for every benchmark's figures."""

from __future__ import annotations

from typing import Any


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def reaches(value: float, must: float, higher_better: bool) -> bool:
    """Whether ``value`` reaches the target ``must`` (at or above it, or at or below it)."""
    return value >= must if higher_better else value <= must


def target_table(rows: list[tuple[str, str, dict[str, Any], str]], heading: str) -> str:
    """Lines a person reads at the end of a run: each (name, figures as printed, row with
    ``better_is``, ``must_reach``, ``reached``, what follows) as figure, figures, target,
    reached."""
    lines = [f"{'figure':25s} {heading:32s} {'must':8s} reached"]
    for name, figures, row, tail in rows:
        sign = ">=" if row["better_is"] == "higher" else "<="
        verdict = "yes" if row["reached"] else "no"
        lines.append(f"{name:25s} {figures:32s} {sign} {row['must_reach']:<5g} {verdict}{tail}")
    return "\n".join(lines)
