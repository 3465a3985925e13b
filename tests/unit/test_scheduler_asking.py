"""Which executors a lease round asks, in the scheduler's core against a real valkey
(``scheduler_core.py``): idle ones only when work comes to their queues."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.scheduler import run_queue
from services.scheduler.fleet import (
    ExecutorProfile,
)
from services.scheduler.queue_records import Submission, Want
from tests.unit.scheduler_core import Core, assignments, chain, scenario, state_of, step


def test_an_executor_that_found_its_queues_empty_is_not_asked_until_work_is_queued(
    valkey_url: str,
) -> None:
    """A large fleet's idle executors cost nothing per lease round: one that found nothing
    sits out until steps are queued (here or on another replica), then is asked again."""

    async def body(c: Core) -> None:
        idle = c.core.open_session(ExecutorProfile("idle", ["other"], 2, {}))
        busy = c.executor("busy", slots=2)
        await c.submit("r1")  # busy takes it; idle is asked too and finds nothing
        assert [a.run_id for a in assignments(busy)] == ["r1"] and assignments(idle) == []

        async def asked() -> set[str]:
            async with c.core.leaser.round() as r:
                return {w.executor_id for w in r.wants}

        # Both sit this round out: idle found nothing, and busy got less than it asked for
        # (one step for two slots), so its queue was left empty too.
        assert await asked() == set()
        c.queue.work_was_queued()  # e.g. another replica said it queued work
        assert await asked() == {"busy", "idle"}
        await c.lease_round()  # both asked; neither queue has anything
        assert await asked() == set()  # so a round now costs no script call at all
        c.clock.advance(1.0)  # the backstop: each is asked again once a second
        assert await asked() == {"busy", "idle"}
        await c.lease_round()
        elsewhere = step("a", 0)
        elsewhere.fields["queue"] = "other"
        fields = {"run_id": "r2", "input_json": "{}", "priority": "5", "sinks": '["a"]'}
        await c.core.submit([Submission("r2", fields, [elsewhere])])
        assert [a.run_id for a in assignments(idle)] == ["r2"]  # new work reaches it at once

    scenario(valkey_url, body)


def test_a_result_that_queues_a_dependent_asks_only_executors_of_its_queue(
    valkey_url: str,
) -> None:
    """complete.lua names the queues it filled: an idle executor of another queue sits the
    next round out (a result that made steps ready used to wake every idle executor)."""

    async def body(c: Core) -> None:
        elsewhere = c.core.open_session(ExecutorProfile("elsewhere", ["other"], 2, {}))
        worker = c.executor("worker", slots=1)
        await c.core.submit([chain("r1")])
        [a] = assignments(worker)
        assert assignments(elsewhere) == []
        assert "elsewhere" in c.core.leaser.asked.idle  # it found its queue empty
        epoch = c.queue.queued_epoch
        await c.report(worker, a, "SUCCEEDED")  # queues b on "q"; the freed slot takes it
        assert [x.step_id for x in assignments(worker)] == ["b"]
        assert c.queue.queued_epoch == epoch  # no blind "work somewhere" bump
        async with c.core.leaser.round() as r:
            assert "elsewhere" not in {w.executor_id for w in r.wants}
        assert "elsewhere" in c.core.leaser.asked.idle

    scenario(valkey_url, body)


def test_an_idle_executor_whose_slot_frees_is_asked_for_work_queued_while_it_was_full(
    valkey_url: str,
) -> None:
    """An executor found idle while its slot was busy (its prefetch place found nothing) is
    passed over by new work (no free slot then); when its slot frees, the round of that
    result asks it, rather than leaving the work to the one-second backstop (seen in the
    200-DAG burst: the last eight steps waited ~0.9 s with both executors idle)."""

    async def body(c: Core) -> None:
        c.core.leaser.prefetch = 1
        worker = c.executor("worker", slots=1)
        await c.submit("r1")
        [first] = assignments(worker)
        await c.lease_round()  # its prefetch place asks, and finds the queue empty
        assert "worker" in c.core.leaser.asked.idle
        await c.submit("r2")  # new work, while the slot is busy: not leased now
        assert assignments(worker) == []
        await c.report(worker, first, "SUCCEEDED")  # the slot frees: r2 goes at once
        assert [a.run_id for a in assignments(worker)] == ["r2"]

    scenario(valkey_url, body)


def test_one_run_after_another_makes_one_dispatch_call_each(
    valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sequential client's runs: the submit's round trip leases the step to a free slot and
    leaves the queue empty, so the executor sits out the round trip of the step's result (a
    step without dependents queues nothing), and the submit makes no prefetch ask (the free
    slots take all the new work). Until 2026-12-07 each run made four dispatch calls, three of
    them finding nothing: the prefetch ask beside the lease, and both asks again with the
    result."""
    calls: list[Want] = []
    dispatch_calls = run_queue.dispatch_calls

    def counted(wants: list[Want], *args: Any) -> Any:
        calls.extend(wants)
        return dispatch_calls(wants, *args)

    monkeypatch.setattr(run_queue, "dispatch_calls", counted)

    async def body(c: Core) -> None:
        c.core.leaser.prefetch = 4
        worker = c.executor("worker", slots=2)
        for n in range(4):
            calls.clear()
            await c.submit(f"r{n}")
            [a] = assignments(worker)
            await c.report(worker, a, "SUCCEEDED")
            assert await state_of(c, f"r{n}") == ("COMPLETED", "")
            asks = [(w.executor_id, w.n, w.held) for w in calls]
            if n == 0:  # a new executor is asked for its slots and its prefetch room
                assert asks[:2] == [("worker", 2, False), ("worker", 4, True)], asks
            else:
                assert asks == [("worker", 2, False)], asks

    scenario(valkey_url, body)


