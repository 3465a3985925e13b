"""A pipeline step's ``await_signal`` (``services/common/signals.py``): checked at
registration, and run by the scheduler's scripts — the step waits, once its dependencies
are done, for a signal sent to it (``signal.lua``), which its task gets as an input field;
a signal that comes early is kept; no signal in time ends the step and the run TIMED_OUT
(``expire_signals.lua``) — against the scheduler's core on a real valkey."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.errors import InvalidArgument
from services.common import signals
from services.registry.pipeline_spec import parse_config
from services.scheduler import keys, run_reuse, signal_records
from services.scheduler.models import Run, StepRun
from services.scheduler.queue_records import Submission
from services.scheduler.signal_records import signal_fields
from tests.unit.scheduler_core import Core, assignments, scenario, sent, state_of, step


@pytest.mark.parametrize(
    ("doc", "where", "said"),
    [
        ("yes", "s", "must be an object"),
        ({"field": "ok", "when": 1}, "s.when", "unknown key"),
        ({}, "s.field", "must name the input field"),
        ({"field": "a b"}, "s.field", "must name the input field"),
        ({"field": "k"}, "s.field", "also in input_mapping"),
        ({"field": "ok", "timeout_seconds": 0}, "s.timeout_seconds", "from 1 to 2592000"),
        ({"field": "ok", "timeout_seconds": True}, "s.timeout_seconds", "from 1 to 2592000"),
        ({"field": "ok", "timeout_seconds": 2592001}, "s.timeout_seconds", "from 1"),
        ({"field": "ok", "on_timeout": "skip"}, "s.on_timeout", "one of fail, continue"),
        ({"field": "ok", "on_timeout": ["continue"]}, "s.on_timeout", "one of fail, continue"),
    ],
)
def test_an_await_signal_is_refused_naming_its_field(doc: Any, where: str, said: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        signals.parse(doc, {"k"}, "s")
    assert refused.value.field == where and said in refused.value.message


def test_the_registry_keeps_an_await_signal_and_refuses_one_beside_a_for_each() -> None:
    steps = [
        {"step_id": "a", "task_id": "echo"},
        {"step_id": "b", "task_id": "echo", "depends_on": ["a"],
         "await_signal": {"field": "approval"}},
    ]  # fmt: skip
    [spec] = parse_config({"pipeline_id": "p", "steps": steps})
    assert spec.steps[1].await_signal == {"field": "approval", "timeout_seconds": 86400}
    assert signals.of_json(spec.steps[1].await_signal) == signals.AwaitSignal("approval", 86400)
    steps[1]["await_signal"] = {
        "field": "approval",
        "timeout_seconds": 60,
        "on_timeout": "continue",
    }
    [spec] = parse_config({"pipeline_id": "p", "steps": steps})
    kept = signals.of_json(spec.steps[1].await_signal)
    assert kept == signals.AwaitSignal("approval", 60, "continue")
    assert json.loads(kept.lua_fields()) == {
        "field": "approval",
        "timeout_ms": 60_000,
        "continue": True,
    }
    steps[1]["for_each"] = {"x": "$.a.items"}
    with pytest.raises(InvalidArgument) as refused:
        parse_config({"pipeline_id": "p", "steps": steps})
    assert "cannot also await a signal" in str(refused.value)
    assert "steps[1].await_signal" in str(refused.value)


def test_a_first_steps_schema_is_checked_without_the_signals_field() -> None:
    schema = {"type": "object", "required": ["x", "approval"],
              "properties": {"x": {}, "approval": {"type": "object"}}}  # fmt: skip
    wait = signals.AwaitSignal("approval")
    assert signals.schema_before(schema, wait)["required"] == ["x"]
    assert "approval" not in signals.schema_before(schema, wait)["properties"]
    assert signals.schema_before(schema, None) is schema


def test_a_signals_document_must_be_a_small_json_object() -> None:
    assert signals.parse_payload('{"ok": true}') == '{"ok":true}'
    assert signals.parse_payload("") == "{}"
    for text, said in [("[1]", "must be a JSON object"), ("{", "payload_json"),
                       ('{"x": "' + "y" * 70_000 + '"}', "is over 65536 bytes")]:  # fmt: skip
        with pytest.raises(InvalidArgument) as refused:
            signals.parse_payload(text)
        assert refused.value.field == "payload_json" and said in str(refused.value)


def awaiting(
    run_id: str, timeout_s: int = 60, max_parallel: int = 0, on_timeout: str = "fail"
) -> Submission:
    """a -> b, which awaits a signal given as its field "approval"."""
    a, b = step("a", 0), step("b", 0)
    a.dependents.append("b")
    b.deps.append("a")
    b.fields.update(
        {
            "signal": signals.AwaitSignal("approval", timeout_s, on_timeout).lua_fields(),
            "mapping": json.dumps({"k": "constant"}),
        }
    )
    fields = {"run_id": run_id, "input_json": "{}", "priority": "5", "sinks": '["b"]'}
    if max_parallel:
        fields["max_parallel"] = str(max_parallel)
        for s in (a, b):
            s.fields["max_parallel"] = str(max_parallel)
    return Submission(run_id, fields, [a, b])


async def first_done(c: Core, run: Submission) -> Any:
    e1 = c.executor("e1", slots=2)
    await c.core.submit([run])
    [a] = assignments(e1)
    await c.report(e1, a, "SUCCEEDED")
    await c.lease_round()
    return e1


def test_a_step_waits_for_its_signal_and_its_task_gets_it(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = await first_done(c, awaiting("r1"))
        assert assignments(e1) == []  # b waits
        h = await c.queue.redis.hgetall(keys.step("r1", "b"))
        assert h[b"state"] == b"PENDING" and int(h[b"awaiting"]) == c.clock.now_ms() + 60_000
        assert await c.queue.redis.zscore(keys.SIGNALS, "r1:b") is not None
        await c.core.reaper.read_depths()  # what operators see: wtm_steps_awaiting_signal
        assert c.core.metrics.awaiting_signal == 1
        words = await c.core.signal_step("r1", "b", '{"ok":true}', "ana")
        assert words == ["queued", "q"]
        assert await c.queue.redis.zscore(keys.SIGNALS, "r1:b") is None
        await c.lease_round()
        [b] = assignments(e1)
        assert json.loads(b.input_json) == {"k": "constant", "approval": {"ok": True}}
        await c.report(e1, b, "SUCCEEDED")
        assert await state_of(c, "r1") == ("COMPLETED", "")
        h = await c.queue.redis.hgetall(keys.step("r1", "b"))
        assert h[b"signaled_by"] == b"ana" and b"awaiting" not in h
        events = await c.queue.redis.xrange(keys.events("r1"))
        said = [e[b"msg"].decode() for _, e in events if e[b"step"] == b"b"]
        assert said[:2] == [
            "awaits a signal (approval) for up to 60 s",
            "signal (approval) from ana",
        ]

    scenario(valkey_url, body)


def test_a_signal_sent_early_is_kept_until_the_step_is_ready(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=2)
        await c.core.submit([awaiting("r1")])
        assert await c.core.signal_step("r1", "b", '{"n":1}', "ana") == ["kept"]
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        await c.lease_round()
        [b] = assignments(e1)  # no wait: it had its signal
        assert json.loads(b.input_json)["approval"] == {"n": 1}
        assert await c.queue.redis.zcard(keys.SIGNALS) == 0

    scenario(valkey_url, body)


def test_a_signal_is_refused_saying_why(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        await first_done(c, awaiting("r1"))
        send = c.core.signal_step
        assert await send("r1", "b", "{}", "ana") == ["queued", "q"]
        assert await send("r1", "b", "{}", "bo") == ["signaled", "ana"]
        assert await send("r1", "b", "{}", "ana") == ["repeated"]  # a retry of it
        assert await send("r1", "b", '{"x":1}', "ana") == ["signaled", "ana"]
        assert await send("r1", "a", "{}", "bo") == ["not_awaiting"]
        assert await send("r1", "zz", "{}", "bo") == ["no_step"]
        assert await send("r9", "b", "{}", "bo") == ["missing"]
        await c.core.cancel_run("r1", "enough")
        assert await send("r1", "b", "{}", "bo") == ["ended", "CANCELLED"]

    scenario(valkey_url, body)


def test_no_signal_in_time_times_the_step_and_run_out(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        await first_done(c, awaiting("r1", timeout_s=30))
        c.clock.advance(29)
        await c.core.reaper.expire_signals()
        assert (await state_of(c, "r1"))[0] == "RUNNING"
        c.clock.advance(2)
        await c.core.reaper.expire_signals()
        assert await state_of(c, "r1", "b") == (
            "TIMED_OUT",
            "no signal (approval) came within 30 s",
        )
        assert await state_of(c, "r1") == (
            "TIMED_OUT",
            "step b TIMED_OUT: no signal (approval) came within 30 s",
        )
        assert c.heard.of("run_ended") == [("r1", "")]
        assert await c.core.signal_step("r1", "b", "{}", "ana") == ["ended", "TIMED_OUT"]

    scenario(valkey_url, body)


def test_a_wait_that_may_run_out_lets_its_step_run_without_a_signal(valkey_url: str) -> None:
    """``"on_timeout": "continue"``: no signal in time queues the step without one (its
    task's input lacks the field), a later signal is refused, and the run goes on."""

    async def body(c: Core) -> None:
        await first_done(c, awaiting("r1", timeout_s=30, max_parallel=1, on_timeout="continue"))
        c.clock.advance(31)
        assert await c.core.reaper.read_depths() is None
        await c.core.reaper.expire_signals()
        assert await c.queue.redis.zcard(keys.SIGNALS) == 0
        assert (await state_of(c, "r1", "b"))[0] == "QUEUED"
        words = await c.core.signal_step("r1", "b", "{}", "ana")
        assert words == ["timed_out", str(c.clock.now_ms())]
        e2 = c.executor("e2")  # e1, silent for 31 s on this clock, is passed over
        await c.lease_round()
        [b] = assignments(e2)
        assert json.loads(b.input_json) == {"k": "constant"}  # no "approval"
        await c.report(e2, b, "SUCCEEDED")
        assert await state_of(c, "r1") == ("COMPLETED", "")
        events = await c.queue.redis.xrange(keys.events("r1"))
        said = [e[b"msg"].decode() for _, e in events if e[b"step"] == b"b"]
        assert "no signal (approval) came within 30 s: it runs without one" in said

    scenario(valkey_url, body)


def test_a_cancelled_run_leaves_no_wait_behind(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        await first_done(c, awaiting("r1"))
        await c.core.cancel_run("r1", "no")
        assert await c.queue.redis.zcard(keys.SIGNALS) == 0
        assert await state_of(c, "r1", "b") == ("CANCELLED", "run CANCELLED")
        assert await c.queue.redis.hget(keys.step("r1", "b"), "awaiting") is None
        c.clock.advance(120)
        assert await c.queue.expire_signals() == []

    scenario(valkey_url, body)


def test_a_waiting_step_is_not_in_flight_under_max_parallel(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        run = awaiting("r1", max_parallel=1)
        e1 = await first_done(c, run)
        assert await c.queue.redis.hget(keys.run("r1"), "active") == b"0"
        assert await c.core.signal_step("r1", "b", "{}", "ana") == ["queued", "q"]
        await c.lease_round()
        [b] = assignments(e1)
        await c.report(e1, b, "SUCCEEDED")
        assert await state_of(c, "r1") == ("COMPLETED", "")
        assert await c.queue.redis.hget(keys.run("r1"), "active") in (None, b"0")

    scenario(valkey_url, body)


def test_a_first_step_awaits_its_signal_from_the_submit(valkey_url: str) -> None:
    async def body(c: Core) -> None:
        e1 = c.executor("e1")
        run = awaiting("r1")
        run.steps.pop(0)
        run.steps[0].deps.clear()
        await c.core.submit([run])
        assert sent(e1) == [] and await state_of(c, "r1", "b") == ("PENDING", "")
        assert await c.core.signal_step("r1", "b", "{}", "ana") == ["queued", "q"]
        await c.lease_round()
        [b] = assignments(e1)
        assert json.loads(b.input_json)["approval"] == {}

    scenario(valkey_url, body)


def test_a_rebuilt_run_starts_with_the_signals_its_document_kept(valkey_url: str) -> None:
    doc = {"_id": "r1", "signal:b": json.dumps({"document": '{"v":2}', "by": "ana", "at_ms": 1})}
    kept = signal_fields(doc)
    assert kept == {"b": {"signal_json": '{"v":2}', "signaled_by": "ana"}}

    async def body(c: Core) -> None:
        e1 = c.executor("e1", slots=2)
        run = awaiting("r1")
        run.steps[1].fields.update(kept["b"])
        await c.core.submit([run])
        [a] = assignments(e1)
        await c.report(e1, a, "SUCCEEDED")
        await c.lease_round()
        [b] = assignments(e1)
        assert json.loads(b.input_json)["approval"] == {"v": 2}

    scenario(valkey_url, body)


def test_a_rebuilt_runs_wait_is_timed_from_when_it_began(valkey_url: str) -> None:
    steps = [
        {"step_id": "a", "deps": [], "fields": {}},
        {"step_id": "b", "deps": ["a"], "fields": {"signal": "{}"}},
        {"step_id": "c", "deps": [], "fields": {"signal": "{}"}},
        {"step_id": "d", "deps": ["a", "x"], "fields": {"signal": "{}"}},
        {"step_id": "e", "deps": ["a"], "fields": {"signal": "{}"}},
    ]
    signaled = {"e": {"signal_json": "{}", "signaled_by": "ana"}}
    # b waited from a's end, c (no dependency) from the submit; d's x has no end on record
    # (it waits from its rebuild), e had its signal
    assert signal_records.wait_starts(steps, signaled, {"a": 5_000}, 1_000) == {
        "b": {"await_from": "5000"},
        "c": {"await_from": "1000"},
    }

    async def body(c: Core) -> None:
        begun = c.clock.now_ms() - 45_000  # 45 s of its 60 s were spent before the flush
        run = awaiting("r1")
        run.steps[1].fields["await_from"] = str(begun)
        await first_done(c, run)
        h = await c.queue.redis.hgetall(keys.step("r1", "b"))
        assert int(h[b"awaiting"]) == begun + 60_000 and int(h[b"await_ms"]) == begun
        events = await c.queue.redis.xrange(keys.events("r1"))
        said = [e[b"msg"].decode() for _, e in events if e[b"step"] == b"b"]
        assert said == [
            "awaits a signal (approval) for up to 60 s, as it did before the run was rebuilt"
        ]
        c.clock.advance(16)
        await c.core.reaper.expire_signals()
        assert (await state_of(c, "r1", "b"))[0] == "TIMED_OUT"

    scenario(valkey_url, body)


def test_a_resumed_run_starts_its_waiting_steps_with_the_old_runs_signals() -> None:
    run = awaiting("r2")
    run.steps[0].fields["signal"] = signals.AwaitSignal("go").lua_fields()
    kept = {"a": {"signal_json": "{}", "signaled_by": "ana"},
            "b": {"signal_json": '{"v":1}', "signaled_by": "bo"}}  # fmt: skip
    given = run_reuse.with_signals(run, kept)
    assert [s.fields.get("signal_json") for s in given.steps] == ["{}", '{"v":1}']
    taken = run_reuse.with_signals(dataclasses.replace(run, done={"a": "{}"}), kept)
    assert "signal_json" not in taken.steps[0].fields  # taken over: it ran already
    plain = awaiting("r3")  # a step that awaits none gets none
    assert "signal_json" not in run_reuse.with_signals(plain, kept).steps[0].fields


def test_a_runs_summary_leaves_out_the_time_it_only_waited_for_a_signal() -> None:
    t0 = datetime(2026, 12, 7, tzinfo=UTC)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    # a ran 0-1 s; b waited 1-8 s for its signal, then ran 8.1-9 s; c ran 2-4 s meanwhile
    steps = [
        StepRun("a", "t", "1", "COMPLETED", 1, started_at=at(0), ended_at=at(1)),
        StepRun("b", "t", "1", "COMPLETED", 1, started_at=at(8.1), ended_at=at(9),
                awaited_at=at(1), signaled_at=at(8)),
        StepRun("c", "t", "1", "COMPLETED", 1, started_at=at(2), ended_at=at(4)),
    ]  # fmt: skip
    run = Run("r", "COMPLETED", "{}", 5, steps=steps, created_at=at(0), ended_at=at(9))
    summary = run.summary() or {}
    assert summary["signal_wait_seconds"] == pytest.approx(5.0)  # 1-2 and 4-8: nothing ran
    assert summary["parallel_speedup"] == pytest.approx((1 + 0.9 + 2) / (9 - 5), abs=1e-3)
    assert run.to_proto().processing_summary.signal_wait_seconds == pytest.approx(5.0)
    steps[1].awaited_at = None  # no wait: as before
    assert (run.summary() or {})["parallel_speedup"] == pytest.approx(3.9 / 9, abs=1e-3)


def test_a_runs_summary_counts_a_step_that_started_and_ended_in_one_millisecond() -> None:
    # Redis keeps times in ms: a no-op's step often starts and ends in the same one. Its
    # run's summary once raised IndexError, so the waiting SubmitRun answered INTERNAL and
    # the history's writer dropped the run's end.
    t0 = datetime(2026, 12, 8, tzinfo=UTC)
    step = StepRun("a", "t", "1", "COMPLETED", 1, started_at=t0, ended_at=t0)
    run = Run("r", "COMPLETED", "{}", 5, steps=[step], created_at=t0, ended_at=t0)
    summary = run.summary() or {}
    assert (summary["signal_wait_seconds"], summary["parallel_speedup"]) == (0.0, 1.0)
    assert run.to_proto().processing_summary.steps[0].run_seconds == 0.0
    # two instants with a signal's wait between them: the wait is all the run's span
    later = t0 + timedelta(seconds=8)
    waited = StepRun("b", "t", "1", "COMPLETED", 1, started_at=later, ended_at=later,
                     awaited_at=t0, signaled_at=later)  # fmt: skip
    run = Run("r", "COMPLETED", "{}", 5, steps=[step, waited], created_at=t0, ended_at=later)
    assert (run.summary() or {})["signal_wait_seconds"] == pytest.approx(8.0)
