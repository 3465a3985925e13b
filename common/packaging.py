"""Task package archives: deterministic packing, safety inspection, safe extraction.

A package is a gzip-compressed tar of a task directory. Packing is deterministic (sorted
entries, zeroed times and owners, normalised modes), so the same files always give the same
bytes and the same sha256 digest. Inspection refuses what could escape or exhaust the
machine that unpacks it: absolute paths, ``..``, links, devices, too many files, too many
bytes, and compression ratios typical of archive bombs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from common.errors import InvalidArgument

# Never packed: caches and version-control litter.
SKIPPED_DIRS = {"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what an archive may unpack to."""

    max_files: int = 2000
    max_total_bytes: int = 256 * 1024 * 1024
    max_ratio: float = 200.0


@dataclass(frozen=True)
class ArchiveContents:
    """The regular files of an inspected archive, by relative path."""

    files: dict[str, bytes]

    @property
    def total_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())


def sha256_hex(data: bytes) -> str:
    """The lowercase hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def check_digest(digest: str, field: str = "digest") -> str:
    """``digest`` when it is a sha256 digest as the stores name things (64 lowercase hex
    characters); INVALID_ARGUMENT naming ``field`` otherwise."""
    if not _DIGEST.match(digest):
        raise InvalidArgument(
            f"{digest[:80]!r} must be 64 lowercase hex characters (sha256)", field=field
        )
    return digest


def _packable(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix in SKIPPED_SUFFIXES:
                continue
            found.append(path)
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                rel = (Path(dirpath) / d).relative_to(root).as_posix()
                raise InvalidArgument("symbolic links cannot be packed", field=rel)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def pack_directory(root: str | Path) -> bytes:
    """Pack a task directory into deterministic tar.gz bytes."""
    root = Path(root)
    if not root.is_dir():
        raise InvalidArgument("not a directory", field=str(root))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _packable(root):
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file():
                raise InvalidArgument("only regular files can be packed", field=rel)
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


class _CappedReader(io.RawIOBase):
    """Reads a decompressed stream and fails once it has produced more than ``cap`` bytes."""

    def __init__(self, inner: gzip.GzipFile, cap: int) -> None:
        self._inner = inner
        self._cap = cap
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        self.count += len(data)
        if self.count > self._cap:
            raise InvalidArgument(
                f"archive unpacks to more than {self._cap} bytes", field="package"
            )
        buffer[: len(data)] = data
        return len(data)


MAX_NAME_BYTES = 255  # one component of a path (Linux's NAME_MAX)
MAX_PATH_BYTES = 1024  # a whole path inside the package


def over_name_max(name: str) -> bool:
    """Whether a file name (one path component) is longer than a filesystem takes."""
    return len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES


def _check_name(name: str) -> str:
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute():
        raise InvalidArgument("absolute paths are not allowed in a package", field=name)
    if ".." in path.parts:
        raise InvalidArgument("'..' is not allowed in a package path", field=name)
    clean = path.as_posix()
    return clean[2:] if clean.startswith("./") else clean


def _check_file_name(name: str) -> None:
    """What a file's path must be to be written on every executor: a name of its own, not
    longer than a filesystem takes. An archive that breaks this would fail each executor's
    unpacking in the executor itself, not as the package's fault."""
    if name in ("", "."):
        raise InvalidArgument("a file in the package has no name", field="package")
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidArgument(f"is over {MAX_PATH_BYTES} bytes long", field=name[:200])
    if any(over_name_max(part) for part in name.split("/")):
        raise InvalidArgument(
            f"has a name over {MAX_NAME_BYTES} bytes long (a filesystem's limit)", field=name[:200]
        )


def _check_tree(names: Iterable[str]) -> None:
    """No path is both a file and a directory of others (``a`` and ``a/b``)."""
    files = set(names)
    for name in sorted(files):
        for parent in PurePosixPath(name).parents:
            if str(parent) in files:
                raise InvalidArgument(f"is a file, and a directory of {name!r}", field=str(parent))


def inspect_archive(data: bytes, limits: ArchiveLimits = ArchiveLimits()) -> ArchiveContents:
    """Read a package archive, refusing anything unsafe; return its regular files."""
    # Tar headers and padding add at most ~1.5 KiB per member on top of the file bytes.
    cap = min(limits.max_total_bytes, int(max(len(data), 1) * limits.max_ratio))
    cap += 2048 * (limits.max_files + 2)
    files: dict[str, bytes] = {}
    try:
        reader = _CappedReader(gzip.GzipFile(fileobj=io.BytesIO(data)), cap)
        with tarfile.open(fileobj=io.BufferedReader(reader), mode="r|") as tar:
            for member in tar:
                name = _check_name(member.name)
                if member.issym() or member.islnk():
                    raise InvalidArgument("links are not allowed in a package", field=name)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise InvalidArgument("only regular files are allowed in a package", field=name)
                _check_file_name(name)
                if len(files) >= limits.max_files:
                    raise InvalidArgument(
                        f"package has more than {limits.max_files} files", field="package"
                    )
                fh = tar.extractfile(member)
                files[name] = fh.read() if fh else b""
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InvalidArgument(f"not a valid tar.gz archive ({exc})", field="package") from exc
    _check_tree(files)
    total = sum(len(b) for b in files.values())
    if total > limits.max_total_bytes:
        raise InvalidArgument(
            f"package unpacks to {total} bytes, over the {limits.max_total_bytes} limit",
            field="package",
        )
    if data and total / len(data) > limits.max_ratio:
        raise InvalidArgument(
            f"compression ratio {total / len(data):.0f}:1 is over {limits.max_ratio:.0f}:1",
            field="package",
        )
    return ArchiveContents(files)


def extract_to(contents: ArchiveContents, dest: Path) -> None:
    """Write inspected archive contents under ``dest`` (which must not exist yet)."""
    dest.mkdir(parents=True)
    root = dest.resolve()
    for name, data in contents.files.items():
        target = (dest / name).resolve()
        if not target.is_relative_to(root):
            raise InvalidArgument("path escapes the package directory", field=name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
