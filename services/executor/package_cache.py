"""``PackageCache``: task packages on local disk, by digest, fetched once and verified.

A package is downloaded from the registry, its sha256 checked against the digest it was
asked for, inspected for unsafe entries, and extracted into ``root/<digest>`` atomically
(extract to a temporary directory, then rename). Concurrent requests for one digest share
one download. The cache survives restarts. With a size cap, installing a package evicts the
least recently used ones (by the time each was last used, kept as the directory's mtime so
the order survives restarts too) until the cache fits, never one a running step uses; idle
warm workers of an evicted package are retired first (``on_evict``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from common.artifacts import download_verified
from common.packaging import extract_to, inspect_archive
from services.common.auth import DEFAULT_NAMESPACE

log = logging.getLogger(__name__)
Fetch = Callable[[str, str], AsyncIterator[bytes]]  # (digest, namespace) -> chunks


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


class PackageCache:
    """Extracted task packages under ``root``, keyed by digest, optionally capped in size."""

    def __init__(
        self,
        root: str | Path,
        fetch: Fetch,
        max_bytes: int = 0,
        in_use: Callable[[], set[str]] = set,
        on_evict: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._fetch = fetch
        self._locks: dict[str, asyncio.Lock] = {}
        self.max_bytes = max_bytes
        self._in_use = in_use
        self._on_evict = on_evict
        # digest -> (size in bytes, last used), loaded from disk so eviction order survives.
        self._entries: dict[str, tuple[int, float]] = {
            p.name: (_tree_bytes(p), p.stat().st_mtime)
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".")
        }
        self.downloads = 0
        self.evictions = 0

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self._entries.values())

    def path(self, digest: str) -> Path:
        return self.root / digest

    def has(self, digest: str) -> bool:
        """Whether ``get`` would answer from the cache at once."""
        return digest in self._entries and self.path(digest).is_dir()

    async def get(self, digest: str, namespace: str = DEFAULT_NAMESPACE) -> Path:
        """The extracted package directory for ``digest``, downloading it if needed (as a
        step of ``namespace``: the registry serves a package only to namespaces that may
        use it; the scheduler sends only digests the step's namespace resolved)."""
        target = self.path(digest)
        if digest in self._entries and target.is_dir():
            self._touch(digest)
            return target
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if target.is_dir():
                self._entries.setdefault(digest, (_tree_bytes(target), 0.0))
                self._touch(digest)
                return target
            log.info("downloading package %s", digest)
            data = await download_verified(self._fetch(digest, namespace), digest, "package")
            self.downloads += 1
            size = await asyncio.to_thread(self._install, digest, data)
            self._entries[digest] = (size, time.time())
            for evicted, path in self._evict(keep=digest):
                if self._on_evict is not None:
                    await self._on_evict(evicted)
                await asyncio.to_thread(shutil.rmtree, path, True)
        return target

    def _touch(self, digest: str) -> None:
        size, last = self._entries[digest]
        now = time.time()
        if now - last > 1.0:  # the order at one-second grain is enough; spare the syscall
            self._entries[digest] = (size, now)
            os.utime(self.path(digest), (now, now))

    def _install(self, digest: str, data: bytes) -> int:
        contents = inspect_archive(data)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=self.root))
        try:
            extract_to(contents, tmp / "pkg")
            size = _tree_bytes(tmp / "pkg")
            (tmp / "pkg").rename(self.path(digest))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return size

    def _evict(self, keep: str) -> list[tuple[str, Path]]:
        """Drop least recently used packages until the cache fits its cap; returns each one's
        directory as it was, and where it now is (renamed out of the way, to delete)."""
        doomed: list[tuple[str, Path]] = []
        if not self.max_bytes:
            return doomed
        busy = self._in_use()
        for digest, _ in sorted(self._entries.items(), key=lambda kv: kv[1][1]):
            if self.total_bytes <= self.max_bytes:
                break
            if digest == keep or str(self.path(digest)) in busy:
                continue
            del self._entries[digest]
            doomed.append((str(self.path(digest)), self.root / f".evicted-{digest}"))
            self.path(digest).rename(doomed[-1][1])
            self.evictions += 1
            log.info("evicted package %s from the cache", digest)
        return doomed
