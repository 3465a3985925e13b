"""``LruDirectories``: what a cache of directories keeps, within a size cap.

The package cache (one directory per digest) and the installed requirements (one per set)
keep the same books: each directory's size and last use, the last use kept as the
directory's mtime so that the order survives restarts; past the cap the least recently used
go first, never one the caller says is in use. A directory is taken out of the way by a
rename (a lookup from then on misses it, and the cache fetches or installs it afresh), and
the caller deletes it afterwards, off the event loop. Names starting with "." are the
caches' own temporary directories: any found at start were cut short and are removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class LruDirectories:
    """The directories under ``root`` that ``complete`` accepts, by name, with their sizes
    (``size_of``) and last uses; ``max_bytes`` 0 is no cap."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        size_of: Callable[[Path], int],
        what: str,
        complete: Callable[[Path], bool] = lambda path: True,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.what = what  # "package", "requirements": for the log
        self.evictions = 0
        self._entries: dict[str, tuple[int, float]] = {}
        if root.is_dir():
            for path in root.iterdir():
                if path.name.startswith("."):
                    shutil.rmtree(path, ignore_errors=True)
                elif path.is_dir() and complete(path):
                    self._entries[path.name] = (size_of(path), path.stat().st_mtime)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self._entries.values())

    def add(self, name: str, size: int) -> None:
        self._entries[name] = (size, time.time())

    def touch(self, name: str) -> None:
        """``name`` was used now (at one-second grain: enough for the order, and it spares
        the syscall on every step)."""
        size, last = self._entries.get(name, (0, 0.0))
        now = time.time()
        if now - last > 1.0:
            self._entries[name] = (size, now)
            try:
                os.utime(self.root / name, (now, now))
            except FileNotFoundError:  # removed under the cache: it is not kept
                del self._entries[name]

    def evict(self, keep: str, in_use: Callable[[str], bool]) -> list[tuple[str, Path]]:
        """Take the least recently used directories out of the way until the cap holds,
        never ``keep`` nor one ``in_use`` names; each one's path as it was, and where it is
        now (to delete). Done at once, with no await between the choice and the renames, so
        nothing starts using a directory in between."""
        doomed: list[tuple[str, Path]] = []
        if not self.max_bytes:
            return doomed
        for name, _ in sorted(self._entries.items(), key=lambda kv: kv[1][1]):
            if self.total_bytes <= self.max_bytes:
                break
            if name == keep or in_use(name):
                continue
            del self._entries[name]
            doomed.append((str(self.root / name), self.root / f".evicted-{name}"))
            (self.root / name).rename(doomed[-1][1])
            self.evictions += 1
            log.info("evicted %s %s from the cache", self.what, name)
        return doomed
