"""The task sandbox: what a worker process may see and do. Task code is untrusted; it gets its
inputs, its package and a private directory, and nothing else.

Always:
- a scrubbed environment: no ``WTM_*`` secrets, no backing-service URLs or keys (an
  allowlist: locale, ``PATH``, numeric-library threading knobs; ``HOME`` and ``TMPDIR`` are
  the worker's private directory, which is also its working directory);
- resource limits (``setrlimit``): address space, open files, file size, and processes when
  the worker has a uid of its own — from ``task.json`` ``resources`` within the executor's
  ceilings (CPU seconds per step are watched by the executor, since a warm worker lives on,
  and so is what its files take in all: ``worker_disk``);
- its life tied to the executor's (parent-death signal, lease fence: ``die_with``).

When the executor runs as root (a container, a plain install), also:
- a network namespace of its own with nothing in it: no route to Redis, MongoDB, S3, the
  services or anything else;
- a mount namespace in which the executor's cache is an empty read-only tmpfs showing only
  this worker's package (read-only), its private directory, its namespace's part of the
  artifact store (files named by digest, not listable) and its requirement directories;
  directories that the worker's uid could not traverse (``/root`` holding a pyenv Python,
  say) are covered the same way, showing only the interpreter; ``/tmp``, ``/var/tmp``,
  ``/dev/shm`` and ``/run/lock`` are directories of its own (``_private_temps``), not the
  host's shared ones, and System V IPC is its own (an IPC namespace);
  its ``/proc`` shows only its own uid's processes (``hidepid``), not the executor's or other
  workers' (their command lines, their state), and hides what a container runtime hides
  there and in ``/sys`` (``MASKED``);
- a uid of its own on the host (from ``WTM_WORKER_UID_BASE`` up, claimed host-wide by
  ``worker_uids``; no supplementary groups), so it cannot signal the executor or other
  workers, this executor's or another's, read what they write, or fork past its process
  limit.

Without root the first list still holds; isolating the network is then the deployer's job
(a Kubernetes NetworkPolicy, a container without network).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import shutil
import signal
import stat
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.executor import worker_uids
from services.executor.worker_uids import WorkerUids
from services.registry.manifest import RESOURCE_KEYS

# What a worker's environment keeps from the executor's (exact names, then prefixes).
ENV_KEEP = {"PATH", "LANG", "LANGUAGE", "TZ", "PYTHONHASHSEED", "PYTHONUNBUFFERED"}
ENV_KEEP_PREFIXES = ("LC_", "OPENBLAS_", "OMP_", "MKL_", "NUMEXPR_", "GRPC_ENABLE_FORK")

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x40000000, 0x08000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8


# The numeric libraries' thread counts a worker is given (unless the executor's environment
# sets them): OpenMP, OpenBLAS, MKL, numexpr, OpenCV.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENCV_FOR_THREADS_NUM",
)


def scrubbed_env(workdir: str, threads: int = 0) -> dict[str, str]:
    """The environment a worker starts with; with ``threads``, the numeric libraries' thread
    counts too, where the executor's own environment does not set them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ENV_KEEP or k in THREAD_VARS or k.startswith(ENV_KEEP_PREFIXES)
    }
    env.update(HOME=workdir, TMPDIR=workdir)
    if threads > 0:
        for name in THREAD_VARS:
            env.setdefault(name, str(threads))
    return env


