"""``PackageCache``: whose fault an unpacking that fails is — the package's (its steps fail,
FATAL) or this executor's (a slot error, which ``slot_faults`` counts)."""

from __future__ import annotations

import asyncio
import gzip
import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.errors import InvalidArgument
from common.packaging import pack_directory, sha256_hex
from services.executor.package_cache import PackageCache


def package(tmp_path: Path) -> tuple[str, bytes]:
    root = tmp_path / "src"
    root.mkdir()
    (root / "task.json").write_text('{"task_id": "t", "version": "1.0.0"}')
    (root / "task.py").write_text("class Task: pass\n")
    data = pack_directory(root)
    return sha256_hex(data), data


def cache_of(root: Path, data: bytes) -> PackageCache:
    async def fetch(digest: str, namespace: str) -> AsyncIterator[bytes]:
        yield data

    return PackageCache(root, fetch)


def test_a_package_is_unpacked_once_by_its_digest(tmp_path: Path) -> None:
    digest, data = package(tmp_path)
    cache = cache_of(tmp_path / "cache", data)
    path = asyncio.run(cache.get(digest))
    assert (path / "task.py").read_text() == "class Task: pass\n"
    assert asyncio.run(cache.get(digest)) == path and cache.downloads == 1


def test_a_stored_package_whose_tree_cannot_be_written_is_the_packages_fault(
    tmp_path: Path,
) -> None:
    """A package stored before the registry refused such trees ("a" a file and a
    directory): the executor inspects every package it downloads with the registry's own
    check, so it is refused as the package's (InvalidArgument: the step fails FATAL) before
    anything is written, not raised as this executor's."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("a", "a/b"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    data = gzip.compress(raw.getvalue())
    cache = cache_of(tmp_path / "cache", data)
    with pytest.raises(InvalidArgument, match="is a file, and a directory of") as err:
        asyncio.run(cache.get(sha256_hex(data)))
    assert err.value.field == "a"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # nothing half-written


def test_a_broken_cache_directory_is_this_executors_fault(tmp_path: Path) -> None:
    digest, data = package(tmp_path)
    cache = cache_of(tmp_path / "cache", data)
    (tmp_path / "cache").rmdir()
    (tmp_path / "cache").write_text("not a directory")
    with pytest.raises(OSError) as err:
        asyncio.run(cache.get(digest))
    assert not isinstance(err.value, InvalidArgument)
