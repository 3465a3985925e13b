"""``LargeDocuments``: step outputs and inputs too large to travel inline.

Executors store an output over the inline limit as an artifact and report a reference
(``common.refs``). When a downstream step's input is built, the scheduler fetches
the referenced outputs it reads (kept in a small cache, since siblings often read the same
one); when the input it builds is itself over the limit, it stores that as an artifact too
and the executor fetches it. Artifacts go through the registry, which owns the object store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator

from common import refs
from common.artifacts import download_verified, parse_uri, upload_requests
from common.client_core import AsyncCaller
from common.errors import FailedPrecondition, InvalidArgument, NotFound, WtmError
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc


class LargeDocumentError(Exception):
    """A referenced document could not be fetched or stored; ``retryable`` says whether
    another attempt may succeed (the object store was unreachable) or not (it is gone)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class LargeDocuments:
    """Fetches and stores large JSON documents as artifacts through the registry."""

    def __init__(
        self,
        registry_address: str,
        token: str = "",
        inline_max_bytes: int = refs.DEFAULT_INLINE_MAX_BYTES,
        cache_bytes: int = 64 * 1024 * 1024,
        tls_ca: str = "",
    ) -> None:
        self._address = registry_address
        self._tls_ca = tls_ca
        self._token = token
        self._caller: AsyncCaller | None = None
        self._registry: rpb_grpc.RegistryServiceStub | None = None
        self.inline_max_bytes = inline_max_bytes
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, str] = OrderedDict()  # digest -> text, least recent first
        self._cached = 0

    def _open(self) -> tuple[AsyncCaller, rpb_grpc.RegistryServiceStub]:
        if self._caller is None or self._registry is None:  # on first use: most never need it
            self._caller = AsyncCaller(self._address, ca=self._tls_ca, api_key=self._token)
            self._registry = rpb_grpc.RegistryServiceStub(self._caller.channel)
        return self._caller, self._registry

    async def close(self) -> None:
        if self._caller is not None:
            await self._caller.close()

    async def expand(self, text: str) -> str:
        """The document a reference stands for (JSON text); any other text as it is."""
        uri = refs.text_ref_uri(text)
        if uri is None:
            return text
        digest, _ = parse_uri(uri)
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        try:
            data = await download_verified(self._chunks(uri), digest, "large document")
        except WtmError as exc:
            # Gone, malformed, or not what the digest says: no other attempt can change that.
            final = isinstance(exc, (NotFound, InvalidArgument, FailedPrecondition))
            raise LargeDocumentError(
                f"fetching {uri}: {exc.code}: {exc.message}", retryable=not final
            ) from exc
        document = data.decode()
        self._remember(digest, document)
        return document

    async def _chunks(self, uri: str) -> AsyncIterator[bytes]:
        caller, registry = self._open()
        request = rpb.DownloadArtifactRequest(uri=uri)
        async for reply in caller.stream(registry.DownloadArtifact, request, timeout=60):
            yield reply.chunk

    async def shrink(self, text: str, filename: str) -> str:
        """``text``, or a reference to it stored as an artifact when it is over the limit."""
        if not refs.too_large(text, self.inline_max_bytes):
            return text
        data = text.encode()
        caller, registry = self._open()
        try:
            reply = await caller.unary(
                registry.UploadArtifact, upload_requests(filename, data), timeout=60
            )
        except WtmError as exc:
            raise LargeDocumentError(
                f"storing a {len(data)}-byte input: {exc.code}: {exc.message}", retryable=True
            ) from exc
        return refs.make_ref(reply.uri, len(data))

    def _remember(self, digest: str, document: str) -> None:
        if len(document) > self.cache_bytes // 4:
            return
        self._cache[digest] = document
        self._cached += len(document)
        while self._cached > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped)
