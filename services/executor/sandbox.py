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

This module is the executor's side (what each worker is given); the worker's side, which
applies it in the new process before any task code runs, is ``worker_confinement.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import shutil
import stat
import sys
import tempfile
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
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    with contextlib.suppress(OSError, AttributeError):
        libc.prctl(4, 0)  # PR_SET_DUMPABLE
