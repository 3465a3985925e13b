"""``worker_disk``: what a worker's files take, measured on real files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from services.executor.worker_disk import DiskWatch, usage

MiB = 2**20


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())


def test_usage_counts_the_blocks_of_every_file_under_the_directory(tmp_path: Path) -> None:
    write(tmp_path / "a.bin", 3 * MiB)
    write(tmp_path / ".wtm-tmp" / "deep" / "b.bin", 2 * MiB)
    found = usage(str(tmp_path))
    assert 5 * MiB <= found.bytes < 5 * MiB + 256 * 1024
    assert found.files == 4  # a.bin, .wtm-tmp, deep, b.bin


def test_a_sparse_file_counts_what_it_holds_not_its_length(tmp_path: Path) -> None:
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(512 * MiB)
    assert usage(str(tmp_path)).bytes < MiB


def test_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "big.bin", 4 * MiB)
    root = tmp_path / "root"
    root.mkdir()
    (root / "there").symlink_to(outside)
    assert usage(str(root)).bytes < MiB


def test_a_directory_its_owner_made_unreadable_is_still_measured(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    write(hidden / "x.bin", 2 * MiB)
    hidden.chmod(0)
    try:
        assert usage(str(tmp_path)).bytes >= 2 * MiB
    finally:
        hidden.chmod(0o700)


def test_the_walk_stops_past_the_most_files(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"f{i}").touch()
    assert usage(str(tmp_path), max_files=10).files == 11


def test_a_watch_says_why_a_directory_is_over_its_limit(tmp_path: Path) -> None:
    watch = DiskWatch(str(tmp_path), limit_mb=1)
    assert asyncio.run(watch.over()) is None
    write(tmp_path / "big.bin", 2 * MiB)
    why = asyncio.run(watch.over())
    assert why is not None
    assert "over its limit of 1 MiB (task.json resources.disk_mb)" in why
    assert asyncio.run(DiskWatch(str(tmp_path / "gone"), limit_mb=1).over()) is None


def test_a_watch_counts_too_many_files_as_over(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"f{i}").touch()
    why = asyncio.run(DiskWatch(str(tmp_path), limit_mb=100, max_files=10).over())
    assert why is not None and "over 10 files" in why
