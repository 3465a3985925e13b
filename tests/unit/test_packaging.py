"""Package archives: deterministic packing and refusal of unsafe archives."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from common.errors import InvalidArgument
from common.packaging import ArchiveLimits, extract_to, inspect_archive, pack_directory


def make_task(root: Path) -> Path:
    root.mkdir()
    (root / "task.json").write_text('{"task_id": "t", "version": "1.0.0"}')
    (root / "task.py").write_text("class Task: pass\n")
    (root / "data").mkdir()
    (root / "data" / "weights.txt").write_text("1 2 3")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "task.cpython-311.pyc").write_bytes(b"junk")
    return root


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return gzip.compress(raw.getvalue())


def test_same_files_give_the_same_bytes_whatever_their_times(tmp_path: Path) -> None:
    task = make_task(tmp_path / "t")
    first = pack_directory(task)
    os.utime(task / "task.py", (1, 1))
    assert pack_directory(task) == first


def test_packing_leaves_out_caches(tmp_path: Path) -> None:
    contents = inspect_archive(pack_directory(make_task(tmp_path / "t")))
    assert sorted(contents.files) == ["data/weights.txt", "task.json", "task.py"]


def test_a_round_trip_restores_every_file(tmp_path: Path) -> None:
    contents = inspect_archive(pack_directory(make_task(tmp_path / "t")))
    extract_to(contents, tmp_path / "out")
    assert (tmp_path / "out" / "data" / "weights.txt").read_text() == "1 2 3"


def test_packing_refuses_a_symlink(tmp_path: Path) -> None:
    task = make_task(tmp_path / "t")
    (task / "link.py").symlink_to(task / "task.py")
    with pytest.raises(InvalidArgument, match="link.py"):
        pack_directory(task)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("../evil.py", "'..'"), ("/etc/evil", "absolute"), ("a/../../evil", "'..'")],
)
def test_paths_that_escape_are_refused(name: str, reason: str) -> None:
    data = tar_gz([(tarfile.TarInfo(name), b"x")])
    with pytest.raises(InvalidArgument, match=reason) as err:
        inspect_archive(data)
    assert name in str(err.value)


def test_links_are_refused() -> None:
    link = tarfile.TarInfo("task.py")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(InvalidArgument, match="links are not allowed"):
        inspect_archive(tar_gz([(link, b"")]))


def test_a_compression_bomb_is_refused_before_it_is_unpacked() -> None:
    bomb = tar_gz([(tarfile.TarInfo("zeros.bin"), b"\0" * (20 * 1024 * 1024))])
    assert len(bomb) < 100_000
    with pytest.raises(InvalidArgument, match="package"):
        inspect_archive(bomb, ArchiveLimits(max_ratio=100))


def test_too_many_files_are_refused() -> None:
    members = [(tarfile.TarInfo(f"f{i}.txt"), b"x") for i in range(11)]
    with pytest.raises(InvalidArgument, match="more than 10 files"):
        inspect_archive(tar_gz(members), ArchiveLimits(max_files=10))


def test_garbage_is_not_an_archive() -> None:
    with pytest.raises(InvalidArgument, match="not a valid tar.gz"):
        inspect_archive(b"this is not a tarball")


@pytest.mark.parametrize(
    ("names", "field", "reason"),
    [
        (["a", "a/b"], "a", "is a file, and a directory of 'a/b'"),
        (["a/b/c", "a/b"], "a/b", "is a file, and a directory of 'a/b/c'"),
        (["."], "package", "has no name"),
        (["x" * 256], "x" * 200, "over 255 bytes"),
        (["d/" * 600 + "f"], ("d/" * 600)[:200], "over 1024 bytes"),
    ],
)
def test_an_archive_no_filesystem_could_unpack_is_refused_naming_the_entry(
    names: list[str], field: str, reason: str, tmp_path: Path
) -> None:
    """Each of these passed inspection once and then failed every executor's unpacking in the
    executor itself (counted as the executor's fault, not the package's)."""
    data = tar_gz([(tarfile.TarInfo(n), b"x") for n in names])
    with pytest.raises(InvalidArgument, match=reason) as err:
        inspect_archive(data)
    assert err.value.field == field


def test_a_deep_tree_of_long_names_within_the_limits_unpacks(tmp_path: Path) -> None:
    names = ["a" * 255, "b/" + "c" * 255, "d/e/f.txt", "d/e/g.txt"]
    contents = inspect_archive(tar_gz([(tarfile.TarInfo(n), n.encode()) for n in names]))
    extract_to(contents, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "e" / "g.txt").read_text() == "d/e/g.txt"
