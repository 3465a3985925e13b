"""``LeaseFence``: until when the executor knows each of its steps' leases to hold.

The scheduler re-queues a step whose lease lapses (its executor died, froze or lost the
network). For the retry never to overlap the first attempt, the first attempt must stop
before the lease can lapse. So the executor runs a step only while it can show the lease
held:

- an assignment holds for one lease period, less a margin, from the sending of the last
  heartbeat (or the hello) the scheduler had heard from this executor when it leased the
  step, which the assignment names (``leased_after_heartbeat``): the lease began after that.
  Not from the assignment's arrival: an executor frozen (or a network stalled) while an
  assignment waited in its socket would count a lease that had lapsed as new, and run a
  step that was by then running elsewhere (a soak of faults in a row found it, 2026-12-08).
  An older scheduler does not name the heartbeat: its assignments count from arrival;
- a heartbeat renews the leases of the steps it lists; once the scheduler acknowledges it
  (``HeartbeatAck``, after the renewal is written), those leases hold until the heartbeat's
  *send* time plus one lease period, less the margin — the scheduler's new deadline is
  later than that, since it renewed after the heartbeat was sent.

Past that time the worker process kills itself
(``services.executor.worker_confinement.die_with``) and the executor reports the attempt
failed. Times are ``time.monotonic()``; the argument assumes that the scheduler's clock and
this host's advance at the same rate, and that clocks of different hosts differ by less than
the margin.
"""

from __future__ import annotations

from collections import OrderedDict

from services.common.leases import fence_margin

Key = tuple[str, str]  # run id, step id


class LeaseFence:
    """Deadlines by step, renewed by acknowledged heartbeats."""

    def __init__(self) -> None:
        self.enabled = False  # a scheduler that does not acknowledge heartbeats: no fence
        self.lease_seconds = 30.0
        self.margin = 6.0
        self._until: dict[Key, float] = {}
        self._sent: OrderedDict[int, tuple[float, tuple[Key, ...]]] = OrderedDict()
        self._sent_at: OrderedDict[int, float] = OrderedDict()  # every heartbeat's, acked or not
        self._hello_at = 0.0  # when this stream's hello was sent
        self._sequence = 0
        self.stamped = False  # the scheduler names the heartbeat it heard before each lease

    def configure(self, lease_seconds: float, acks_heartbeats: bool, stamped: bool = False) -> None:
        """Set from the scheduler's welcome. The margin is a fifth of the lease, at least
        one second, at most half the lease."""
        self.enabled = acks_heartbeats and lease_seconds > 0
        self.lease_seconds = lease_seconds
        self.margin = fence_margin(lease_seconds)
        self.stamped = stamped

    def hello_sent(self, now: float) -> None:
        """A stream's hello is being sent: its leases before any heartbeat count from now."""
        self._hello_at = now

    def granted(self, key: Key, now: float, heard: int = 0) -> None:
        """A step was assigned, the scheduler having last heard heartbeat ``heard`` (0: the
        hello) when it leased it. One long forgotten counts as lapsed."""
        if self.enabled:
            start = now
            if self.stamped:
                start = min(now, self._sent_at.get(heard, 0.0) if heard else self._hello_at)
            self._until[key] = start + self.lease_seconds - self.margin

    def lapsed(self, key: Key, now: float) -> bool:
        """Whether the step's lease may have lapsed (then it must not start)."""
        until = self._until.get(key)  # (set only while the fence is enabled)
        return until is not None and until <= now

    def heartbeat_sent(self, keys: list[Key], now: float) -> int:
        """A heartbeat listing ``keys`` is being sent; returns its sequence number (0 when
        heartbeats are not acknowledged)."""
        if not self.enabled:
            return 0
        self._sequence += 1
        self._sent[self._sequence] = (now, tuple(keys))
        self._sent_at[self._sequence] = now
        while len(self._sent) > 1000:  # acks that never came (a broken stream)
            self._sent.popitem(last=False)
        while len(self._sent_at) > 1000:
            self._sent_at.popitem(last=False)
        return self._sequence

    def acknowledged(self, sequence: int) -> list[Key]:
        """The scheduler renewed what heartbeat ``sequence`` listed; returns the steps whose
        deadline moved."""
        entry = self._sent.pop(sequence, None)
        while self._sent and next(iter(self._sent)) < sequence:  # older ones: superseded
            self._sent.popitem(last=False)
        if entry is None:
            return []
        sent_at, keys = entry
        moved = []
        for key in keys:
            if key in self._until:
                self._until[key] = max(self._until[key], sent_at + self.lease_seconds - self.margin)
                moved.append(key)
        return moved

    def until(self, key: Key) -> float:
        """When the step must stop unless renewed (monotonic); 0 when there is no fence."""
        return self._until.get(key, 0.0)

    def forget(self, key: Key) -> None:
        self._until.pop(key, None)
