"""Worker uids claimed host-wide, so that no two executors on one host share one.

As root, each worker process runs as a uid of its own. Within one executor the sandbox
never gives a live worker's uid to another; across executors on one host (the local stack
runs two; so may a machine with one executor per queue) each counted from the same base, so
a worker of one executor ran as the same uid as a worker of the other: task code could
signal that process (stop or kill a step of another run, maybe another namespace's), and
``RLIMIT_NPROC``, which the kernel counts per uid, counted both tasks' threads against
each one's ``"processes"``. (Found 2026-12-04: ``os.kill(pid, 0)`` from a task on one
executor succeeded on the other's worker.)

A claim is an exclusive ``flock`` on ``<directory>/<uid>``, held open for the executor's
life: another executor skips a uid whose lock it cannot take, and the kernel drops the lock
when the executor exits, however it exits. The directory (root's, not writable by others)
must be the same for every executor of the host: ``/run/wtm/worker-uids``, or, where
``/run`` cannot be written (a container with a read-only root), the same under the
temporary directory. Executors in separate containers have separate PID namespaces and
cannot signal each other's workers, but the kernel counts ``RLIMIT_NPROC`` per uid across
them: deploy/k8s mounts one directory of the node there in every executor pod (a
``hostPath``), docker-compose.yml one volume in every executor replica.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from pathlib import Path

DEFAULT_DIRECTORY = Path("/run/wtm/worker-uids")
SPAN = 100_000  # how far above the base to look before giving up


class WorkerUids:
    """The uids this executor holds, and claims of new ones from ``base`` up."""

    def __init__(self, base: int, directory: Path = DEFAULT_DIRECTORY) -> None:
        self.base = base
        self.directory = directory
        self._held: dict[int, int] = {}  # uid -> the open lock file's descriptor
        self._next = base

    def claim(self) -> int:
        """A uid no other executor on this host holds, now held by this one until it exits.
        Raises OSError when no lock directory can be had or no uid is free."""
        directory = self._directory()
        while self._next < self.base + SPAN:
            uid = self._next
            self._next += 1
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(directory / str(uid), flags, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another executor's
                os.close(fd)
                continue
            self._held[uid] = fd
            return uid
        raise OSError(f"no free worker uid in {self.base}..{self.base + SPAN - 1}")

    def _directory(self) -> Path:
        """The lock directory, made if need be, and checked to be this user's alone: in a
        shared temporary directory another user could have made it first."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            if self.directory != DEFAULT_DIRECTORY:
                raise
            self.directory = Path(tempfile.gettempdir()) / "wtm-worker-uids"
            self.directory.mkdir(mode=0o700, exist_ok=True)
        found = os.lstat(self.directory)
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o022:
            raise OSError(
                f"{self.directory}: not a directory of this user's that only it may write "
                "(worker uid claims)"
            )
        return self.directory

    @property
    def held(self) -> list[int]:
        return sorted(self._held)

    def close(self) -> None:
        """Give every claim back (the process's exit does the same)."""
        for fd in self._held.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held.clear()
