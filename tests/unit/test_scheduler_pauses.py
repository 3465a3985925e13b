"""Paused queues and executors in the scheduler's core against a real valkey
(``scheduler_core.py``)."""

from __future__ import annotations

from collections import Counter

from services.scheduler import wake
from services.scheduler.fleet import (
    ExecutorProfile,
)
from services.scheduler.queue_records import Submission
from tests.unit.scheduler_core import Core, assignments, scenario, step


def test_a_paused_queue_keeps_its_steps_until_it_is_resumed(valkey_url: str) -> None:
    """PauseQueue: the lease rounds leave a paused queue out of what they ask each executor
    for; its steps stay queued, another queue's are leased as before, and a resume reaches
    the idle executors in the next round."""

    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=2)
        both = c.core.open_session(ExecutorProfile("both", ["q", "other"], 2, {}))
        c.core.pause_only(frozenset({"q"}))
        await c.submit("r1")
        await c.lease_round()
        assert assignments(e1) == [] and assignments(both) == []
        elsewhere = step("a", 0)
        elsewhere.fields["queue"] = "other"
        fields = {"run_id": "r2", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        await c.core.submit([Submission("r2", fields, [elsewhere])])
        assert [a.run_id for a in assignments(both)] == ["r2"]  # its other queue is not paused
        assert await c.queue.queue_stats({"q"}) != {"q": (0, 0)}  # r1's step still waits
        c.core.pause_only(frozenset())
        await c.lease_round()
        assert [a.run_id for a in assignments(e1) + assignments(both)] == ["r1"]

    scenario(valkey_url, body)


def test_the_first_step_on_a_new_labelled_queue_is_leased_in_the_next_round(
    valkey_url: str,
) -> None:
    """An idle executor's queues were worked out before a labelled variant existed; the first
    step on it wakes a round that asks every idle executor (it waited for the one-second
    backstop before), and a wake message naming a variant another replica made does too."""

    async def body(c: Core) -> None:
        gpu = c.core.open_session(ExecutorProfile("gpu", ["q"], 4, {"gpu": "true"}))
        await c.lease_round()  # idle: asked, found nothing
        labelled = step("a", 0)
        labelled.fields["queue"] = "q|gpu=true"
        fields = {"run_id": "g1", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        await c.core.submit([Submission("g1", fields, [labelled])])
        assert c.queue.work_queued.is_set()
        await c.lease_round()
        assert [a.run_id for a in assignments(gpu)] == ["g1"]
        epoch = c.queue.queued_epoch
        c.queue.heard(wake.message("another-replica", Counter({"q|zone=eu": 1})))
        assert c.queue.queued_epoch == epoch + 1 and "q|zone=eu" in c.queue.queue_variants

    scenario(valkey_url, body)


def test_pausing_a_queue_holds_its_labelled_variants_and_a_variants_pause_only_it(
    valkey_url: str,
) -> None:
    """A task with executor labels queues on a variant ("q|gpu=true"): pausing "q" holds it
    too (the operator names the task's queue), while pausing the variant alone leaves "q"."""

    async def body(c: Core) -> None:
        gpu = c.core.open_session(ExecutorProfile("gpu", ["q"], 4, {"gpu": "true"}))
        labelled = step("a", 0)
        labelled.fields["queue"] = "q|gpu=true"
        fields = {"run_id": "g1", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        c.core.pause_only(frozenset({"q"}))
        await c.core.submit([Submission("g1", fields, [labelled])])
        await c.submit("r1")
        await c.lease_round()
        assert assignments(gpu) == []  # neither the queue nor its variant
        c.core.pause_only(frozenset({"q|gpu=true"}))
        await c.lease_round()
        assert [a.run_id for a in assignments(gpu)] == ["r1"]  # "q" itself goes on
        c.core.pause_only(frozenset())
        await c.lease_round()
        assert [a.run_id for a in assignments(gpu)] == ["g1"]

    scenario(valkey_url, body)


def test_a_paused_executor_is_given_nothing_new_until_it_is_resumed(valkey_url: str) -> None:
    """PauseExecutor (a cordon): the paused executor keeps its stream, the other takes the
    work; resumed, it is asked again in the next round."""

    async def body(c: Core) -> None:
        cordoned, other = c.executor("cordoned", slots=2), c.executor("other")
        c.core.hold_only(frozenset({"cordoned"}))
        for run_id in ("r1", "r2"):
            await c.submit(run_id)
            await c.lease_round()
        assert assignments(cordoned) == [] and [a.run_id for a in assignments(other)] == ["r1"]
        c.core.hold_only(frozenset())
        await c.lease_round()
        assert [a.run_id for a in assignments(cordoned)] == ["r2"]

    scenario(valkey_url, body)
