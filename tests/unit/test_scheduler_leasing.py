"""The scheduler's lease rounds against a real valkey (``scheduler_core.py``): a batch's
first runs leased before the rest are queued, a submit to an idle fleet leased in its own
round trip, an assignment that says its code is proven."""

from __future__ import annotations

from services.scheduler.queue_records import Submission
from tests.unit.scheduler_core import Core, assignments, scenario, step


def test_a_large_batch_leases_its_first_runs_before_the_rest_are_queued(
    valkey_url: str,
) -> None:
    """In one round trip, the free slots waited for every run's script (200 three-step runs:
    27-40 ms of valkey's time). Now the first runs go with the lease; the rest follow."""
    from services.scheduler.leasing import HEAD_RUNS

    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=2)
        queued_later: list[int] = []
        original = c.queue.submit_many

        async def submit_many(runs: list[Submission]) -> list[tuple[bool, str]]:
            queued_later.append(len(runs))
            assert len(assignments(e1)) == 2  # both slots leased before these were queued
            return await original(runs)

        c.queue.submit_many = submit_many  # type: ignore[method-assign]
        fields = {"input_json": "{}", "priority": "5", "sinks": '["a"]'}
        runs = [Submission(f"r{i:03}", {"run_id": f"r{i:03}", **fields}, [step("a", 0)])
                for i in range(HEAD_RUNS + 10)]  # fmt: skip
        created = await c.core.submit(runs)
        assert [ok for ok, _ in created] == [True] * len(runs)
        assert [rid for _, rid in created] == [r.run_id for r in runs]
        assert queued_later == [10]
        await c.lease_round()
        assert assignments(e1) == []  # the slots are taken; the rest wait in the queue
        stats = await c.queue.queue_stats({"q"})
        assert stats["q"][0] == len(runs) - 2

    scenario(valkey_url, body)


def test_a_submit_to_an_idle_fleet_leases_in_the_same_round_trip(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        await c.submit("r1")
        [a] = assignments(e1)  # no lease round ran: the submit leased it
        assert (a.run_id, a.step_id, a.attempt) == ("r1", "a", 1) and a.lease_id
        assert c.heard.of("run_started") == [("r1", "")]
        await c.report(e1, a, "SUCCEEDED", '{"ok": true}')
        assert c.heard.of("attempt_ended") == [("r1:a", "1:COMPLETED")]
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]

    scenario(valkey_url, body)


def test_an_assignment_says_proven_once_its_task_versions_code_started_on_an_executor(
    valkey_url: str,
) -> None:
    """``StepAssignment.proven``: not while every attempt of the version failed before its
    process() was called (an executor's own error); from the first attempt whose process()
    was called (the executor reported its start), on any executor."""

    async def body(c: Core) -> None:
        e1, e2 = c.executor("e1"), c.executor("e2")
        await c.submit("r1")
        [a] = assignments(e1) + assignments(e2)
        assert not a.proven
        await c.report(e1 if "r1:a" in e1.in_flight else e2, a, "FAILED")  # its code never ran
        await c.submit("r2")
        [b] = assignments(e1) + assignments(e2)
        assert not b.proven
        started = {"t_recv": 1, "t_p0": 2, "t_p1": 3}  # process() was called, and raised
        await c.report(e1 if "r2:a" in e1.in_flight else e2, b, "FAILED", timings=started)
        await c.submit("r3")
        [d] = assignments(e1) + assignments(e2)
        assert d.proven and d.digest == b.digest

    scenario(valkey_url, body)
