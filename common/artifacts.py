"""Artifact URIs: ``artifact://sha256/<digest>/<filename>``.

An artifact is a file a client uploaded (an input image, say). Runs carry the URI; the
executor fetches the file by digest before the step runs, and the task kit turns the URI into
a local path. The filename stays in the URI so its extension still tells the format.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import PurePosixPath
from typing import Any

from common.errors import FailedPrecondition, InvalidArgument
from common.packaging import MAX_NAME_BYTES, over_name_max
from wtm.v1 import registry_service_pb2 as rpb

CHUNK = 256 * 1024  # bytes per upload message

SCHEME = "artifact://"
_URI = re.compile(r"^artifact://sha256/([0-9a-f]{64})/([^/\\]{1,255})$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


MAX_NAME_CHARS = 128  # of a name make_uri gives (its extension kept)


def make_uri(digest: str, filename: str) -> str:
    name = _SAFE_NAME.sub("_", PurePosixPath(filename).name)
    if name in ("", ".", ".."):
        name = "file"
    if len(name) > MAX_NAME_CHARS:
        suffix = PurePosixPath(name).suffix[:16]
        name = name[: MAX_NAME_CHARS - len(suffix)] + suffix
    return f"{SCHEME}sha256/{digest}/{name}"


def parse_uri(uri: str, field: str = "uri") -> tuple[str, str]:
    """(digest, filename) of an artifact URI. The filename must be one a filesystem can
    hold in a directory of its own: not "." or "..", at most 255 bytes. An executor writes
    the file under that name, and a URI can come from task code (an upstream output), so
    one it could not write must be refused here, as the input's fault, not fail in the
    executor's own code."""
    m = _URI.match(uri)
    if not m:
        raise InvalidArgument(
            f"{uri!r} is not an artifact URI (artifact://sha256/<digest>/<filename>)", field=field
        )
    name = m.group(2)
    if name in (".", "..") or over_name_max(name):
        raise InvalidArgument(
            f"{uri[:300]!r}: the file name must not be '.' or '..' nor longer than "
            f"{MAX_NAME_BYTES} bytes",
            field=field,
        )
    return m.group(1), name


def digests_in(text: str) -> list[str]:
    """The digests of the artifact URIs anywhere in a JSON text (an input, an output, a
    large document's reference), each once: what a record names, so that the artifact
    sweep keeps those files while the record is kept. Read from the parsed document, so a
    URI written with escaped slashes (``artifact:\\/\\/…``, as some JSON encoders do) counts."""
    if "artifact:" not in text:  # nearly every document: no parse
        return []
    try:
        uris = list(find_uris(json.loads(text)))
    except ValueError:
        uris = []
    found = (m.group(1) for m in map(_URI.match, uris) if m)
    return list(dict.fromkeys(found))


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


def find_uris(document: Any) -> Iterator[str]:
    """Every artifact URI anywhere in a JSON document."""
    if is_uri(document):
        yield document
    elif isinstance(document, dict):
        for value in document.values():
            yield from find_uris(value)
    elif isinstance(document, list):
        for value in document:
            yield from find_uris(value)


FILE_FIELD_SUFFIXES = ("path", "file", "image", "uri", "url")


def is_file_field(name: str) -> bool:
    """Whether an input field names a file by convention (``image_path``, ``source_file``)."""
    return name.lower().endswith(FILE_FIELD_SUFFIXES)


def upload_requests(filename: str, data: bytes) -> Iterator[rpb.UploadArtifactRequest]:
    """The messages of an UploadArtifact stream: a header naming the file, then chunks."""
    yield rpb.UploadArtifactRequest(header=rpb.UploadArtifactHeader(filename=filename))
    for i in range(0, len(data), CHUNK):
        yield rpb.UploadArtifactRequest(chunk=data[i : i + CHUNK])


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
