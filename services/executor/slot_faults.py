"""``SlotFaults``: when an executor should stop taking work because steps keep failing in
the executor itself — not in task code — and for how long it rests.

An executor whose disk is full or whose cache is broken fails every step it is given at
once, and under light load it is the one found idle first: without a guard it would take
every team's steps and burn their retries in seconds (the "black hole" of a job queue). So
when ``after_errors`` steps in a row have failed here, of at least two task versions, the
executor rests: it hands back what it holds (RELEASED: no retry used), tells the scheduler in
its heartbeats (``resting_seconds``; the scheduler gives it nothing new meanwhile and
``wtm executor list`` shows it), and takes work again when the rest is over. A rest that is
followed by one more such failure, before any step has ended otherwise, is twice as long as
the one before, up to ``MAX_REST_SECONDS`` (Kubernetes' crash-loop back-off, in spirit).

Two task versions, not one: a package that breaks the executor's own code (say, an archive
that cannot be unpacked) fails on every executor alike, and must fail its own steps (they
use their retries and end FAILED), not put the whole fleet to rest. One executor that fails
the steps of different tasks in a row is the one that is broken.

What counts as "failed here" is the executor's own call: an exception that escaped a slot
(``Executor._slot``). A store that is out (package or artifact downloads failing after their
retries) fails steps on every executor alike and is not counted; neither are cancels and
releases. Any other end of a step — it succeeded, or the task failed, timed out or was
refused — is evidence that the executor works, and clears the count and the back-off.
"""

from __future__ import annotations

from collections import deque

MAX_REST_SECONDS = 600.0


class SlotFaults:
    """The count of steps failed here in a row, and the rest it has earned."""

    def __init__(self, after_errors: int, rest_seconds: float) -> None:
        self.after_errors = after_errors  # 0: never rest
        self.rest_seconds = rest_seconds
        self._streak: deque[str] = deque(maxlen=max(after_errors, 1))  # their digests
        self._rests = 0  # rests since a step last ended otherwise
        self.resting_until = 0.0  # monotonic seconds; 0 when taking work

    def failed_here(self, digests: list[str], now: float) -> float:
        """Steps of these task versions (one call) failed in the executor. Returns how long
        to rest from ``now``, 0 when it goes on taking work."""
        self._streak.extend(digests)
        if self.after_errors == 0 or self.resting(now):
            return 0.0
        on_probation = self._rests > 0  # it rested, and nothing has ended well since
        if not on_probation and (
            len(self._streak) < self.after_errors or len(set(self._streak)) < 2
        ):
            return 0.0
        rest = min(self.rest_seconds * 2**self._rests, max(self.rest_seconds, MAX_REST_SECONDS))
        self._rests += 1
        self.resting_until = now + rest
        return rest

    def ended_otherwise(self) -> None:
        """A step ended in a way that shows the executor works (see the module's note)."""
        self._streak.clear()
        self._rests = 0

    def resting(self, now: float) -> float:
        """Seconds of rest left (0: taking work)."""
        return max(0.0, self.resting_until - now)
