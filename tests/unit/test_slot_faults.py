"""When an executor rests from steps failing in it (``SlotFaults``): pure logic, a clock
passed in."""

from __future__ import annotations

from services.executor.slot_faults import KNOWN_GOOD, MAX_REST_SECONDS, SlotFaults


def test_three_failures_of_two_task_versions_in_a_row_earn_a_rest() -> None:
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    assert faults.failed_here(["a"], now=0) == 0
    assert faults.failed_here(["b"], now=1) == 0
    assert faults.failed_here(["a"], now=2) == 30
    assert faults.resting(now=2) == 30 and faults.resting(now=31) == 1
    assert faults.resting(now=32) == 0


def test_one_task_version_failing_everywhere_is_the_package_not_the_executor() -> None:
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    for t in range(10):
        assert faults.failed_here(["poison"], now=t) == 0
    assert faults.resting(now=10) == 0


def test_one_task_version_whose_code_started_on_some_executor_is_this_executors_fault() -> None:
    """The scheduler says (``proven``) the version's code has started on an executor: this
    one failing it three times in a row, never having run it itself, is the broken one."""
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    assert faults.failed_here(["model"], now=0, proven=["model"]) == 0
    assert faults.failed_here(["model"], now=1, proven=["model"]) == 0
    assert faults.failed_here(["model"], now=2, proven=["model"]) == 30


def test_one_proven_failure_among_unproven_ones_of_the_same_version_is_enough() -> None:
    """From an older scheduler replica (or one that had not seen it run yet) the same version
    comes unproven: what one assignment said of a version holds for the streak."""
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    assert faults.failed_here(["model"], now=0) == 0
    assert faults.failed_here(["model"], now=1, proven=["model"]) == 0
    assert faults.failed_here(["model"], now=2) == 30


def test_a_step_ending_otherwise_between_failures_starts_the_count_again() -> None:
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    faults.failed_here(["a"], now=0)
    faults.failed_here(["b"], now=1)
    faults.ended_otherwise()
    assert faults.failed_here(["a"], now=2) == 0
    assert faults.failed_here(["b"], now=3) == 0
    assert faults.failed_here(["c"], now=4) == 30


def test_failures_while_resting_do_not_lengthen_the_rest() -> None:
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    for t, d in enumerate("abc"):
        faults.failed_here([d], now=t)
    assert faults.failed_here(["d"], now=5) == 0  # another slot's step, already running
    assert faults.resting(now=5) == 27


def test_a_failure_after_a_rest_rests_again_twice_as_long_up_to_the_ceiling() -> None:
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    for t, d in enumerate("abc"):
        faults.failed_here([d], now=t)
    rests, now = [], 100.0
    for _ in range(8):
        rest = faults.failed_here(["a"], now)  # on probation: one failure is enough
        rests.append(rest)
        now += rest + 1
    assert rests == [60, 120, 240, 480, MAX_REST_SECONDS, MAX_REST_SECONDS, 600, 600]
    faults.ended_otherwise()  # it ran a step: the back-off starts over
    for d in "ab":
        assert faults.failed_here([d], now) == 0
    assert faults.failed_here(["c"], now) == 30


def test_a_failed_batch_counts_each_of_its_steps() -> None:
    faults = SlotFaults(after_errors=3, rest_seconds=5)
    assert faults.failed_here(["a", "a", "b"], now=0) == 5


def test_zero_errors_means_never_rest() -> None:
    faults = SlotFaults(after_errors=0, rest_seconds=30)
    for t in range(10):
        assert faults.failed_here([str(t)], now=t) == 0


def test_one_task_version_that_ran_well_here_before_failing_now_is_the_executor() -> None:
    """A package's bytes do not change: one that ran here and now fails in the executor
    itself says the executor changed (a disk that filled up). A fleet serving one task is
    covered once its executor has worked; a package that never ran here is not enough."""
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    faults.ended_otherwise(["only"])
    for t in range(2):
        assert faults.failed_here(["only"], now=t) == 0
    assert faults.failed_here(["only"], now=2) == 30
    fresh = SlotFaults(after_errors=3, rest_seconds=30)
    fresh.ended_otherwise(["other"])
    for t in range(5):
        assert fresh.failed_here(["never-ran"], now=t) == 0


def test_the_versions_known_good_are_the_most_recent_thousand() -> None:
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    faults.ended_otherwise(["first"])
    faults.ended_otherwise(f"d{i}" for i in range(KNOWN_GOOD))
    for t in range(3):  # "first" was forgotten: its failures alone do not trip
        assert faults.failed_here(["first"], now=t) == 0
    faults.ended_otherwise(["d5"])
    assert [faults.failed_here(["d5"], now=t) for t in range(3)] == [0, 0, 30]


def test_an_operator_ends_a_rest_but_not_its_back_off() -> None:
    """``wtm executor resume`` on a resting executor (``EndRest``): it takes work at once;
    should its steps fail in it again before one ends otherwise, it rests twice as long."""
    faults = SlotFaults(after_errors=3, rest_seconds=30)
    for t in range(3):
        faults.failed_here([f"v{t}"], now=t)
    assert faults.resting(now=3) == 29
    assert faults.end_rest(now=4) and faults.resting(now=4) == 0
    assert not faults.end_rest(now=5)  # not resting: nothing to end
    assert faults.failed_here(["v9"], now=6) == 60  # on probation: the next rest is doubled
    assert faults.end_rest(now=7)
    faults.ended_otherwise(["v9"])  # a step ended otherwise: the back-off is gone
    assert faults.end_rest(now=8) is False
    for t in range(3):
        assert faults.failed_here([f"w{t}"], now=10 + t) == (30 if t == 2 else 0)
