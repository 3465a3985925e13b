"""``ArtifactCache``: run inputs uploaded as artifacts, fetched once by digest and verified,
kept within a size cap, least recently used first out."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from common.artifacts import download_verified, parse_uri

Fetch = Callable[[str, str], AsyncIterator[bytes]]  # (uri, namespace) -> chunks


class ArtifactCache:
    """Artifacts under ``root/<namespace>/<digest>/<filename>``: an artifact URI names a
    file only in the namespace it was uploaded in, so a step of another namespace never
    finds it here. Sandboxed workers see this tree; ``root`` and each namespace directory
    may be passed through but not listed (mode 0711), so a worker reaches only the files
    whose digest it was given.

    With ``max_bytes``, the least recently used artifacts are removed once the cache is
    over it (each step's inputs differ, so until 2026-12-04 it only grew: a long-lived
    executor filled its volume). A file ``path`` returns is *held* until ``release``: the
    step reading it is still running, and it is never removed under it."""

    def __init__(self, root: str | Path, fetch: Fetch, max_bytes: int = 0) -> None:
        self.root = Path(root)
        self._fetch = fetch
        self.max_bytes = max_bytes
        self._locks: dict[str, asyncio.Lock] = {}
        self._held: Counter[str] = Counter()  # "namespace/digest" -> steps using it
        # "namespace/digest" -> bytes, least recently used first (the files' times at start).
        self._entries: OrderedDict[str, int] = OrderedDict()
        found = []
        for directory in self.root.glob("*/*"):
            if directory.is_dir() and not directory.name.startswith("."):
                files = [f.stat() for f in directory.iterdir() if f.is_file()]
                used = max((s.st_mtime for s in files), default=0.0)
                found.append((used, f"{directory.parent.name}/{directory.name}", files))
        for _, key, files in sorted(found):
            self._entries[key] = sum(s.st_size for s in files)
        self.total_bytes = sum(self._entries.values())
        self.evictions = 0

    async def path(self, uri: str, namespace: str) -> Path:
        """The local file for ``uri`` of ``namespace``, downloading and verifying it if
        needed; held until ``release``."""
        digest, filename = parse_uri(uri)
        key = f"{namespace}/{digest}"
        target = self.root / namespace / digest / filename
        if not (key in self._entries and target.is_file()):
            async with self._locks.setdefault(key, asyncio.Lock()):
                if not target.is_file():
                    size = await self._download(uri, namespace, target)
                    self._entries[key] = self._entries.get(key, 0) + size
                    self.total_bytes += size
                elif key not in self._entries:  # left by an eviction that found it held
                    self._entries[key] = target.stat().st_size
                    self.total_bytes += self._entries[key]
        self._entries.move_to_end(key)
        self._held[key] += 1
        await self._evict()
        return target

    def release(self, path: str | Path) -> None:
        """A step is done with a file ``path`` returned."""
        p = Path(path)
        key = f"{p.parent.parent.name}/{p.parent.name}"
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]

    async def _download(self, uri: str, namespace: str, target: Path) -> int:
        data = await download_verified(self._fetch(uri, namespace), parse_uri(uri)[0], "artifact")
        namespace_dir = self.root / namespace
        if not namespace_dir.is_dir():
            namespace_dir.mkdir(parents=True, exist_ok=True)
            namespace_dir.chmod(0o711)
        target.parent.mkdir(exist_ok=True)
        # A name of its own, not the artifact's: a file name near the 255-byte limit must
        # not make the temporary one too long.
        tmp = target.with_name(f".part-{os.getpid()}-{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        tmp.rename(target)
        return len(data)

    async def _evict(self) -> None:
        """Remove the least recently used artifacts no step holds until under the cap."""
        while self.max_bytes and self.total_bytes > self.max_bytes:
            victim = next((k for k in self._entries if k not in self._held), None)
            if victim is None:  # everything is in use: over the cap until released
                return
            self.total_bytes -= self._entries.pop(victim)
            self.evictions += 1
            async with self._locks.setdefault(victim, asyncio.Lock()):
                if victim not in self._entries:  # not fetched again meanwhile
                    await asyncio.to_thread(shutil.rmtree, self.root / victim, True)
