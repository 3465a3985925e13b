"""``PackageCache``: task packages on local disk, by digest, fetched once and verified.

A package is downloaded from the registry, its sha256 checked against the digest it was
asked for, inspected for unsafe entries, and extracted into ``root/<digest>`` atomically
(extract to a temporary directory, then rename). Concurrent requests for one digest share
one download.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from services.common.errors import FailedPrecondition
from services.common.packaging import extract_to, inspect_archive

log = logging.getLogger(__name__)
Fetch = Callable[[str], AsyncIterator[bytes]]


async def download_verified(chunks: AsyncIterator[bytes], digest: str, what: str) -> bytes:
    """All of a download, refused (FailedPrecondition) unless its sha256 is ``digest``."""
    hasher = hashlib.sha256()
    parts = []
    async for chunk in chunks:
        hasher.update(chunk)
        parts.append(chunk)
    if hasher.hexdigest() != digest:
        raise FailedPrecondition(
            f"{what} content hashes to {hasher.hexdigest()}, not {digest}: refused", field="digest"
        )
    return b"".join(parts)


class PackageCache:
    """Extracted task packages under ``root``, keyed by digest."""

    def __init__(self, root: str | Path, fetch: Fetch) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._fetch = fetch
        self._locks: dict[str, asyncio.Lock] = {}
        self.downloads = 0

    def path(self, digest: str) -> Path:
        return self.root / digest

    async def get(self, digest: str) -> Path:
        """The extracted package directory for ``digest``, downloading it if needed."""
        target = self.path(digest)
        if target.is_dir():
            return target
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if target.is_dir():
                return target
            log.info("downloading package %s", digest)
            data = await download_verified(self._fetch(digest), digest, "package")
            self.downloads += 1
            await asyncio.to_thread(self._install, digest, data)
        return target

    def _install(self, digest: str, data: bytes) -> None:
        contents = inspect_archive(data)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=self.root))
        try:
            extract_to(contents, tmp / "pkg")
            (tmp / "pkg").rename(self.path(digest))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
