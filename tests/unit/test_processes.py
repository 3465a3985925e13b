"""The local stack's children die with the process that started them, and are started
without a fork() that runs other libraries' fork handlers (see services/localstack/processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.localstack import processes
from tests.waiting import eventually

PARENT = """
import os, sys, time
from pathlib import Path
from services.localstack.processes import ProcessGroup
child = ProcessGroup(Path(sys.argv[1])).start("sleeper", ["sleep", "60"])
print(child.proc.pid, flush=True)
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    """Exited (a zombie nobody reaps counts: this machine's init does not reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_a_child_dies_when_its_starter_is_killed(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        time.sleep(0.2)
        assert not _gone(pid)
        parent.kill()  # kill -9: nothing of the parent's runs
        parent.wait(5)
        eventually(lambda: _gone(pid), timeout=5, what="the child to die with its parent")
    finally:
        parent.kill()
        parent.wait(5)
        if parent.stdout is not None:
            parent.stdout.close()


def test_children_are_started_through_setpriv_when_it_is_there(tmp_path: Path) -> None:
    if processes.SETPRIV is None:
        pytest.skip("no setpriv here: a preexec function sets the signal")
    child = processes.ProcessGroup(tmp_path).start("sleeper", ["sleep", "60"])
    try:
        args = child.proc.args
        assert isinstance(args, list) and args[:2] == [processes.SETPRIV, "--pdeathsig=SIGTERM"]
        # setpriv execs in place: the PID is the sleeper's own — by the time start returns,
        # so the parent-death signal is set (a parent killed before would never send it).
        assert Path(f"/proc/{child.proc.pid}/cmdline").read_bytes().startswith(b"sleep")
        assert "SigCgt" in Path(f"/proc/{child.proc.pid}/status").read_text()
    finally:
        child.stop()


def test_free_ports_come_from_below_the_range_of_outgoing_connections() -> None:
    low = processes._ephemeral_low()
    ports = [processes.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)  # never handed out twice
    assert all(1024 <= port < low for port in ports)
    # Each was free: a server can listen on it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))
        s.listen()


def test_a_port_another_process_handed_out_lately_is_not_handed_out_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The suite's two workers pick ports apart: a claim another process made (a file under
    PORT_CLAIMS) keeps the port from this one until it is ten minutes old."""
    monkeypatch.setattr(processes, "PORT_CLAIMS", tmp_path)
    monkeypatch.setattr(processes, "_ephemeral_low", lambda: 2_124)  # 1,100 ports to pick from
    theirs = set(range(1_024, 2_124, 2))  # every other one, claimed by "another worker" now
    for port in theirs:
        (tmp_path / str(port)).touch()
    mine = {processes.free_port() for _ in range(5)}
    assert not mine & theirs and all((tmp_path / str(p)).exists() for p in mine)
    old = tmp_path / "1024"
    os.utime(old, (time.time() - 601, time.time() - 601))
    assert processes._claim(1024) and not processes._claim(1026)  # an old claim lapses


def test_with_no_room_below_that_range_any_free_port_will_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "_ephemeral_low", lambda: 1_100)
    port = processes.free_port()
    assert port >= 1_100  # from the kernel (port 0), not from the 76 ports below
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
