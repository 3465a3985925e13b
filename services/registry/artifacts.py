"""Artifacts: files clients upload for runs, stored by digest, named by URI."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from common.artifacts import make_uri, parse_uri
from common.errors import InvalidArgument
from common.packaging import check_digest, sha256_hex
from services.common.auth import one_namespace
from services.common.paging import decode_token, encode_token, page_size_of
from services.registry.stores import ArtifactStore, StoredArtifactObject

MAX_DELETE = 1000  # digests per DeleteArtifacts call


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    digest: str
    size_bytes: int


class Artifacts:
    """Stores and serves artifacts."""

    def __init__(self, store: ArtifactStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise InvalidArgument(
                f"artifact is over the {self.max_bytes}-byte limit", field="chunk"
            )

    def upload(self, namespace: str, filename: str, data: bytes) -> StoredArtifact:
        """Store a file in a namespace; its URI is found only in that namespace."""
        one_namespace(namespace)
        if not filename:
            raise InvalidArgument(
                "is required (its extension tells the format)", field="header.filename"
            )
        self.check_size(len(data))
        digest = sha256_hex(data)
        self.store.put(digest, data, namespace)  # content-addressed: twice is harmless
        return StoredArtifact(make_uri(digest, filename), digest, len(data))

    def open(self, namespace: str, uri: str) -> Iterator[bytes]:
        digest, _ = parse_uri(uri)
        return self.store.stream(digest, one_namespace(namespace))

    def page(
        self, namespace: str, page_size: int, page_token: str
    ) -> tuple[list[StoredArtifactObject], str]:
        """A page of the artifacts of ``namespace`` (``*``: every namespace's), by
        namespace and digest, and the next page's token."""
        size = page_size_of(page_size, 100, 1000)
        after = decode_token(page_token, (str,))[0] if page_token else ""
        found, last_key = self.store.page(namespace, after, size)
        return found, encode_token([last_key]) if last_key else ""

    def delete(self, namespace: str, digests: list[str]) -> list[str]:
        """Remove artifacts of one namespace by digest (1 to 1000; one not stored is no
        error); returns the digests."""
        if not 1 <= len(digests) <= MAX_DELETE:
            raise InvalidArgument(
                f"name 1 to {MAX_DELETE} digests, got {len(digests)}", field="digests"
            )
        for i, digest in enumerate(digests):
            check_digest(digest, f"digests[{i}]")
        unique = list(dict.fromkeys(digests))
        self.store.delete(one_namespace(namespace), unique)
        return unique
