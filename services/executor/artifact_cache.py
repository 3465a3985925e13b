"""``ArtifactCache``: run inputs uploaded as artifacts, fetched once by digest and verified."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from common.artifacts import download_verified, parse_uri

Fetch = Callable[[str, str], AsyncIterator[bytes]]  # (uri, namespace) -> chunks


class ArtifactCache:
    """Artifacts under ``root/<namespace>/<digest>/<filename>``: an artifact URI names a
    file only in the namespace it was uploaded in, so a step of another namespace never
    finds it here. Sandboxed workers see this tree; ``root`` and each namespace directory
    may be passed through but not listed (mode 0711), so a worker reaches only the files
    whose digest it was given."""

    def __init__(self, root: str | Path, fetch: Fetch) -> None:
        self.root = Path(root)
        self._fetch = fetch
        self._locks: dict[str, asyncio.Lock] = {}

    async def path(self, uri: str, namespace: str) -> Path:
        """The local file for ``uri`` of ``namespace``, downloading and verifying it if
        needed."""
        digest, filename = parse_uri(uri)
        target = self.root / namespace / digest / filename
        if target.is_file():
            return target
        async with self._locks.setdefault(f"{namespace}/{digest}", asyncio.Lock()):
            if target.is_file():
                return target
            data = await download_verified(self._fetch(uri, namespace), digest, "artifact")
            namespace_dir = self.root / namespace
            if not namespace_dir.is_dir():
                namespace_dir.mkdir(parents=True, exist_ok=True)
                namespace_dir.chmod(0o711)
            target.parent.mkdir(exist_ok=True)
            tmp = target.with_name(f".{filename}.{os.getpid()}.part")
            tmp.write_bytes(data)
            tmp.rename(target)
        return target
