"""The gRPC client core: how every client of the services makes channels and calls — the
SDK (sync and async), the CLI, the executor and the scheduler's registry calls.

- Channels: TLS (``common.tls``: verified against WTM_TLS_CA or the CA given; a client
  certificate for mTLS), keep-alive pings while calls are open (a dead connection is found
  in about a minute and a half), message limits.
- Credentials: the API key as a bearer token and the ``wtm-namespace`` header, on every
  call.
- Deadlines: every call has one (``timeout``, 30 s unless said otherwise).
- Retries: a call answered UNAVAILABLE (the service is not reachable yet, or restarts) is
  tried again with exponential backoff, for up to ``retry_seconds`` (tenacity), unless the
  call says ``retry=False`` (one that must not run twice: a submit without a request id);
  so is one refused RESOURCE_EXHAUSTED with gRPC's ``grpc-retry-pushback-ms`` trailer (its
  namespace past its calls a second: not run), after the wait the trailer says.
- Errors: a status becomes the ``common.errors`` class of its code (``NotFound``,
  ``InvalidArgument`` with its ``field``, ...), so callers catch one family of exceptions.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import grpc
from grpc import aio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from common import tls
from common.errors import InvalidArgument, Unauthenticated, WtmError

T = TypeVar("T")
C = TypeVar("C", bound="_Calls")

NAMESPACE_HEADER = "wtm-namespace"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRY_SECONDS = 10.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Pings every minute while a call is open (the executor's stream, a watch), answered within
# 20 s, or the connection is closed and the call fails UNAVAILABLE. The services accept
# pings this often (services.common.grpc_server).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)

Metadata = tuple[tuple[str, str], ...]
_HEADER_TEXT = re.compile(r"[\x20-\x7e]*")


def call_metadata(api_key: str = "", namespace: str = "") -> Metadata:
    """The headers every call carries: the key, and the namespace to act in if any.

    gRPC headers hold printable ASCII only; anything else failed inside grpc
    (``ExecuteBatchError``, "Illegal header value") instead of naming what was wrong."""
    if not _HEADER_TEXT.fullmatch(api_key):
        raise Unauthenticated(
            "holds a character no key has (keys are printable ASCII)", field="api_key"
        )
    if not _HEADER_TEXT.fullmatch(namespace):
        raise InvalidArgument(
            f"{namespace[:70]!r} is not a namespace name: 1-63 lowercase letters, digits and '-'",
            field="namespace",
        )
    found: Metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
    return found + (((NAMESPACE_HEADER, namespace),) if namespace else ())


def error_of(exc: grpc.RpcError) -> WtmError:
    """The ``common.errors`` exception for a failed call."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return WtmError.from_status(code.name if code else "UNKNOWN", details or "")


PUSHBACK_HEADER = "grpc-retry-pushback-ms"  # gRPC's trailer: when a refused call may go again
_BACKOFF = wait_exponential(multiplier=0.05, max=1.0)


def _pushback(exc: BaseException | None) -> float | None:
    """Seconds a RESOURCE_EXHAUSTED refusal asks the caller to wait before trying again
    (its ``grpc-retry-pushback-ms`` trailer), or None: not such a refusal."""
    if not isinstance(exc, grpc.RpcError) or exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    trailers = exc.trailing_metadata() or ()  # type: ignore[attr-defined]
    for key, value in trailers:
        if key == PUSHBACK_HEADER and str(value).isdigit():
            return int(value) / 1000
    return None


def _retryable(exc: BaseException) -> bool:
    if not isinstance(exc, grpc.RpcError):
        return False
    return exc.code() == grpc.StatusCode.UNAVAILABLE or _pushback(exc) is not None


def _wait(state: RetryCallState) -> float:
    """As long as a pushback says; else exponential backoff."""
    after = _pushback(state.outcome.exception() if state.outcome else None)
    return after if after is not None else float(_BACKOFF(state))


def _retry_policy(seconds: float) -> dict[str, Any]:
    return {
        "retry": retry_if_exception(_retryable),
        "stop": stop_after_delay(seconds),
        "wait": _wait,
        "reraise": True,
    }


def end_call(call: Any) -> None:
    """Stop a server stream: cancel the call, or, where OpenTelemetry's client
    instrumentation wrapped it in a generator (OTEL_EXPORTER_OTLP_ENDPOINT set), close that
    generator, which ends the call under it."""
    if callable(getattr(call, "cancel", None)):
        call.cancel()
    elif callable(getattr(call, "close", None)):
        call.close()


