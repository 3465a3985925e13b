"""``ObjectStore``: the executor's way to the object store, which it reaches through the
registry (it holds no store credentials of its own): task packages and input artifacts
downloaded in chunks, a large output uploaded, each call made in the namespace of the step it
is for. A call that fails for a reason that may pass (``transient``) is tried again for up
to ``store_retry_seconds`` (tenacity), so a short outage of the registry or the store costs
no step a retry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from common.artifacts import upload_requests
from common.client_core import AsyncCaller, Metadata
from common.errors import (
    DeadlineExceeded,
    Internal,
    ResourceExhausted,
    Unavailable,
    WtmError,
)
from services.common import auth
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc

T = TypeVar("T")

# Registry answers that may well change when asked again (not a NOT_FOUND or a refusal).
_TRANSIENT = (Unavailable, DeadlineExceeded, Internal, ResourceExhausted)
UPLOAD_TIMEOUT_S = 120


def transient(exc: BaseException) -> bool:
    """A registry call that may well work when tried again."""
    return isinstance(exc, _TRANSIENT) or (type(exc) is WtmError and exc.code == "UNKNOWN")


def _in(namespace: str) -> Metadata:
    """The header of a registry call made for a step of ``namespace``."""
    return ((auth.NAMESPACE_HEADER, namespace or auth.DEFAULT_NAMESPACE),)


class ObjectStore:
    """Packages and artifacts through the registry (its caller's own retries are not used:
    ``retried`` is the policy here)."""

    def __init__(self, registry: AsyncCaller, retry_seconds: float) -> None:
        self._caller = registry
        self._registry = rpb_grpc.RegistryServiceStub(registry.channel)
        self.retry_seconds = retry_seconds

    def package(self, digest: str, namespace: str) -> AsyncIterator[bytes]:
        """A task package's archive, in chunks."""
        request = rpb.DownloadTaskPackageRequest(digest=digest)
        return self._chunks(self._registry.DownloadTaskPackage, request, namespace)

    def artifact(self, uri: str, namespace: str) -> AsyncIterator[bytes]:
        """An artifact's bytes, in chunks."""
        request = rpb.DownloadArtifactRequest(uri=uri)
        return self._chunks(self._registry.DownloadArtifact, request, namespace)

    async def upload(self, name: str, data: bytes, namespace: str) -> str:
        """Store ``data`` as an artifact named ``name`` (tried again as ``retried`` does);
        its URI."""
        reply = await self.retried(
            lambda: self._caller.unary(
                self._registry.UploadArtifact,
                upload_requests(name, data),
                metadata=_in(namespace),
                timeout=UPLOAD_TIMEOUT_S,
            )
        )
        return str(reply.uri)

    async def _chunks(self, method: Any, request: Any, namespace: str) -> AsyncIterator[bytes]:
        async for reply in self._caller.stream(method, request, metadata=_in(namespace)):
            yield reply.chunk

    async def retried(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, which reaches the object store through the registry. After a transient
        failure it is retried for up to ``retry_seconds`` (the step's lease is renewed
        meanwhile), so a short outage costs none of the step's retries. The first try goes
        straight: the retry machinery costs ~35 µs, paid only once something failed."""
        try:
            return await call()
        except WtmError as exc:
            if not transient(exc):
                raise
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(self.retry_seconds),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            retry=retry_if_exception(transient),
            reraise=True,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity re-raises the last error")
