"""``ProvenPackages``: which task versions' code the scheduler has seen start on an
executor (the assignment's ``proven``), from the step hashes of ended attempts."""

from __future__ import annotations

from services.scheduler.proven_packages import ProvenPackages


def ended(proven: ProvenPackages, digest: str, **fields: str) -> None:
    proven.attempt_ended("run:step", {"digest": digest, **fields}, "")


def test_a_version_is_proven_once_its_process_was_called_whatever_the_verdict() -> None:
    proven = ProvenPackages()
    ended(proven, "ok", state="COMPLETED", t_p0="1", t_p1="2")
    ended(proven, "raised", state="FAILED", t_p0="1", t_p1="2", error="ValueError: no")
    assert "ok" in proven and "raised" in proven


def test_an_attempt_whose_code_never_started_proves_nothing() -> None:
    """An executor error while unpacking, a lease that ran out, a cached result: no t_p0."""
    proven = ProvenPackages()
    ended(proven, "broken", state="FAILED", error="executor error: OSError", t_recv="1")
    ended(proven, "expired", state="QUEUED")
    ended(proven, "", t_p0="1")
    assert "broken" not in proven and "expired" not in proven and "" not in proven


def test_it_keeps_the_most_recently_proven_versions() -> None:
    proven = ProvenPackages(keep=2)
    for digest in ("a", "b", "a", "c"):  # "a" again: it is the most recent, "b" goes
        ended(proven, digest, t_p0="1")
    assert "a" in proven and "c" in proven and "b" not in proven
