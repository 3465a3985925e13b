"""``LeaseFence``: until when an executor may run a step it was assigned. Pure logic, on
made-up monotonic times."""

from __future__ import annotations

from services.executor.lease_fence import LeaseFence

KEY = ("run", "step")


def fence(stamped: bool = True) -> LeaseFence:
    f = LeaseFence()
    f.configure(10, acks_heartbeats=True, stamped=stamped)  # margin 2 s: 8 s held
    f.hello_sent(100.0)
    return f


def test_a_lease_counts_from_the_heartbeat_the_scheduler_had_heard_not_from_arrival() -> None:
    """An assignment read at 130 (the executor was frozen) whose lease was made after the
    heartbeat sent at 105: it held until 113 at the latest, so it must not start."""
    f = fence()
    sequence = f.heartbeat_sent([], 105.0)
    f.granted(KEY, 130.0, heard=sequence)
    assert f.until(KEY) == 113.0
    assert f.lapsed(KEY, 130.0)


def test_before_any_heartbeat_a_lease_counts_from_the_hello() -> None:
    f = fence()
    f.granted(KEY, 101.0, heard=0)
    assert f.until(KEY) == 108.0
    assert not f.lapsed(KEY, 107.9) and f.lapsed(KEY, 108.0)


def test_a_lease_never_counts_from_later_than_its_arrival() -> None:
    f = fence()
    sequence = f.heartbeat_sent([], 105.0)
    f.hello_sent(200.0)  # (a hello is never later than what its stream brings; a guard)
    f.granted(KEY, 104.0, heard=0)
    assert f.until(KEY) == 112.0
    f.granted(KEY, 104.0, heard=sequence)
    assert f.until(KEY) == 112.0


def test_a_heartbeat_long_forgotten_counts_as_lapsed() -> None:
    f = fence()
    f.granted(KEY, 130.0, heard=12345)  # not one this executor sent (or remembers)
    assert f.lapsed(KEY, 130.0)


def test_an_acknowledged_heartbeat_renews_a_lease_counted_from_an_older_one() -> None:
    f = fence()
    first = f.heartbeat_sent([], 105.0)
    f.granted(KEY, 106.0, heard=first)
    renewing = f.heartbeat_sent([KEY], 110.0)
    assert f.acknowledged(renewing) == [KEY]
    assert f.until(KEY) == 118.0 and not f.lapsed(KEY, 117.0)


def test_an_older_schedulers_assignments_count_from_their_arrival() -> None:
    f = fence(stamped=False)  # its welcome did not say stamps_leases: heard is always 0
    f.granted(KEY, 130.0, heard=0)
    assert f.until(KEY) == 138.0 and not f.lapsed(KEY, 130.0)


def test_without_acknowledged_heartbeats_there_is_no_fence() -> None:
    f = LeaseFence()
    f.configure(10, acks_heartbeats=False, stamped=True)
    f.granted(KEY, 130.0, heard=0)
    assert f.until(KEY) == 0.0 and not f.lapsed(KEY, 1e9)