def thread_share(slots: int, asked: int = 0) -> int:
    """The threads each worker's numeric libraries may use: ``asked``, or this process's CPUs
    shared among the slots (at least one). Each library otherwise starts a thread per CPU in
    every worker, and workers running at once then fight over the cores (OpenBLAS's threads
    spin while they wait): on 2 cores the face pipeline's steps ran 1.5-5x slower."""
    if asked > 0:
        return asked
    return max(1, len(os.sched_getaffinity(0)) // max(1, slots))


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` inside the block (a spawned process inherits the block's
    environment; its /proc/<pid>/environ then holds no secret either)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass(frozen=True)
class Confinement:
    """How one worker process is confined (made by the executor, applied in the worker)."""

    workdir: str
    parent_pid: int
    limits: dict[int, int] = field(default_factory=dict)  # RLIMIT_* -> soft and hard value
    uid: int | None = None  # drop to this uid (and gid) when set
    isolate: bool = False  # new network and mount namespaces
    covers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # directory -> paths kept under it
    # The host's shared temporary directories, each replaced by one of the worker's own:
    # (directory, its replacement, the paths under the directory that stay in view).
    temps: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    read_only: tuple[str, ...] = ()  # kept paths bound read-only
    threads: int = 0  # the numeric libraries' threads (0: their own default)


@dataclass(frozen=True)
class Ceilings:
    """The most a task may ask for in ``task.json`` ``resources`` (0: no ceiling)."""

    memory_mb: int = 8192
    open_files: int = 1024
    file_size_mb: int = 1024
    processes: int = 64
    cpu_seconds: int = 0
    disk_mb: int = 1024  # what a worker's files may take in all (``worker_disk``)


def effective(resources: dict[str, Any], ceilings: Ceilings) -> dict[str, int]:
    """What a task gets: what it asked for, at most the ceiling; the ceiling if it did not
    ask (0 means none)."""
    out = {}
    for key in RESOURCE_KEYS:
        ceiling = getattr(ceilings, key)
        asked = resources.get(key)
        if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
            out[key] = min(asked, ceiling) if ceiling else asked
        else:
            out[key] = ceiling
    return out


def rlimits(granted: dict[str, int], own_uid: bool) -> dict[int, int]:
    limits = {}
    if granted["memory_mb"]:
        limits[resource.RLIMIT_AS] = granted["memory_mb"] * 2**20
    if granted["open_files"]:
        limits[resource.RLIMIT_NOFILE] = granted["open_files"]
    if granted["file_size_mb"]:
        limits[resource.RLIMIT_FSIZE] = granted["file_size_mb"] * 2**20
    if granted["processes"] and own_uid:  # counted per uid: only meaningful with its own
        # The worker's own thread counts; the runtime's watchdog (``die_with``) does not: at
        # ``"processes": 1`` it could not start, and the worker died before any task code.
        limits[resource.RLIMIT_NPROC] = granted["processes"] + 1
    return limits


# World-writable directories every process of the host shares: a worker writing there
# could leave a step's data for another worker (of another task, or the same shared task
# serving another namespace) or for a later step, so each worker gets its own in their place.
SHARED_TEMPS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


def _private_temps(
    workdir: Path, uid: int, needed: list[str]
) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """For each shared temporary directory here, the worker's own in its work directory
    (made now, its uid's), and the paths under the shared one it still needs (a venv or a
    cache under /tmp, as in tests and CI)."""
    out = []
    for shared in SHARED_TEMPS:
        if os.path.islink(shared) or not os.path.isdir(shared):
            continue
        own = workdir / (".wtm" + shared.replace("/", "-"))
        own.mkdir(mode=0o700)
        os.chown(own, uid, uid)
        under = {p for p in needed if p.startswith(shared + "/") and os.path.exists(p)}
        out.append((shared, str(own), _outermost(under)))
    return tuple(out)


def _outermost(paths: set[str]) -> tuple[str, ...]:
    """``paths`` without those under another of them (binding the outer one keeps both)."""
    kept: list[str] = []
    for p in sorted(paths):
        if not any(p == k or p.startswith(k + "/") for k in kept):
            kept.append(p)
    return tuple(kept)


def _traversable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXOTH)


def _untraversable_ancestors(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if p != Path("/") and not _traversable_by_others(p)]


class Sandbox:
    """The executor's side: decides each worker's confinement and cleans up after it."""

    def __init__(
        self,
        cache_root: Path,
        ceilings: Ceilings = Ceilings(),
        uid_base: int = 61000,
        enabled: bool = True,
        threads: int = 0,
        uid_locks: Path = worker_uids.DEFAULT_DIRECTORY,
    ) -> None:
        self.cache_root = cache_root.resolve()
        self.threads = threads  # each worker's numeric-library threads (``thread_share``)
        self.work_root = self.cache_root / "work"
        self.ceilings = ceilings
        self.uid_base = uid_base
        self.privileged = enabled and os.geteuid() == 0
        self._free_uids: list[int] = []
        # Claimed host-wide: another executor here never runs a worker as the same uid.
        self._uids = WorkerUids(uid_base, uid_locks)
        self.work_root.mkdir(parents=True, exist_ok=True)
        if self.privileged:
            # Others may pass through the cache but not list it: a worker reaches only the
            # paths it is given (artifacts are named by their digest; work directories by
            # a random name).
            for d in (self.cache_root, self.cache_root / "artifacts", self.work_root):
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o711)
        self.interpreter_paths = sorted(
            {str(Path(p).resolve()) for p in (sys.base_prefix, sys.prefix, *sys.path) if p} - {""}
        )

    @property
    def level(self) -> str:
        """What the executor says in its hello and operators see (executor list):
        "isolated", or "limits" where workers share its uid, network and files."""
        return "isolated" if self.privileged else "limits"

    def granted(self, resources: dict[str, Any]) -> dict[str, int]:
        return effective(resources, self.ceilings)

    def confinement(
        self,
        package_dir: Path,
        extra_paths: tuple[str, ...],
        resources: dict[str, Any],
        namespace: str = "default",
    ) -> Confinement:
        """A new worker's confinement for steps of ``namespace`` (its private directory is
        made now; of the artifact store it sees only that namespace's part)."""
        workdir = Path(tempfile.mkdtemp(prefix="w-", dir=self.work_root))
        granted = effective(resources, self.ceilings)
        if not self.privileged:
            return Confinement(
                str(workdir), os.getpid(), rlimits(granted, own_uid=False), threads=self.threads
            )
        uid = self._free_uids.pop() if self._free_uids else self._uids.claim()
        os.chown(workdir, uid, uid)
        workdir.chmod(0o700)
        artifacts = self.cache_root / "artifacts" / namespace  # made now: only what exists
        if not artifacts.is_dir():  # is kept in view (``ArtifactCache`` makes it the same)
            artifacts.mkdir(parents=True, exist_ok=True)
            artifacts.chmod(0o711)
        keep_in_cache = [
            str(package_dir.resolve()),
            str(workdir),
            str(artifacts),
            *(str(Path(p).resolve()) for p in extra_paths),
        ]
        needed = [*self.interpreter_paths, os.getcwd()]
        covers = self._covers(needed, keep_in_cache)
        temps = _private_temps(workdir, uid, [*needed, *keep_in_cache, *(d for d, _ in covers)])
        return Confinement(
            str(workdir),
            os.getpid(),
            rlimits(granted, own_uid=True),
            uid=uid,
            isolate=True,
            covers=covers,
            temps=temps,
            read_only=(str(package_dir.resolve()), *(str(Path(p).resolve()) for p in extra_paths)),
            threads=self.threads,
        )

    def _covers(
        self, needed: list[str], keep_in_cache: list[str]
    ) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Directories to cover with an empty tmpfs, each with the paths under it to keep:
        those the worker's uid could not pass through (keeping what it needs under them),
        then the cache root (keeping this worker's own paths)."""
        covers: dict[str, set[str]] = {}
        for path in [*needed, *keep_in_cache]:
            p = Path(path)
            if not p.exists():
                continue
            for blocked in _untraversable_ancestors(p)[:1]:  # the outermost one
                covers.setdefault(str(blocked), set()).add(path)
        cache = str(self.cache_root)
        for outer, kept in covers.items():  # a cache under a covered directory stays reachable
            if cache.startswith(outer + "/"):
                kept -= {k for k in kept if k.startswith(cache + "/")}
                kept.add(cache)
        ordered = [(d, _outermost(k)) for d, k in sorted(covers.items(), key=lambda x: x[0])]
        in_cache = {k for k in keep_in_cache if k.startswith(cache + "/")}
        return (*ordered, (cache, _outermost(in_cache)))

    def release(self, c: Confinement) -> None:
        """The worker is gone: its uid is free again, its directory removed."""
        shutil.rmtree(c.workdir, ignore_errors=True)
        if c.uid is not None:
            self._free_uids.append(c.uid)


def protect_executor() -> None:
    """Make the executor itself non-dumpable: a worker of the same uid (an executor that is
    not root) can then neither ptrace it nor read its /proc environ and memory, where its key
    and the backing services' addresses are."""
    with contextlib.suppress(OSError, AttributeError):
        _libc.prctl(4, 0)  # PR_SET_DUMPABLE


# The worker's side ---------------------------------------------------------------------------

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
