"""The lease arithmetic the scheduler and its executors share.

An executor runs a step only until one lease period, less a margin, after the heartbeat the
scheduler last acknowledged for it (or, for a new assignment, the last one the scheduler had
heard before leasing: ``services/executor/lease_fence.py``). So heartbeats must come more
often than that window, or every lease would lapse at the executor before it is renewed.
"""

from __future__ import annotations


def fence_margin(lease_seconds: float) -> float:
    """How much earlier than the scheduler's deadline an executor stops a step: a fifth of
    the lease, at least one second, at most half the lease (for clock rates and delays)."""
    return min(max(1.0, lease_seconds / 5), lease_seconds / 2)


def heartbeat_problem(lease_seconds: float, heartbeat_seconds: float) -> str | None:
    """Why heartbeats this far apart cannot keep leases of this length, or None."""
    window = lease_seconds - fence_margin(lease_seconds)
    if heartbeat_seconds < window:
        return None
    return (
        f"--heartbeat-seconds / WTM_HEARTBEAT_SECONDS: must be shorter than the lease less "
        f"its margin ({window:g} s of a {lease_seconds:g} s WTM_LEASE_SECONDS; a third of the "
        f"lease or less is advised): an executor would give back every step before a "
        f"heartbeat renewed its lease, got {heartbeat_seconds:g}"
    )
