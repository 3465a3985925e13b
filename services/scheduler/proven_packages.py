"""``ProvenPackages``: the task versions whose code this scheduler has seen start on some
executor, so that an executor that fails one of them in its own code can tell it is the one
that is broken.

An executor rests when steps keep failing in the executor itself (``services/executor/
slot_faults.py``), but only when the failures cannot be the package's: they span two task
versions, or one that ran well on that executor before. An executor broken from its start
in a way its start-up check does not see, in a fleet serving one task, met neither, and took
its share of that task's steps and failed each. The scheduler sees the whole fleet: each
assignment says whether its task version's ``process()`` has been called on any executor
(``StepAssignment.proven``), and such a version failing in one executor is that executor's
fault, as it would be had it run well there.

In memory, per replica, the most recent ``KEEP`` versions: it is a hint about the fleet, and
an assignment from a replica (or a restart) that has not seen a version run yet just says
no, as before.
"""

from __future__ import annotations

from services.scheduler.listeners import RunListener

KEEP = 4096


class ProvenPackages(RunListener):
    """Task digests whose ``process()`` was called on an executor, the most recent last."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._digests: dict[str, None] = {}

    def attempt_ended(self, member: str, snapshot: dict[str, str], output_json: str) -> None:
        digest = snapshot.get("digest")
        if not digest or not snapshot.get("t_p0"):  # its code never started (or a cache hit)
            return
        if digest in self._digests:
            if next(reversed(self._digests)) == digest:
                return
            del self._digests[digest]
        self._digests[digest] = None
        if len(self._digests) > self.keep:
            del self._digests[next(iter(self._digests))]

    def __contains__(self, digest: str) -> bool:
        return digest in self._digests
