"""The executor's artifact cache: per namespace, and not listable by the sandboxed workers
that see it (a worker reaches only the files whose digest it was given)."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.artifacts import make_uri
from common.errors import InvalidArgument
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


def _store(blobs: dict[str, bytes]) -> tuple[dict[str, str], object]:
    uris = {name: make_uri(sha256_hex(data), f"{name}.bin") for name, data in blobs.items()}
    by_uri = {uris[name]: data for name, data in blobs.items()}
    fetched: list[str] = []

    async def fetch(u: str, namespace: str) -> AsyncIterator[bytes]:
        fetched.append(u)
        yield by_uri[u]

    fetch.fetched = fetched  # type: ignore[attr-defined]
    return uris, fetch


def test_over_its_cap_the_least_recently_used_artifacts_go_first(tmp_path: Path) -> None:
    uris, fetch = _store({n: n.encode() * 400 for n in "abcd"})  # 400 bytes each

    async def main() -> ArtifactCache:
        cache = ArtifactCache(tmp_path, fetch, max_bytes=1300)  # type: ignore[arg-type]
        for name in "abca":  # a is used again: b is now the least recently used
            cache.release(await cache.path(uris[name], "ns"))
        cache.release(await cache.path(uris["d"], "ns"))  # 1,600 bytes: one must go
        return cache

    cache = asyncio.run(main())
    kept = sorted(p.name for p in (tmp_path / "ns").iterdir())
    assert kept == sorted(uris[n].split("/")[-2] for n in "acd")
    assert cache.total_bytes == 1200 and cache.evictions == 1
    assert fetch.fetched == [uris[n] for n in "abcd"]  # type: ignore[attr-defined]


def test_an_artifact_a_running_step_holds_is_never_removed(tmp_path: Path) -> None:
    uris, fetch = _store({n: n.encode() * 600 for n in "abc"})

    async def main() -> tuple[ArtifactCache, Path]:
        cache = ArtifactCache(tmp_path, fetch, max_bytes=1000)  # type: ignore[arg-type]
        held = await cache.path(uris["a"], "ns")  # a step is reading it
        cache.release(await cache.path(uris["b"], "ns"))  # over the cap; a is held: b goes
        cache.release(await cache.path(uris["c"], "ns"))
        assert held.read_bytes() == b"a" * 600
        cache.release(held)
        return cache, held

    cache, held = asyncio.run(main())
    # b went; a and c stay while held, over the cap until the next artifact comes
    assert held.is_file() and cache.total_bytes == 1200 and cache.evictions == 1


def test_what_an_earlier_executor_left_is_counted_and_evicted_oldest_first(
    tmp_path: Path,
) -> None:
    uris, fetch = _store({n: n.encode() * 400 for n in "abc"})

    async def fill() -> None:
        cache = ArtifactCache(tmp_path, fetch)  # type: ignore[arg-type]
        for name in "ab":
            cache.release(await cache.path(uris[name], "ns"))

    asyncio.run(fill())
    old = tmp_path / "ns" / uris["a"].split("/")[-2]
    for f in old.iterdir():
        os.utime(f, (1, 1))  # a was used long ago

    async def again() -> ArtifactCache:
        cache = ArtifactCache(tmp_path, fetch, max_bytes=1000)  # type: ignore[arg-type]
        assert cache.total_bytes == 800
        cache.release(await cache.path(uris["c"], "ns"))
        return cache

    asyncio.run(again())
    assert not old.exists()
    assert len(list((tmp_path / "ns").iterdir())) == 2


def test_names_up_to_a_filesystems_limit_are_written_and_none_beyond_it_or_dot_dot(
    tmp_path: Path,
) -> None:
    """A URI can come from task code (an upstream step's output), so a name the cache could
    not write is refused as the input's fault (InvalidArgument: the step fails FATAL), never
    an OSError in the executor's own code (a slot error, counted against the executor). The
    temporary file's name does not grow with the artifact's."""
    data = b"x"
    digest = sha256_hex(data)

    async def fetch(u: str, namespace: str) -> AsyncIterator[bytes]:
        yield data

    cache = ArtifactCache(tmp_path, fetch)
    for name in ("a" * 255, "é" * 127):  # 255 and 254 bytes
        path = asyncio.run(cache.path(f"artifact://sha256/{digest}/{name}", "team-a"))
        assert path.name == name and path.read_bytes() == data
    for name in (".", "..", "é" * 128):
        with pytest.raises(InvalidArgument, match="must not be '.' or '..' nor longer"):
            asyncio.run(cache.path(f"artifact://sha256/{digest}/{name}", "team-a"))
    assert sorted(p.name for p in (tmp_path / "team-a" / digest).iterdir()) == sorted(
        ["a" * 255, "é" * 127]
    )  # nothing else written: no stray temporary file, no file in the directory's place


def test_an_uploaded_files_name_becomes_one_every_executor_can_write() -> None:
    digest = "0" * 64
    assert make_uri(digest, "..") == f"artifact://sha256/{digest}/file"
    assert make_uri(digest, ".") == f"artifact://sha256/{digest}/file"
    long = make_uri(digest, "p" * 300 + ".jpeg")
    name = long.rsplit("/", 1)[1]
    assert len(name) == 128 and name.endswith(".jpeg")
    assert make_uri(digest, "résumé photo.png").endswith("/r_sum_photo.png")
