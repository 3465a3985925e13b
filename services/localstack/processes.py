"""Child processes that a test or script starts and must stop: by PID, never by name.

Every child is started in its own session, with its output in a log file, and (on Linux)
with a parent-death signal, so that even a ``kill -9`` of the parent leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1

# The parent-death signal is set by util-linux's ``setpriv --pdeathsig`` (it execs the
# child in place, so the PID is the child's), not by a preexec function: without one,
# subprocess starts the child with vfork(), and fork handlers — gRPC's among them — never run
# in a process whose channels are busy (a real fork() once hung inside gRPC's handler, in a
# test that added an executor mid-test). Without setpriv, a preexec function does it, with a
# real fork(): see common/__init__.py for why gRPC's fork handlers are switched off.
SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()
_rng = random.Random()  # its own: a test that seeds the module's must not make picks repeat
# Ports handed out by any process of this host (the test suite's two workers, a stack started
# beside them), one empty file each, for as long as a server may take to bind one.
PORT_CLAIMS = Path(os.environ.get("TMPDIR", "/tmp")) / "wtm-port-claims"
CLAIM_SECONDS = 600


def _claim(port: int) -> bool:
    """Claim ``port`` host-wide: False when another process handed it out in the last
    ``CLAIM_SECONDS`` (its server may not have bound it yet, and gRPC's servers share a port
    with SO_REUSEPORT instead of failing, which would cross two stacks' calls)."""
    PORT_CLAIMS.mkdir(exist_ok=True)
    path = PORT_CLAIMS / str(port)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):
            if time.time() - path.stat().st_mtime > CLAIM_SECONDS:
                os.utime(path)  # an old claim: its server bound it long ago, or never will
                return True
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a server started next.

    Picked at random *below* the kernel's range for outgoing connections: a port from that
    range (what binding port 0 gives) can be taken, between this pick and the server's bind,
    by any connection the machine opens meanwhile — which once failed a bench run (the
    scheduler's metrics port: ``Address already in use``). Below it, only another listener
    can take it. This process never hands out a port twice, nor one another process of this
    host handed out in the last ten minutes (``_claim``)."""
    low = _ephemeral_low()
    span = range(max(1024, low - 12_000), low)
    for _ in range(100 if len(span) >= 1_000 else 0):
        port = _rng.choice(span)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _claim(port):
            continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # that range is full or too small: any free port will do
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# libc is loaded here, in the parent: the child of a fork() in a threaded process (the tests
# run gRPC servers in-process) may only do async-signal-safe work before exec, and dlopen()
# is not (a child once hung in it, holding the loader lock another thread had at the fork).
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """What the child runs between fork and exec: one prctl() call (the new session is made
    by subprocess itself, in C)."""
    if _LIBC is None:
        return None
    prctl = _LIBC.prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig)

    return preexec


@dataclass
class Child:
    """One started process, its log file, and how to stop it."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    grace: float = 5.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)


@dataclass
class ProcessGroup:
    """Children started together and stopped together, in reverse order of starting."""

    log_dir: Path
    tie_to_parent: bool = True
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        grace: float = 5.0,
        parent_death_signal: int = signal.SIGTERM,
        cwd: Path | None = None,
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
        preexec = None
        if self.tie_to_parent and SETPRIV:
            name_of = signal.Signals(parent_death_signal).name
            argv = [SETPRIV, f"--pdeathsig={name_of}", "--", *argv]
        elif self.tie_to_parent:
            preexec = _die_with_parent(parent_death_signal)
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            preexec_fn=preexec,
            start_new_session=True,
        )
        log.close()
        if self.tie_to_parent and SETPRIV:
            _until_exec(proc, SETPRIV)
        child = Child(name, proc, log_path, grace)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        while self.children:
            self.children.pop().stop()


def _until_exec(proc: subprocess.Popen[bytes], launcher: str, timeout: float = 5.0) -> None:
    """Wait (a few ms) until ``launcher`` has set the parent-death signal and exec'd the
    server: a parent killed before ``prctl`` ran would never send it, and the server would
    outlive it (a stack command killed at once after starting, under load in CI, left an
    executor running)."""
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            first = cmdline.read_bytes().split(b"\0", 1)[0]  # b"": not exec'd yet
            if first and first != launcher.encode():
                return
        except OSError:
            return
        time.sleep(0.001)


def wait_until(
    what: str, check: Callable[[], bool], child: Child | None = None, timeout: float = 30.0
) -> None:
    """Poll ``check`` until it returns True; fail early if ``child`` exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(
                f"{what} exited with status {child.proc.returncode}:\n{child.log_tail()}"
            )
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(0.05)
    tail = child.log_tail() if child else ""
    raise TimeoutError(
        f"{what} did not become ready in {timeout:.0f}s (last error: {last})\n{tail}"
    )
