"""How ``bench.skeleton`` takes turns between systems (the measuring itself is a benchmark,
``python -m bench.skeleton``, not a test), and that its worker answers what it was sent."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

from bench import skeleton


def test_systems_take_turns_in_blocks_and_the_order_rotates() -> None:
    calls: list[str] = []
    systems = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = skeleton.alternate(systems, runs=skeleton.BLOCKS * 2)
    assert {name: len(t) for name, t in times.items()} == {"a": 24, "b": 24, "c": 24}
    blocks = [calls[i] for i in range(0, len(calls), 2)]  # each block's first call
    firsts = blocks[::3]  # each block opens with the system after the last block's first
    assert firsts[:4] == ["a", "b", "c", "a"]


def test_the_skeletons_worker_answers_each_step_after_its_sleep() -> None:
    mine, theirs = socket.socketpair()
    worker = threading.Thread(target=skeleton.task_worker, args=(theirs.detach(),))
    worker.start()
    frame = struct.Struct("!I")
    for key, sleep_ms in ((b"run-1/a", b"0"), (b"run-2/b", b"20")):
        assignment = key + b"|" + sleep_ms
        started = time.monotonic()
        mine.sendall(frame.pack(len(assignment)) + assignment)
        size = frame.unpack(mine.recv(frame.size, socket.MSG_WAITALL))[0]
        assert json.loads(mine.recv(size, socket.MSG_WAITALL)) == {"output": {}, "of": key.decode()}
        assert time.monotonic() - started >= int(sleep_ms) / 1000  # it slept as it was told
    mine.close()  # the worker stops when its socket closes
    worker.join(5)
    assert not worker.is_alive()
