"""The worker's side of the sandbox (``sandbox.py`` says what it holds): run in the worker
process before any task code, it enters the namespaces, mounts what the worker may see,
drops to the worker's uid and limits, and ties the worker's life to the executor's
(``die_with``); ``worker_entry`` is the process's entry point."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import struct
import sys
import threading
import time
from typing import Any

from services.executor.sandbox import Confinement

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x40000000, 0x08000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _cover(directory: str, keep: tuple[str, ...], own: str | None = None) -> None:
    """Mount over ``directory`` an empty read-only tmpfs, or ``own`` (a directory of the
    worker's, writable), showing ``keep`` (paths under ``directory``) bound back in place.
    Each kept path is held open (O_PATH) across the mount and bound from its descriptor,
    since its old path then names the new mount's content."""
    held = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in keep]
    try:
        if own is None:
            _mount("tmpfs", directory, "tmpfs", 0, "mode=0755,size=64k")
        else:
            _mount(own, directory, None, MS_BIND)
        for path, fd in held:
            source = f"/proc/self/fd/{fd}"
            if os.path.isdir(source):
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "w").close()  # noqa: SIM115 - a mount point for a file
            _mount(source, path, None, MS_BIND | MS_REC)
    finally:
        for _, fd in held:
            os.close(fd)
    if own is None:
        _mount(None, directory, None, MS_REMOUNT | MS_RDONLY, "mode=0755,size=64k")


def _isolate(c: Confinement) -> None:
    # Its own mounts, an empty network, and its own System V IPC and POSIX message queues
    # (the host's are another place one worker could leave data for another).
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for directory, own, keep in c.temps:  # first: the covers below may lie under them
        _cover(directory, keep, own)
    for directory, keep in c.covers:
        _cover(directory, keep)
    for path in c.read_only:  # a mount of its own, then read-only
        _mount(path, path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)
    if _proc_options_per_mount():  # a /proc of its own that shows only its uid's processes
        # Best effort: in a container in a user namespace whose /proc has masked paths the
        # kernel refuses a new proc mount, and the worker keeps the /proc it has.
        with contextlib.suppress(OSError):
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")
    _mask_kernel_paths()


# What a container runtime hides from a container (moby's and containerd's defaults, which
# Kubernetes keeps): kernel-wide counters and lists — interrupt counts per CPU (a timing side
# channel), timers and the scheduler's state naming every process of the host on kernels
# where they are world-readable, kernel memory, firmware tables. A file is covered with
# /dev/null, a directory with an empty read-only tmpfs; the kernel's knobs are read-only.
MASKED = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READ_ONLY_KERNEL = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _mask_kernel_paths() -> None:
    """Hide ``MASKED`` and make ``READ_ONLY_KERNEL`` read-only in the worker's mounts, as a
    container's are (each best effort: a path this kernel lacks is skipped)."""
    for path in MASKED:
        with contextlib.suppress(OSError):
            if os.path.isdir(path):
                _mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
            elif os.path.exists(path):
                _mount("/dev/null", path, None, MS_BIND)
    for path in READ_ONLY_KERNEL:
        with contextlib.suppress(OSError):
            if os.path.exists(path):
                _mount(path, path, None, MS_BIND | MS_REC)
                _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)


def _proc_options_per_mount() -> bool:
    """Whether a new /proc mount keeps options of its own (Linux 5.8 and later); before,
    ``hidepid`` set on one mount applied to every /proc of the host."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


def _leave_resource_tracker() -> None:
    """Close the executor's resource-tracker pipe, which multiprocessing's spawn hands every
    child: on it task code could register shared-memory or semaphore names for the tracker,
    running as the executor's user, to unlink when the executor exits. (Task code that uses
    shared memory itself starts a tracker of its own, as its own user.)"""
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    fd = getattr(tracker, "_fd", None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
        tracker._fd = None  # type: ignore[attr-defined]


def confine(c: Confinement, fence: Any) -> None:
    """Apply ``c`` to this (worker) process, before any task code is imported."""
    _leave_resource_tracker()
    if c.isolate:
        _isolate(c)
    os.chdir(c.workdir)
    for which, value in c.limits.items():
        resource.setrlimit(which, (value, value))
    if c.uid is not None:
        os.setgroups([])
        os.setgid(c.uid)
        os.setuid(c.uid)
    die_with(c.parent_pid, fence)  # after setuid, which clears the parent-death signal


def die_with(parent_pid: int, fence: Any) -> None:
    """Tie this process's life to the executor's: the kernel kills it when the executor
    dies (PR_SET_PDEATHSIG, Linux), and a watchdog thread kills it when the executor is gone
    or frozen and so stops renewing the fence — the monotonic time until which the running
    step's lease is known to hold (0 while idle), which the executor writes down ``fence``,
    a pipe of this process's own, as 8-byte doubles (``Worker.fence``). A step's retry on
    another executor can then never overlap this attempt. (Until 2026-12-04 the fence was a
    value in memory shared with the executor, in the same arena as the other workers'
    fences: task code could write theirs, and stop other tasks' steps.)"""
    with contextlib.suppress(OSError, AttributeError):
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent_pid and os.getppid() != parent_pid:  # it died before the line above
        os._exit(1)
    fd = fence.fileno() if fence is not None else -1

    if fd >= 0:
        os.set_blocking(fd, False)

    def watch() -> None:
        until, pending = 0.0, b""
        while True:
            # Every tenth of a second, not on each write: a step's start and end each move
            # the fence, and waking then cost every step a thread switch in the worker.
            time.sleep(0.1)
            while fd >= 0:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    break
                if not data:  # the executor's end is closed: it is gone
                    os.kill(os.getpid(), signal.SIGKILL)
                pending += data
            whole = len(pending) - len(pending) % 8
            if whole:
                (until,) = struct.unpack_from("d", pending, whole - 8)
                pending = pending[whole:]
            lapsed = until and time.monotonic() > until
            if lapsed or (parent_pid and os.getppid() != parent_pid):
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="wtm-lifeline", daemon=True).start()


def worker_entry(
    conn: Any,
    package_dir: str,
    entry_point: str,
    extra_paths: tuple[str, ...],
    confinement: Confinement,
    fence: Any,
    output: Any = None,
) -> None:
    """A worker process's target: confine it, then serve its task (tasks.base.runtime).
    What it prints goes down ``output``, which the executor reads as the step's log lines;
    until 2026-12-04 its stdout and stderr were the executor's own log file, where task code
    could write lines that read as the executor's."""
    from tasks.base import worker_wire
    from tasks.base.runtime import worker_main

    if output is not None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        output.close()
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        confine(confinement, fence)
    except (OSError, RuntimeError) as exc:  # the executor sees setup_failed, and the step
        worker_wire.send(conn, ["setup_failed", f"sandbox: {exc}"])  # fails with it
        return
    worker_main(conn, package_dir, entry_point, extra_paths)
