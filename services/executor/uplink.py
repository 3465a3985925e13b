"""``Uplink``: what goes up an executor's stream to the scheduler.

A hello first, then heartbeats, progress and results from one outbox, in the order they were
put. Results waiting together go in one ``StepResults`` message when the scheduler's welcome
says it takes them so. The results sent on a stream are kept one lease period: one written
just before the stream broke may never have arrived, so a new stream sends them again (the
scheduler's fencing refuses those it already has; losing one would cost a retry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator

from common import stream_batches
from wtm.v1 import executor_service_pb2 as epb

log = logging.getLogger(__name__)


def more_results(
    first: epb.ConnectRequest,
    outbox: asyncio.Queue[epb.ConnectRequest],
    sent: deque[tuple[float, epb.ConnectRequest]],
) -> tuple[epb.ConnectRequest, epb.ConnectRequest | None]:
    """``first`` (a result) and the results queued right behind it, in one StepResults
    message (``common.stream_batches``; ``first`` itself when none is); the message that
    stopped the group is sent next. Each result taken is noted in ``sent`` as it would be
    alone (the re-send after a broken stream sends them one by one)."""

    def joins(message: epb.ConnectRequest) -> epb.ConnectRequest | None:
        return message if message.HasField("result") else None

    group, carry = stream_batches.gather(first, outbox, joins, lambda m: len(m.result.output_json))
    now = time.monotonic()
    sent.extend((now, m) for m in group[1:])
    if len(group) > 1:
        first = epb.ConnectRequest(results=epb.StepResults(results=[m.result for m in group]))
    return first, None if carry is stream_batches.NOTHING else carry


class Uplink:
    """The outbox and the streams it feeds, one at a time."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[epb.ConnectRequest] = asyncio.Queue()
        self.put = self.outbox.put_nowait  # what the executor's parts send with
        # Results sent on the current stream, kept one lease period to re-send after a break.
        self._sent: deque[tuple[float, epb.ConnectRequest]] = deque(maxlen=10_000)
        self.stream_no = 0
        self.batched_results = False  # the current stream's welcome said it takes them

    def new_stream(self) -> int:
        """A stream is opening: the older one's generator stops at its next message."""
        self.stream_no += 1
        self.batched_results = False  # until this scheduler's welcome says otherwise
        return self.stream_no

    async def requests(
        self, stream_no: int, hello: epb.ConnectRequest
    ) -> AsyncIterator[epb.ConnectRequest]:
        """What goes up one stream. A stream's generator can outlive its stream; once a newer
        stream exists it hands what it took back to the outbox and stops."""
        yield hello
        carry: epb.ConnectRequest | None = None
        while True:
            message = carry if carry is not None else await self.outbox.get()
            carry = None
            if stream_no != self.stream_no:
                self.outbox.put_nowait(message)
                return
            if message.HasField("result"):
                self._sent.append((time.monotonic(), message))
                if self.batched_results:
                    message, carry = more_results(message, self.outbox, self._sent)
            yield message

    def resend(self, lease_seconds: float) -> None:
        """Send again the results of the last lease period (a new stream's welcome)."""
        horizon = time.monotonic() - lease_seconds
        recent = [m for at, m in self._sent if at >= horizon]
        self._sent.clear()
        if recent and self.stream_no > 1:
            log.info("re-sending %d recent results after reconnecting", len(recent))
            for message in recent:
                self.outbox.put_nowait(message)

    async def flushed(self) -> None:
        """Until the outbox is empty."""
        while not self.outbox.empty():
            await asyncio.sleep(0.05)
