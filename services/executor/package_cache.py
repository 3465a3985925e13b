"""``PackageCache``: task packages on local disk, by digest, fetched once and verified.

A package is downloaded from the registry, its sha256 checked against the digest it was
asked for, inspected for unsafe entries, and extracted into ``root/<digest>`` atomically
(extract to a temporary directory, then rename). Concurrent requests for one digest share
one download. The cache survives restarts. With a size cap, installing a package evicts the
least recently used ones (by the time each was last used, kept as the directory's mtime so
the order survives restarts too) until the cache fits, never one a running step uses; idle
warm workers of an evicted package are retired first (``on_evict``); ``LruDirectories``
keeps the books.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from common.artifacts import download_verified
from common.packaging import extract_to, inspect_archive
from services.common.auth import DEFAULT_NAMESPACE
from services.executor.lru_directories import LruDirectories

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
        self._in_use = in_use
        self._on_evict = on_evict
        # digest -> (size in bytes, last used), from disk so eviction order survives.
        self._dirs = LruDirectories(self.root, max_bytes, _tree_bytes, "package")
        self.downloads = 0
        self._paths: dict[str, Path] = {}  # digest -> root/digest, made once (a step asks)

    @property
    def total_bytes(self) -> int:
        return self._dirs.total_bytes

    @property
    def evictions(self) -> int:
        return self._dirs.evictions

    def path(self, digest: str) -> Path:
        found = self._paths.get(digest)
        if found is None:
            found = self._paths[digest] = self.root / digest
        return found

    def has(self, digest: str) -> bool:
        """Whether the package is installed, as far as this cache knows (``get`` checks the
        disk: a directory removed behind its back is fetched again)."""
        return digest in self._dirs

    async def get(self, digest: str, namespace: str = DEFAULT_NAMESPACE) -> Path:
        """The extracted package directory for ``digest``, downloading it if needed (as a
        step of ``namespace``: the registry serves a package only to namespaces that may
        use it; the scheduler sends only digests the step's namespace resolved)."""
        target = self.path(digest)
        if digest in self._dirs and os.path.isdir(target):
            self._dirs.touch(digest)
            return target
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if target.is_dir():
                if digest not in self._dirs:
                    self._dirs.add(digest, _tree_bytes(target))
                self._dirs.touch(digest)
                return target
            log.info("downloading package %s", digest)
            data = await download_verified(self._fetch(digest, namespace), digest, "package")
            self.downloads += 1
            self._dirs.add(digest, await asyncio.to_thread(self._install, digest, data))
            busy = self._in_use()
            for evicted, path in self._dirs.evict(digest, lambda d: str(self.path(d)) in busy):
                if self._on_evict is not None:
                    await self._on_evict(evicted)
                await asyncio.to_thread(shutil.rmtree, path, True)
        return target

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
