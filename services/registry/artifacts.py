"""Artifacts: files clients upload for runs, stored by digest, named by URI."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from common.artifacts import make_uri, parse_uri
from common.errors import InvalidArgument
from common.packaging import sha256_hex
from services.common.auth import one_namespace
from services.registry.stores import ArtifactStore


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
