"""``SlotFaults``: when an executor should stop taking work because steps keep failing in
the executor itself — not in task code — and for how long it rests.

An executor whose disk is full or whose cache is broken fails every step it is given at
once, and under light load it is the one found idle first: without a guard it would take
every team's steps and burn their retries in seconds (the "black hole" of a job queue). So
when ``after_errors`` steps in a row have failed here — of at least two task versions, or of
one that has run well here before or, as far as the scheduler has seen, on any executor (the
assignment's ``proven``) — the executor rests: it hands back what it holds
(RELEASED: no retry used), tells the scheduler in its heartbeats (``resting_seconds``; the
scheduler gives it nothing new meanwhile and ``wtm executor list`` shows it), and takes work
again when the rest is over, or when an operator ends it (``wtm executor resume``). A rest
that is followed by one more such failure, before any step has ended otherwise, is twice as
long as the one before, up to ``MAX_REST_SECONDS`` (Kubernetes' crash-loop back-off, in
spirit).

Two task versions, not one: a package that breaks the executor's own code would fail on
every executor alike, and must fail its own steps (they use their retries and end FAILED),
not put the whole fleet to rest. (What a package or an input can make fail here is refused
as theirs — ``common.packaging``, ``common.artifacts`` — so this is the second line.) One
executor that fails the steps of different tasks in a row is the one that is broken; and so
is one that fails a task version that ran well here before, since a package's bytes do not
change: that covers a fleet serving a single task, once its executor has worked. And one
that fails a version whose code has started on any executor (the scheduler says so in
the assignment, ``services/scheduler/proven_packages.py``): that covers an executor broken
from its start, in a way its start-up check does not see, in such a fleet.

What counts as "failed here" is the executor's own call: an exception that escaped a slot
(``Executor._slot``). A store that is out (package or artifact downloads failing after their
retries) fails steps on every executor alike and is not counted; neither are cancels and
releases. Any other end of a step — it succeeded, or the task failed, timed out or was
refused — is evidence that the executor works, and clears the count and the back-off.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

MAX_REST_SECONDS = 600.0
KNOWN_GOOD = 1024  # task versions remembered as having run well here (the most recent)


class SlotFaults:
    """The count of steps failed here in a row, and the rest it has earned."""

    def __init__(self, after_errors: int, rest_seconds: float) -> None:
        self.after_errors = after_errors  # 0: never rest
        self.rest_seconds = rest_seconds
        # Their digests, each with whether its code has started on some executor (``proven``).
        self._streak: deque[tuple[str, bool]] = deque(maxlen=max(after_errors, 1))
        self._rests = 0  # rests since a step last ended otherwise
        self._worked: dict[str, None] = {}  # digests that ran well here, oldest first
        self.resting_until = 0.0  # monotonic seconds; 0 when taking work

    def failed_here(self, digests: list[str], now: float, proven: Iterable[str] = ()) -> float:
        """Steps of these task versions (one call) failed in the executor; ``proven``, those
        of them whose code has started on some executor. Returns how long to rest from
        ``now``, 0 when it goes on taking work."""
        elsewhere = set(proven)
        self._streak.extend((d, d in elsewhere) for d in digests)
        if self.after_errors == 0 or self.resting(now):
            return 0.0
        on_probation = self._rests > 0  # it rested, and nothing has ended well since
        broken_here = len({d for d, _ in self._streak}) >= 2 or any(
            ran or d in self._worked for d, ran in self._streak
        )
        if not on_probation and (len(self._streak) < self.after_errors or not broken_here):
            return 0.0
        rest = min(self.rest_seconds * 2**self._rests, max(self.rest_seconds, MAX_REST_SECONDS))
        self._rests += 1
        self.resting_until = now + rest
        return rest

    def ended_otherwise(self, digests: Iterable[str] = ()) -> None:
        """Steps of these task versions ended in a way that shows the executor works (see
        the module's note)."""
        self._streak.clear()
        self._rests = 0
        for digest in digests:
            self._worked.pop(digest, None)
            self._worked[digest] = None  # the most recent last
        while len(self._worked) > KNOWN_GOOD:
            del self._worked[next(iter(self._worked))]

    def end_rest(self, now: float) -> bool:
        """An operator ended the rest (``EndRest``): take work again now. The back-off stays:
        one more such failure before a step ends otherwise starts a rest twice as long, as
        after a rest that ran out. False when it was not resting."""
        was_resting = self.resting(now) > 0.0
        self.resting_until = 0.0
        return was_resting

    def resting(self, now: float) -> float:
        """Seconds of rest left (0: taking work)."""
        return max(0.0, self.resting_until - now)