class _Calls:
    """What every call on one channel carries: its headers, deadline and retry policy."""

    def __init__(
        self,
        address: str,
        *,
        ca: str | None = None,
        client_cert: tls.ClientCert | None = None,
        api_key: str = "",
        namespace: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.address = address
        self.channel = self._open(address, ca, client_cert)
        self.metadata = call_metadata(api_key, namespace)
        self.timeout = timeout
        self.retry_seconds = retry_seconds

    def _open(self, address: str, ca: str | None, client_cert: tls.ClientCert | None) -> Any:
        raise NotImplementedError

    def acting_as(self: C, api_key: str, namespace: str = "") -> C:
        """The same channel, carrying another key and namespace (close only the original)."""
        other = copy.copy(self)
        other.metadata = call_metadata(api_key, namespace)
        return other


class Caller(_Calls):
    """Calls on one channel, synchronously."""

    channel: grpc.Channel

    def _open(self, address: str, ca: str | None, client_cert: tls.ClientCert | None) -> Any:
        return tls.channel(address, ca, CHANNEL_OPTIONS, client_cert)

    def unary(
        self,
        method: Callable[..., T],
        request: Any,
        *,
        timeout: float | None = None,
        retry: bool = True,
        metadata: Metadata = (),
    ) -> T:
        """``method(request)`` (unary or client-streaming: then ``request`` is an iterator,
        and is not retried) with the deadline, the headers and the retry policy."""
        headers = self.metadata + metadata
        deadline = self.timeout if timeout is None else timeout

        def once() -> T:
            return method(request, metadata=headers, timeout=deadline)

        try:
            if retry and self.retry_seconds > 0 and not isinstance(request, Iterator):
                return Retrying(**_retry_policy(self.retry_seconds))(once)
            return once()
        except grpc.RpcError as exc:
            raise error_of(exc) from None

    def pages(self, method: Callable[..., T], request: Any) -> Iterator[T]:
        """Every reply of a paged List ``method``, from ``request``'s page to the last: each
        next request is ``request`` with the reply's ``next_page_token``."""
        request = copy.copy(request)
        while True:
            reply = self.unary(method, request)
            yield reply
            if not reply.next_page_token:  # type: ignore[attr-defined]
                return
            request.page_token = reply.next_page_token  # type: ignore[attr-defined]

    def stream(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[Any]:
        """The replies of a server-streaming ``method``; ``timeout`` bounds the whole stream
        (None: it may stay open as long as the server keeps it)."""
        call = method(request, metadata=self.metadata + metadata, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise error_of(exc) from None
        finally:
            end_call(call)

    def close(self) -> None:
        self.channel.close()


class AsyncCaller(_Calls):
    """Calls on one channel, for asyncio."""

    channel: aio.Channel

    def _open(self, address: str, ca: str | None, client_cert: tls.ClientCert | None) -> Any:
        return tls.aio_channel(address, ca, CHANNEL_OPTIONS, client_cert)

    async def unary(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        timeout: float | None = None,
        retry: bool = True,
        metadata: Metadata = (),
    ) -> Any:
        """As ``Caller.unary``; ``request`` may be an async iterator (client streaming)."""
        headers = self.metadata + metadata
        deadline = self.timeout if timeout is None else timeout

        async def once() -> Any:
            return await method(request, metadata=headers, timeout=deadline)

        try:
            streaming = hasattr(request, "__aiter__") or isinstance(request, Iterator)
            if retry and self.retry_seconds > 0 and not streaming:
                return await AsyncRetrying(**_retry_policy(self.retry_seconds))(once)
            return await once()
        except grpc.RpcError as exc:
            raise error_of(exc) from None

    async def pages(self, method: Callable[..., Any], request: Any) -> AsyncIterator[Any]:
        """As ``Caller.pages``."""
        request = copy.copy(request)
        while True:
            reply = await self.unary(method, request)
            yield reply
            if not reply.next_page_token:
                return
            request.page_token = reply.next_page_token

    async def stream(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        """The replies of a server-streaming ``method``."""
        call = method(request, metadata=self.metadata + metadata, timeout=timeout)
        try:
            async for reply in call:
                yield reply
        except grpc.RpcError as exc:
            raise error_of(exc) from None
        finally:
            end_call(call)

    async def close(self) -> None:
        await self.channel.close()


__all__ = [
    "CHANNEL_OPTIONS",
    "AsyncCaller",
    "Caller",
    "call_metadata",
    "end_call",
    "error_of",
]
