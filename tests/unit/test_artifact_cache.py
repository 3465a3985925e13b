"""The executor's artifact cache: per namespace, and not listable by the sandboxed workers
that see it (a worker reaches only the files whose digest it was given)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from common.artifacts import make_uri
from common.packaging import sha256_hex
from services.executor.artifact_cache import ArtifactCache


def test_each_namespace_has_its_own_unlistable_directory(tmp_path: Path) -> None:
    data = b"team-a's photo"
    uri = make_uri(sha256_hex(data), "photo.jpg")
    fetched: list[str] = []

    async def fetch(u: str, namespace: str) -> AsyncIterator[bytes]:
        fetched.append(namespace)
        yield data

    async def main() -> tuple[Path, Path]:
        cache = ArtifactCache(tmp_path, fetch)
        return await cache.path(uri, "team-a"), await cache.path(uri, "team-b")

    a, b = asyncio.run(main())
    assert a != b and a.read_bytes() == b.read_bytes() == data
    assert fetched == ["team-a", "team-b"]  # each namespace fetched it itself
    for namespace in ("team-a", "team-b"):
        mode = stat.S_IMODE((tmp_path / namespace).stat().st_mode)
        assert mode & 0o044 == 0 and mode & 0o011 == 0o011, oct(mode)  # pass, not list
