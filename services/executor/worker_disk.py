"""``DiskWatch``: what a worker's files take on disk, held to its ``disk_mb``.

A worker writes only in its work directory (its ``HOME``, ``TMPDIR`` and, as root, its own
``/tmp``, ``/var/tmp`` and ``/dev/shm`` are directories under it). ``RLIMIT_FSIZE`` bounds
each file it writes, not their sum: without this, one task could fill the executor's cache
volume, and on Kubernetes the pod's ``emptyDir`` ``sizeLimit`` then evicts the executor with
every other team's steps on it. The directory is measured as the kubelet measures a pod's
ephemeral storage: by walking it, now and then (once a second, by ``WorkerPool.sweep``, in a
thread, off the steps' path), counting the blocks each file holds; a worker over its limit is
killed and its directory removed. Between two walks it can write past the limit for about a
second.

A walk stops past ``max_files`` entries (``WTM_WORKER_MAX_FILES``, ``MAX_FILES`` by default),
so that its cost is bounded whatever a task creates; a directory holding more counts as over
the limit.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass

MAX_FILES = 20_000  # entries a worker's directory may hold (each walk visits all of them)


@dataclass(frozen=True)
class Usage:
    bytes: int  # the blocks its files hold (sparse parts are not counted), directories too
    files: int  # entries seen; past MAX_FILES the walk stopped there


def usage(root: str, max_files: int = MAX_FILES) -> Usage:
    """What the files under ``root`` hold on disk (symbolic links not followed; mounts are
    not crossed). A directory the walk cannot read is made readable to its owner first (an
    executor that is not root shares its workers' uid; as root it reads them anyway)."""
    total, files = 0, 0
    device = os.lstat(root).st_dev
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except PermissionError:
            os.chmod(directory, stat.S_IRWXU)
            entries = list(os.scandir(directory))
        except FileNotFoundError:  # removed while walked
            continue
        for entry in entries:
            files += 1
            if files > max_files:
                return Usage(total, files)
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            total += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode) and st.st_dev == device:
                pending.append(entry.path)
    return Usage(total, files)


class DiskWatch:
    """Holds one worker's directory to ``limit_mb`` (0: no limit)."""

    def __init__(self, root: str, limit_mb: int, max_files: int = MAX_FILES) -> None:
        self.root = root
        self.limit_mb = limit_mb
        self.max_files = max_files
        self.used_bytes = 0  # as the last walk found (the executor's heartbeats report it)

    async def over(self) -> str | None:
        """Why the directory is over its limit, or None (measured now, in a thread)."""
        try:
            used = await asyncio.to_thread(usage, self.root, self.max_files)
        except FileNotFoundError:  # the worker is gone, and its directory with it
            return None
        except OSError as exc:  # a walk that fails is not a pass
            return f"the worker's directory could not be measured ({exc.strerror})"
        self.used_bytes = used.bytes
        if used.files > self.max_files:
            return (
                f"the worker's directory holds over {self.max_files:,} files, the most a "
                "worker may keep (WTM_WORKER_MAX_FILES)"
            )
        if used.bytes > self.limit_mb * 2**20:
            return (
                f"the worker's files took {used.bytes / 2**20:,.0f} MiB of disk, over its limit of "
                f"{self.limit_mb:,} MiB (task.json resources.disk_mb)"
            )
        return None
