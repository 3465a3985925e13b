"""The messages between an executor and its worker processes, on their pipe.

A message is a JSON array (its header) followed by the payloads it announces: raw UTF-8
texts, each a frame of its own, so a step's input or output (already JSON) crosses without
being escaped again. Frames are multiprocessing's (a 4-byte big-endian length, or -1 and an
8-byte one), so the worker reads with ``Connection.recv_bytes``.

Never pickle: the executor reads what task code could have written (the worker's end of the
pipe is within its reach), and unpickling runs code — a task that sent a crafted pickle down
its pipe ran a shell command in the executor, as the executor's user, until 2026-12-04. The
executor reads with ``Reader``, which never blocks and bounds every frame, so a worker that
stalls mid-message or announces a huge one cannot hold the executor's event loop either.

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


def _parts(header: list[Any], payloads: Sequence[str]) -> list[bytes]:
    return [
        json.dumps([*header, len(payloads)]).encode(),
        *(text.encode("utf-8", "surrogatepass") for text in payloads),
    ]


def send(conn: Connection, header: list[Any], payloads: Sequence[str] = ()) -> None:
    """Send a message, blocking (the worker's side)."""
    for part in _parts(header, payloads):
        conn.send_bytes(part)


def frames(header: list[Any], payloads: Sequence[str] = ()) -> bytes:
    """A message as the bytes ``send`` would write (the executor's side writes them itself,
    without blocking)."""
    out = bytearray()
    for part in _parts(header, payloads):
        n = len(part)
        out += struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!iQ", -1, n)
        out += part
    return bytes(out)


def receive(conn: Connection) -> Message:
    """The next message, blocking (the worker's side, reading the executor's)."""
    header = _header(conn.recv_bytes(MAX_HEADER_BYTES))
    payloads = [_text(conn.recv_bytes(MAX_PAYLOAD_BYTES)) for _ in range(header[-1])]
    return header[:-1], payloads


class Reader:
    """Messages from bytes fed as they arrive (the executor's side): ``feed`` what a
    non-blocking read returned, then take every complete ``message()``. Raises ``Malformed``
    as soon as a frame is over its bound or a header is not one of this protocol's."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header: list[Any] | None = None
        self._payloads: list[str] = []
        self._room = MAX_PAYLOAD_BYTES  # what the current message's payloads may still take

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def message(self) -> Message | None:
        while True:
            if self._header is not None and len(self._payloads) == self._header[-1]:
                header, payloads = self._header[:-1], self._payloads
                self._header, self._payloads, self._room = None, [], MAX_PAYLOAD_BYTES
                return header, payloads
            frame = self._frame(MAX_HEADER_BYTES if self._header is None else self._room)
            if frame is None:
                return None
            if self._header is None:
                self._header = _header(frame)
            else:
                self._room -= len(frame)
                self._payloads.append(_text(frame))

    def _frame(self, limit: int) -> bytes | None:
        if len(self._buffer) < 4:
            return None
        (size,) = struct.unpack_from("!i", self._buffer)
        start = 4
        if size == -1:
            if len(self._buffer) < 12:
                return None
            (size,) = struct.unpack_from("!Q", self._buffer, 4)
            start = 12
        if not 0 <= size <= limit:
            raise Malformed(f"a frame of {size:,} bytes (at most {limit:,})")
        if len(self._buffer) < start + size:
            return None
        frame = bytes(self._buffer[start : start + size])
        del self._buffer[: start + size]
        return frame


def _header(data: bytes | None) -> list[Any]:
    """A header: a list whose first item is a string and whose last is its payload count."""
    if data is None:
        raise Malformed(f"a header over {MAX_HEADER_BYTES:,} bytes")
    try:
        header = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Malformed("a header that is not JSON") from exc
    if not (isinstance(header, list) and len(header) >= 2 and isinstance(header[0], str)):
        raise Malformed(f"a header that is not [kind, ..., payload count]: {str(header)[:100]}")
    count = header[-1]
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_PAYLOADS:
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
