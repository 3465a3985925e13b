"""What goes up an executor's stream (``services.executor.uplink``): the hello first, the
outbox in order, results grouped only when the scheduler takes them so, a stream's generator
that outlives its stream giving back what it took, and the re-send of a lease period's
results on a new stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.executor.uplink import Uplink
from wtm.v1 import executor_service_pb2 as epb

HELLO = epb.ConnectRequest(hello=epb.ExecutorHello(executor_id="e1"))


def _result(run_id: str) -> epb.ConnectRequest:
    ref = epb.StepAttemptRef(run_id=run_id, step_id="main", attempt=1)
    return epb.ConnectRequest(result=epb.StepResult(ref=ref))


def _heartbeat() -> epb.ConnectRequest:
    return epb.ConnectRequest(heartbeat=epb.ExecutorHeartbeat(sequence=1))


async def _take(stream: AsyncIterator[epb.ConnectRequest], n: int) -> list[epb.ConnectRequest]:
    """The next ``n`` messages; a message that never comes fails in 2 s, not at the suite's
    timeout."""
    return [await asyncio.wait_for(anext(stream), 2) for _ in range(n)]


def _runs(message: epb.ConnectRequest) -> list[str]:
    if message.HasField("results"):
        return [r.ref.run_id for r in message.results.results]
    return [message.result.ref.run_id] if message.HasField("result") else []


def test_the_hello_goes_first_then_the_outbox_in_order_one_result_a_message() -> None:
    async def main() -> list[epb.ConnectRequest]:
        up = Uplink()
        for m in (_result("r1"), _heartbeat(), _result("r2"), _result("r3")):
            up.put(m)
        return await _take(up.requests(up.new_stream(), HELLO), 5)

    sent = asyncio.run(main())
    assert sent[0] == HELLO
    kinds = [m.WhichOneof("message") for m in sent[1:]]
    assert kinds == ["result", "heartbeat", "result", "result"]
    assert [_runs(m) for m in sent[1:]] == [["r1"], [], ["r2"], ["r3"]]


def test_results_waiting_together_go_in_one_message_once_the_welcome_says_so() -> None:
    async def main() -> list[epb.ConnectRequest]:
        up = Uplink()
        stream = up.requests(up.new_stream(), HELLO)
        up.batched_results = True
        for m in (_result("r1"), _result("r2"), _heartbeat(), _result("r3")):
            up.put(m)
        return await _take(stream, 4)

    sent = asyncio.run(main())
    assert [m.WhichOneof("message") for m in sent[1:]] == ["results", "heartbeat", "result"]
    assert [_runs(m) for m in sent[1:]] == [["r1", "r2"], [], ["r3"]]


def test_an_older_streams_generator_gives_back_what_it_took_and_stops() -> None:
    async def main() -> tuple[list[epb.ConnectRequest], bool]:
        up = Uplink()
        old = up.requests(up.new_stream(), HELLO)
        await anext(old)  # the hello: the old stream is waiting on the outbox
        waiting = asyncio.ensure_future(anext(old))
        await asyncio.sleep(0)
        new = up.requests(up.new_stream(), HELLO)
        up.put(_result("r1"))
        try:
            await waiting
            stopped = False
        except StopAsyncIteration:
            stopped = True
        return await _take(new, 2), stopped

    sent, stopped = asyncio.run(main())
    assert stopped
    assert [_runs(m) for m in sent] == [[], ["r1"]]  # the hello, then the result, not lost


def test_a_new_stream_sends_again_the_results_of_the_last_lease_period() -> None:
    async def main() -> tuple[int, list[epb.ConnectRequest]]:
        up = Uplink()
        first = up.requests(up.new_stream(), HELLO)
        up.resend(30.0)  # the first stream's welcome: no stream before it lost anything
        queued_on_first = up.outbox.qsize()
        up.put(_result("r1"))
        up.put(_result("r2"))
        await _take(first, 3)
        second = up.requests(up.new_stream(), HELLO)
        up.resend(30.0)
        return queued_on_first, await _take(second, 3)

    queued_on_first, sent = asyncio.run(main())
    assert queued_on_first == 0
    assert [_runs(m) for m in sent[1:]] == [["r1"], ["r2"]]


def test_results_older_than_the_lease_are_not_sent_again() -> None:
    async def main() -> int:
        up = Uplink()
        up.new_stream()  # a second stream: the re-send applies
        stream = up.requests(up.new_stream(), HELLO)
        up.put(_result("r1"))
        await _take(stream, 2)
        await asyncio.sleep(0.02)
        up.resend(0.01)
        return up.outbox.qsize()

    assert asyncio.run(main()) == 0
