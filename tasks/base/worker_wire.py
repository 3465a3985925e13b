"""The messages between an executor and its worker processes, on their pipe.

A message is a JSON array (its header) followed by the payloads it announces: raw UTF-8
texts, each a frame of its own, so a step's input or output (already JSON) crosses without
being escaped again. A frame is a 4-byte big-endian length (or -1 and an 8-byte one), then
its bytes; a whole message goes in one write, and is usually read in one.

Never pickle: the executor reads what task code could have written (the worker's end of the
pipe is within its reach), and unpickling runs code — a task that sent a crafted pickle down
its pipe ran a shell command in the executor, as the executor's user, until 2026-12-04. The
executor feeds a ``Reader`` from non-blocking reads; it bounds every frame, so a worker that
stalls mid-message or announces a huge one cannot hold the executor's event loop either.
(The worker reads the executor's messages with the same parser, blocking: ``Inbox``.)

    executor -> worker   ["run", meta] + [input_json]
                         ["batch", [meta, ...]] + [input_json, ...]
                         ["stop"]
    worker -> executor   ["ready"]  ["setup_failed", error]
                         ["progress", fraction, message]  ["log", level, message]
                         [verdict, [called, returned]] + [output_json or error]
                         ["batch_done", [verdict, ...], [called, returned]] + [payload, ...]

(verdict: "ok", "failed" or "fatal"). What a message holds is for its reader to judge.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

MAX_HEADER_BYTES = 1 << 20  # a header holds metadata and short texts
MAX_PAYLOAD_BYTES = 512 << 20  # a message's inputs or outputs in all (beyond: the step fails)
MAX_PAYLOADS = 4096  # a dynamic batch's inputs or outputs

Message = tuple[list[Any], list[str]]


class Malformed(Exception):
    """What came down the pipe is not a message of this protocol."""


_SIZE = struct.Struct("!i")
_BIG_SIZE = struct.Struct("!iQ")
_ENCODE_JSON = json.JSONEncoder(separators=(",", ":")).encode
_DECODE_JSON = json.JSONDecoder().decode


def _encode(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (an error message can hold one)
        return text.encode("utf-8", "surrogatepass")


def frames(header: list[Any], payloads: Sequence[str] = ()) -> bytes:
    """A message as bytes: its header frame, then a frame per payload."""
    out = []
    for part in (_ENCODE_JSON([*header, len(payloads)]).encode(), *map(_encode, payloads)):
        n = len(part)
        out.append(_SIZE.pack(n) if n <= 0x7FFFFFFF else _BIG_SIZE.pack(-1, n))
        out.append(part)
    return b"".join(out)


def send(conn: Connection, header: list[Any], payloads: Sequence[str] = ()) -> None:
    """Send a message, blocking (the worker's side), in one write when the pipe has room:
    a reader woken by the header alone would wait again for the payload."""
    data = memoryview(frames(header, payloads))
    while data:
        data = data[os.write(conn.fileno(), data) :]


class Inbox:
    """The worker's side: messages from the executor, read blocking, usually in one read."""

    def __init__(self, conn: Connection) -> None:
        self._fd = conn.fileno()
        self._reader = Reader()
        self._chunk = memoryview(bytearray(1 << 18))

    def receive(self) -> Message:
        """The next message; raises EOFError when the executor's end is closed."""
        while (message := self._reader.message()) is None:
            n = os.readv(self._fd, [self._chunk])
            if not n:
                raise EOFError
            self._reader.feed(self._chunk[:n])
        return message


class Reader:
    """Messages from bytes fed as they arrive (the executor's side): ``feed`` what a
    non-blocking read returned, then take every complete ``message()``. Raises ``Malformed``
    as soon as a frame is over its bound or a header is not one of this protocol's."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._at = 0  # where the next frame starts in the buffer
        self._header: list[Any] | None = None
        self._payloads: list[str] = []
        self._room = MAX_PAYLOAD_BYTES  # what the current message's payloads may still take

    def feed(self, data: bytes | memoryview) -> None:
        if self._at:
            del self._buffer[: self._at]
            self._at = 0
        self._buffer += data

    def message(self) -> Message | None:
        while True:
            header = self._header
            if header is not None and len(self._payloads) == header[-1]:
                payloads = self._payloads
                self._header, self._payloads, self._room = None, [], MAX_PAYLOAD_BYTES
                return header[:-1], payloads
            frame = self._frame(MAX_HEADER_BYTES if header is None else self._room)
            if frame is None:
                return None
            if header is None:
                self._header = _header(frame)
            else:
                self._room -= len(frame)
                self._payloads.append(_text(frame))

    def _frame(self, limit: int) -> bytes | None:
        buffer, at = self._buffer, self._at
        if len(buffer) - at < 4:
            return None
        (size,) = _SIZE.unpack_from(buffer, at)
        start = at + 4
        if size == -1:
            if len(buffer) - at < 12:
                return None
            size = _BIG_SIZE.unpack_from(buffer, at)[1]
            start = at + 12
        if not 0 <= size <= limit:
            raise Malformed(f"a frame of {size:,} bytes (at most {limit:,})")
        end = start + size
        if len(buffer) < end:
            return None
        self._at = end
        return bytes(buffer[start:end])


def _header(data: bytes | None) -> list[Any]:
    """A header: a list whose first item is a string and whose last is its payload count."""
    if data is None:
        raise Malformed(f"a header over {MAX_HEADER_BYTES:,} bytes")
    try:
        header = _DECODE_JSON(data.decode("ascii"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Malformed("a header that is not JSON") from exc
    if not (type(header) is list and len(header) >= 2 and type(header[0]) is str):
        raise Malformed(f"a header that is not [kind, ..., payload count]: {str(header)[:100]}")
    count = header[-1]
    if type(count) is not int or not 0 <= count <= MAX_PAYLOADS:
        raise Malformed(f"a payload count of {str(count)[:20]}")
    return header


def _text(data: bytes | None) -> str:
    if data is None:
        raise Malformed(f"a payload over {MAX_PAYLOAD_BYTES:,} bytes")
    return data.decode("utf-8", "replace")


def text(value: Any, limit: int) -> str:
    """``value`` as text fit for a protobuf string: a string (anything else is shown as its
    type), at most ``limit`` characters (saying how long it was), no lone surrogates."""
    if not isinstance(value, str):
        value = f"<{type(value).__name__}>"
    if len(value) > limit:
        value = f"{value[:limit]}… (cut: {len(value):,} characters in all)"
    return value.encode("utf-8", "replace").decode("utf-8")
