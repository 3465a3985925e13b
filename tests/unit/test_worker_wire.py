"""The executor ⇄ worker pipe (tasks.base.worker_wire): JSON headers and raw payloads, read
by the executor without blocking, bounded, and never unpickled — task code can write to its
worker's end of the pipe."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import struct
import threading
from pathlib import Path

import pytest

from tasks.base import worker_wire as wire


def read_all(data: bytes) -> list[wire.Message]:
    reader, found = wire.Reader(), []
    for i in range(0, len(data), 7):  # as the bytes may arrive: in small pieces
        reader.feed(data[i : i + 7])
        while (message := reader.message()) is not None:
            found.append(message)
    return found


def test_a_message_round_trips_through_a_real_pipe_and_the_reader() -> None:
    ours, theirs = mp.Pipe()
    output = '{"faces": [1, 2], "name": "é"}'
    wire.send(theirs, ["ok", [1.5, 2.5]], [output])
    wire.send(theirs, ["progress", 0.5, "half"])
    raw = b""
    while ours.poll(0.2):
        raw += struct.pack("!i", len(chunk := ours.recv_bytes())) + chunk
    assert raw == wire.frames(["ok", [1.5, 2.5]], [output]) + wire.frames(["progress", 0.5, "half"])
    assert read_all(raw) == [(["ok", [1.5, 2.5]], [output]), (["progress", 0.5, "half"], [])]
    wire.send(ours, ["run", {"log_level": "INFO"}], ["{}"])  # the worker's blocking side
    assert wire.Inbox(theirs).receive() == (["run", {"log_level": "INFO"}], ["{}"])


class Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_is_refused_unread(tmp_path: Path) -> None:
    """What a hostile task sent down its pipe until 2026-12-04: the executor unpickled it,
    and ran its command."""
    payload = pickle.dumps(("progress", Boom(tmp_path / "ran"), "x"))
    with pytest.raises(wire.Malformed, match="not JSON"):
        read_all(struct.pack("!i", len(payload)) + payload)
    assert not (tmp_path / "ran").exists()


def test_frames_over_their_bound_are_refused_before_they_arrive() -> None:
    reader = wire.Reader()
    reader.feed(struct.pack("!i", wire.MAX_HEADER_BYTES + 1))
    with pytest.raises(wire.Malformed, match="at most"):
        reader.message()
    reader = wire.Reader()
    header = b'["ok", [0, 0], 1]'  # announces one payload
    reader.feed(struct.pack("!i", len(header)) + header)
    reader.feed(struct.pack("!iQ", -1, wire.MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(wire.Malformed, match="at most"):
        reader.message()


@pytest.mark.parametrize(
    "header",
    [b"{}", b"[]", b'["ok"]', b"[1, 0]", b'["ok", -1]', b'["ok", 99999]', b'["ok", true]',
     b"[" * 5000],
)  # fmt: skip
def test_headers_not_of_the_protocol_are_malformed(header: bytes) -> None:
    with pytest.raises(wire.Malformed):
        read_all(struct.pack("!i", len(header)) + header)


def test_text_is_bounded_and_fit_for_protobuf() -> None:
    assert wire.text("e" * 10, 4) == "eeee… (cut: 10 characters in all)"
    assert wire.text("\ud800x", 10) == "?x"  # a lone surrogate would fail protobuf
    assert wire.text(12, 10) == "<int>"


def test_messages_from_many_task_threads_do_not_interleave() -> None:
    """Task threads report progress while others log: each message is written whole, or
    the executor reads garbage and kills the worker."""
    from tasks.base.runtime import _send

    ours, theirs = mp.Pipe()
    big = "p" * 300_000  # over the pipe's buffer: written in parts

    def report() -> None:
        for _ in range(5):
            _send(theirs, ["progress", 0.5, big])

    senders = [threading.Thread(target=report) for _ in range(4)]
    for thread in senders:
        thread.start()
    inbox, got = wire.Inbox(ours), list[wire.Message]()
    while len(got) < 20:
        got.append(inbox.receive())
    for thread in senders:
        thread.join()
    assert got == [(["progress", 0.5, big], [])] * 20