def test_a_result_with_dependents_asks_its_executor_even_after_its_queue_ran_dry(
    valkey_url: str,
) -> None:
    """An executor that got less than it asked for sits rounds out, but the result of a step
    with dependents asks it again in its own round trip, so the next step starts there."""

    async def body(c: Core) -> None:
        worker = c.executor("worker", slots=2)
        await c.core.submit([chain("r1")])
        [a] = assignments(worker)  # one step for two slots: the queue is left empty
        assert "worker" in c.core.leaser.asked.idle
        await c.report(worker, a, "SUCCEEDED")  # queues b, and leases it in the same trip
        [b] = assignments(worker)
        assert b.step_id == "b"
        await c.report(worker, b, "SUCCEEDED")
        assert c.heard.of("run_ended") == [("r1", "COMPLETED")]

    scenario(valkey_url, body)


def fan(run_id: str, branches: list[str]) -> Submission:
    """A run of ``a``, then ``branches`` side by side."""
    a, rest = step("a", 0), [step(b, 0) for b in branches]
    a.dependents.extend(branches)
    for s in rest:
        s.deps.append("a")
    fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": json.dumps(branches)}
    return Submission(run_id, fields, [a, *rest])


def counting_dispatch_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, bool]]:
    """The dispatch.lua calls made from now on: (executor, places asked, held)."""
    calls: list[tuple[str, int, bool]] = []
    dispatch_calls = run_queue.dispatch_calls

    def counted(wants: list[Want], *args: Any) -> Any:
        calls.extend((w.executor_id, w.n, w.held) for w in wants)
        return dispatch_calls(wants, *args)

    monkeypatch.setattr(run_queue, "dispatch_calls", counted)
    return calls


def test_a_dags_branches_are_leased_by_one_dispatch_call_and_their_ends_make_none(
    valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bench's DAG (a, then two branches) on one executor of eight slots: the submit's
    round trip leases a, a's result leases both branches for free slots (no prefetch ask: the
    free slots take all a may queue), and the branches' results ask nothing (what a queued
    was leased in its own round trip). Until 2026-12-08 a DAG made five dispatch calls, three
    finding nothing: the prefetch ask with a's result, both asks again with a branch's."""
    calls = counting_dispatch_calls(monkeypatch)

    async def body(c: Core) -> None:
        c.core.leaser.prefetch = 32
        worker = c.executor("worker", slots=8)
        for n in range(3):
            calls.clear()
            await c.core.submit([fan(f"r{n}", ["l", "r"])])
            asked = {"submit": list(calls)}
            [a] = assignments(worker)
            calls.clear()
            await c.report(worker, a, "SUCCEEDED")
            asked["a"] = list(calls)
            branches = assignments(worker)
            assert sorted(b.step_id for b in branches) == ["l", "r"]
            for b in branches:
                calls.clear()
                await c.report(worker, b, "SUCCEEDED")
                asked[b.step_id] = list(calls)
            assert await state_of(c, f"r{n}") == ("COMPLETED", "")
            if n:  # the first run's submit asks a new executor for its prefetch room too
                assert asked == {
                    "submit": [("worker", 8, False)],
                    "a": [("worker", 8, False)],
                    "l": [],
                    "r": [],
                }, asked

    scenario(valkey_url, body)


def test_steps_a_result_queues_beyond_the_free_slots_are_prefetched_by_the_next_round(
    valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the queues drained, a result's round trip asks only for the free slots; what it
    queues beyond them is left waiting, counted as new work, and a round is called at once
    that leases it to the executor's prefetch room."""
    calls = counting_dispatch_calls(monkeypatch)

    async def body(c: Core) -> None:
        c.core.leaser.prefetch = 4
        worker = c.executor("worker", slots=2)
        await c.submit("r0")  # one step for two slots: the queue is drained after it
        [r0] = assignments(worker)
        await c.report(worker, r0, "SUCCEEDED")
        await c.core.submit([fan("r1", ["b1", "b2", "b3", "b4"])])
        [a] = assignments(worker)
        c.core.leaser.work_queued.clear()
        calls.clear()
        await c.report(worker, a, "SUCCEEDED")
        assert calls == [("worker", 2, False)]  # the free slots only
        assert len(assignments(worker)) == 2
        assert c.core.leaser.work_queued.is_set()  # a round is called for the other two
        calls.clear()
        await c.lease_round()
        assert ("worker", 4, True) in calls
        assert len(assignments(worker)) == 2  # held ahead, for the slots as they free

    scenario(valkey_url, body)
