"""Grouping what waits in a stream's outbox into one message: assignments down (the
scheduler), results up (the executor). The order of the stream is kept, and a message holds
at most ``common.stream_batches``' worth."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from common.stream_batches import MESSAGE_BYTES, MESSAGE_ITEMS, NOTHING
from services.executor.uplink import more_results
from services.scheduler.assignments import Assignment
from services.scheduler.executor_servicer import more_assignments
from services.scheduler.fleet import Cancel
from wtm.v1 import executor_service_pb2 as epb


def _assignment(i: int, input_json: str = "{}") -> Assignment:
    return Assignment(
        run_id=f"r{i}",
        step_id="main",
        attempt=1,
        task_id="t",
        task_version="1.0.0",
        digest="d",
        entry_point="task.T",
        input_json=input_json,
        timeout_seconds=30,
        input_id=f"in{i}",
        output_id=f"out{i}",
        lease_id=f"l{i}",
    )


def _queue(*items: Any) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()
    for item in items:
        q.put_nowait(item)
    return q


def test_assignments_queued_together_go_together_up_to_the_next_other_item() -> None:
    cancel = Cancel("r9", "main", 1, "cancelled")
    q = _queue(_assignment(1), _assignment(2), cancel, _assignment(3))
    group, carry = more_assignments(_assignment(0), q)
    assert [a.run_id for a in group] == ["r0", "r1", "r2"]
    assert carry is cancel  # sent next, before r3
    assert q.get_nowait().run_id == "r3"


def test_a_group_of_assignments_stops_at_the_item_and_size_limits() -> None:
    q = _queue(*(_assignment(i) for i in range(1, MESSAGE_ITEMS + 5)))
    group, carry = more_assignments(_assignment(0), q)
    assert len(group) == MESSAGE_ITEMS
    assert isinstance(carry, Assignment) and carry.run_id == f"r{MESSAGE_ITEMS}"

    big = "x" * (MESSAGE_BYTES // 2 + 1)
    q = _queue(_assignment(1, big), _assignment(2, big), _assignment(3))
    group, carry = more_assignments(_assignment(0, big), q)
    assert [a.run_id for a in group] == ["r0"]  # r0 and r1 would pass the byte limit
    assert isinstance(carry, Assignment) and carry.run_id == "r1"


def test_an_empty_outbox_leaves_the_assignment_alone() -> None:
    group, carry = more_assignments(_assignment(0), _queue())
    assert [a.run_id for a in group] == ["r0"]
    assert carry is NOTHING


def _result(i: int, output_json: str = "{}") -> epb.ConnectRequest:
    ref = epb.StepAttemptRef(run_id=f"r{i}", step_id="main", attempt=1, lease_id=f"l{i}")
    return epb.ConnectRequest(result=epb.StepResult(ref=ref, output_json=output_json))


def test_results_queued_together_go_in_one_message_and_each_is_kept_for_a_resend() -> None:
    heartbeat = epb.ConnectRequest(heartbeat=epb.ExecutorHeartbeat(sequence=7))
    sent: deque[tuple[float, epb.ConnectRequest]] = deque()
    q: asyncio.Queue[epb.ConnectRequest] = _queue(_result(1), _result(2), heartbeat, _result(3))
    message, carry = more_results(_result(0), q, sent)
    assert message.WhichOneof("message") == "results"
    assert [r.ref.run_id for r in message.results.results] == ["r0", "r1", "r2"]
    assert carry is heartbeat
    # the first is noted by the caller; the ones taken here, one by one, as sent alone
    assert [m.result.ref.run_id for _, m in sent] == ["r1", "r2"]
    assert q.get_nowait().result.ref.run_id == "r3"


def test_a_lone_result_stays_a_result_and_a_full_message_stops_at_the_limits() -> None:
    message, carry = more_results(_result(0), _queue(), deque())
    assert message.WhichOneof("message") == "result" and carry is None

    big = "y" * (MESSAGE_BYTES // 2 + 1)
    sent: deque[tuple[float, epb.ConnectRequest]] = deque()
    message, carry = more_results(_result(0, big), _queue(_result(1, big), _result(2)), sent)
    assert message.WhichOneof("message") == "result"  # the second would pass the limit
    assert carry is not None and carry.result.ref.run_id == "r1"
    assert not sent  # r1 is noted when it is sent

    many = _queue(*(_result(i) for i in range(1, MESSAGE_ITEMS + 3)))
    message, carry = more_results(_result(0), many, deque())
    assert len(message.results.results) == MESSAGE_ITEMS
    assert carry is not None and carry.result.ref.run_id == f"r{MESSAGE_ITEMS}"
