"""What every gRPC server here shares: admission (API key, role, permission: ``gate.Gate``),
the audit of mutations, error mapping, health, reflection, and a clean stop on SIGTERM.

``GuardInterceptor`` is the one place where domain errors become gRPC status codes and where
the bearer token is checked; servicers stay free of both. A backing service out of reach
(Redis, MongoDB) is UNAVAILABLE — worth trying again — rather than grpc's UNKNOWN.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import secrets
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import pymongo.errors
import redis.exceptions
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from common.client_core import PUSHBACK_HEADER
from common.errors import InvalidArgument, Unauthenticated, WtmError
from common.tls import client_certificate_name, server_credentials
from services.common import auth
from services.common.api_key_store import NeedsLookup
from services.common.auth import Principal
from services.common.call_limits import CallLimits, CallsExhausted
from services.common.gate import Gate

log = logging.getLogger(__name__)


# Backing services out of reach: the same call may well succeed when tried again.
UNREACHABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    pymongo.errors.ConnectionFailure,  # AutoReconnect, NetworkTimeout, server selection
)


# Requests up to 8 MiB (larger inputs and outputs travel as artifacts); clients may ping
# while a call is open as often as every 30 s (common.client_core pings every minute), and
# no more often, or the connection is closed.
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 0),
    # gRPC listens with SO_REUSEPORT by default: a second server started on a busy address
    # would share it, the kernel splitting the connections between the two, instead of
    # failing. A service refuses to start there ("cannot listen on ...").
    ("grpc.so_reuseport", 0),
]


MAX_DETAILS = 1000
# How long past its grace period a server's stop may take before the process leaves anyway
# (once, under load in CI, a registry did not exit on SIGTERM: a bound, whatever held it).
STOP_SLACK_S = 5.0

# Callers not held to a namespace's calls a second: the fleet and the services themselves.
UNLIMITED_ROLES = frozenset({auth.Role.SERVICE, auth.Role.EXECUTOR})


def pushback(exc: BaseException) -> tuple[tuple[str, str], ...]:
    """The trailer telling a refused caller when to try again (gRPC's retry pushback), for
    a call refused before it ran (``CallLimits``); none for anything else."""
    if not isinstance(exc, CallsExhausted):
        return ()
    return ((PUSHBACK_HEADER, str(max(1, round(exc.retry_after * 1000)))),)


def counted(limits: CallLimits | None, handler: grpc.RpcMethodHandler, who: Principal) -> None:
    """Count a call against its namespace's calls a second (``CallLimits``): not a stream
    both ways (an executor's, one call however long), not the fleet's or a service's."""
    if limits is None or (handler.request_streaming and handler.response_streaming):
        return
    if who.role not in UNLIMITED_ROLES:
        limits.take(who.scope)


def bounded(message: str) -> str:
    """``message`` cut to MAX_DETAILS characters, saying so. A message echoes what the
    caller sent ("run_id: no run <id>"), and status details travel as a header: a 100 KB id
    echoed whole made the client's gRPC drop the answer (RESOURCE_EXHAUSTED, "received
    metadata size exceeds hard limit") instead of showing the field."""
    if len(message) <= MAX_DETAILS:
        return message
    return f"{message[:MAX_DETAILS]}… (cut: {len(message):,} characters in all)"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map an exception raised by domain code to a gRPC status code and message.

    Anything unexpected is INTERNAL with an error id that the log line also carries; its
    text (which may be a backend's) stays in the log."""
    if isinstance(exc, WtmError):
        return getattr(grpc.StatusCode, exc.code), bounded(exc.message)
    if isinstance(exc, UNREACHABLE):
        which = "MongoDB" if isinstance(exc, pymongo.errors.PyMongoError) else "Redis"
        log.warning("%s is out of reach: %s: %s", which, type(exc).__name__, exc)
        return (
            grpc.StatusCode.UNAVAILABLE,
            f"a backing service ({which}) is out of reach ({type(exc).__name__}); try again",
        )
    error_id = secrets.token_hex(6)
    log.error("unexpected error %s", error_id, exc_info=exc)
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error {error_id}: the service could not complete the call; "
        "its log has the details under this id",
    )


class _Undecodable:
    """A request message that could not be parsed (bad UTF-8 in a string, a truncated
    message): the handler answers INVALID_ARGUMENT instead of grpc's generic error."""

    def __init__(self, exc: Exception) -> None:
        self.message = f"request: cannot be parsed ({exc})"


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError and kin
            return _Undecodable(exc)

    return parse


def _checked(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgument(request.message)
    return request


def _checked_iter(requests: Any) -> Any:
    for request in requests:
        yield _checked(request)


async def _checked_aiter(requests: Any) -> Any:
    async for request in requests:
        yield _checked(request)


def _checked_input(handler: grpc.RpcMethodHandler, request: Any, is_async: bool) -> Any:
    """The request, or for a client stream an iterator that refuses undecodable messages."""
    if not handler.request_streaming:
        return _checked(request)
    return _checked_aiter(request) if is_async else _checked_iter(request)


def _kinds(handler: grpc.RpcMethodHandler) -> tuple[str, Callable[..., Any], Callable[..., Any]]:
    if handler.unary_unary:
        return "unary_unary", handler.unary_unary, grpc.unary_unary_rpc_method_handler
    if handler.unary_stream:
        return "unary_stream", handler.unary_stream, grpc.unary_stream_rpc_method_handler
    if handler.stream_unary:
        return "stream_unary", handler.stream_unary, grpc.stream_unary_rpc_method_handler
    return "stream_stream", handler.stream_stream, grpc.stream_stream_rpc_method_handler


def _rewrap(handler: grpc.RpcMethodHandler, behavior: Callable[..., Any]) -> Any:
    _, _, factory = _kinds(handler)
    return factory(
        behavior,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class GuardInterceptor(grpc.ServerInterceptor):
    """Admits the caller (``gate.Gate``: key, role, permission), records mutations, and maps
    domain errors, for a thread-pool server."""

    def __init__(self, gate: Gate, limits: CallLimits | None = None) -> None:
        self._gate = gate
        self._limits = limits

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method, gate, limits = details.method, self._gate, self._limits
        _, behavior, _ = _kinds(handler)

        def admit(context: grpc.ServicerContext) -> Principal:
            try:
                principal = gate.admit(method, context.invocation_metadata())
                counted(limits, handler, principal)
                return principal
            except Exception as exc:  # noqa: BLE001 - refused, or MongoDB out of reach
                if trailer := pushback(exc):
                    context.set_trailing_metadata(trailer)
                context.abort(*status_for(exc))
                raise  # not reached: abort raises

        if handler.response_streaming:

            def guarded_stream(request: Any, context: grpc.ServicerContext) -> Any:
                principal = admit(context)
                token = auth.set_current(principal)
                try:
                    yield from behavior(_checked_input(handler, request, False), context)
                    gate.record(method, principal, "OK")
                except Exception as exc:  # noqa: BLE001 - every error gets a status
                    code, message = status_for(exc)
                    gate.record(method, principal, code.name)
                    context.abort(code, message)
                finally:
                    auth.reset_current(token)

            return _rewrap(handler, guarded_stream)

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            principal = admit(context)
            token = auth.set_current(principal)
            try:
                result = behavior(_checked_input(handler, request, False), context)
                gate.record(method, principal, "OK")
                return result
            except Exception as exc:  # noqa: BLE001 - every error gets a status
                code, message = status_for(exc)
                gate.record(method, principal, code.name)
                context.abort(code, message)
            finally:
                auth.reset_current(token)

        return _rewrap(handler, guarded)


class AsyncGuardInterceptor(aio.ServerInterceptor):
    """Admits the caller, records mutations and maps domain errors, for an asyncio server.
    Methods in ``needs_client_cert`` are admitted only to callers that presented a client
    certificate the server verified (mTLS)."""

    def __init__(
        self,
        gate: Gate,
        needs_client_cert: frozenset[str] = frozenset(),
        limits: CallLimits | None = None,
    ) -> None:
        self._gate = gate
        self._needs_client_cert = needs_client_cert
        self._limits = limits

    async def _admit(self, method: str, handler: Any, context: aio.ServicerContext) -> Principal:
        """The caller of ``method``, admitted (its key checked, its call counted), or the call
        aborted with the refusal's status."""
        gate, metadata = self._gate, context.invocation_metadata()
        try:
            if method in self._needs_client_cert and not client_certificate_name(
                context.auth_context()
            ):
                raise Unauthenticated(
                    "this stream needs a client certificate: connect to the executor "
                    "listener (WTM_EXECUTOR_LISTEN) with WTM_TLS_CLIENT_CERT and _KEY"
                )
            try:
                principal = gate.admit(method, metadata, allow_io=False)  # a cached key
            except NeedsLookup:
                principal = await asyncio.to_thread(gate.admit, method, metadata)
            counted(self._limits, handler, principal)
            return principal
        except Exception as exc:  # noqa: BLE001 - refused, or MongoDB out of reach
            await context.abort(*status_for(exc), trailing_metadata=pushback(exc))
            raise  # not reached: abort raises

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method, gate = details.method, self._gate
        _, behavior, _ = _kinds(handler)
        admit = functools.partial(self._admit, method, handler)

        if inspect.isasyncgenfunction(behavior):

            async def guarded_stream(request: Any, context: aio.ServicerContext) -> Any:
                principal = await admit(context)
                auth.set_current(principal)  # this task's context only
                try:
                    async for item in behavior(_checked_input(handler, request, True), context):
                        yield item
                    gate.record(method, principal, "OK")
                except aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every error gets a status
                    code, message = status_for(exc)
                    gate.record(method, principal, code.name)
                    await context.abort(code, message)

            return _rewrap(handler, guarded_stream)

        async def guarded(request: Any, context: aio.ServicerContext) -> Any:
            principal = await admit(context)
            auth.set_current(principal)
            try:
                result = await behavior(_checked_input(handler, request, True), context)
                gate.record(method, principal, "OK")
                return result
            except aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - every error gets a status
                code, message = status_for(exc)
                gate.record(method, principal, code.name)
                await context.abort(code, message)

        return _rewrap(handler, guarded)


@dataclass(frozen=True)
class MutualTls:
    """A listener that requires client certificates signed by ``client_ca``, and the methods
    served only to callers that presented one."""

    address: str
    client_ca: str
    methods: frozenset[str]


def _service_names(descriptors: Iterable[Any]) -> list[str]:
    return [d.full_name for d in descriptors]


def _listen(server: Any, address: str, tls: tuple[str, str] | None, client_ca: str = "") -> int:
    try:
        if tls is None:
            log.warning("serving PLAINTEXT on %s (WTM_TLS=false)", address)
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, server_credentials(*tls, client_ca))
    except RuntimeError as exc:
        raise SystemExit(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise SystemExit(f"cannot listen on {address}: address in use or invalid")
    return int(port)


def serve_threaded(
    address: str,
    register: Callable[[grpc.Server], None],
    services: Iterable[Any],
    gate: Gate,
    tls: tuple[str, str] | None,
    on_stop: Callable[[], None] = lambda: None,
    max_workers: int = 16,
    grace: float = 5.0,
    limits: CallLimits | None = None,
) -> None:
    """Run a thread-pool gRPC server until SIGTERM or SIGINT, then stop it cleanly."""
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[GuardInterceptor(gate, limits)],
        options=SERVER_OPTIONS,
    )
    register(server)
    names = _service_names(services)
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = _listen(server, address, tls)
    server.start()
    for name in ["", *names]:
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on port %d", ", ".join(names), port)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # Woken each second: Python runs a signal's handler on the main thread only when that
    # thread runs, and a signal the kernel gave to another of the process's threads does not
    # interrupt a wait with no timeout (a registry under load in CI sat in such a wait for
    # an hour after its SIGTERM; a second SIGTERM then stopped it).
    while not stop.wait(1.0):
        pass
    log.info("stopping")
    checker.enter_graceful_shutdown()
    if not server.stop(grace).wait(grace + STOP_SLACK_S):
        log.warning("still stopping %gs after the grace period: leaving anyway", STOP_SLACK_S)
    on_stop()
    log.info("stopped")


async def serve_async(
    address: str,
    register: Callable[[aio.Server], None],
    services: Iterable[Any],
    gate: Gate,
    tls: tuple[str, str] | None,
    on_start: Callable[[], Any] | None = None,
    on_stop: Callable[[], Any] | None = None,
    grace: float = 5.0,
    before_stop: Callable[[], Any] | None = None,
    mtls: MutualTls | None = None,
    limits: CallLimits | None = None,
) -> None:
    """Run an asyncio gRPC server until SIGTERM or SIGINT, then stop it cleanly.

    With ``mtls``, a second listener requires client certificates, and its methods are
    served only to callers that presented one.

    ``before_stop`` runs after health turns NOT_SERVING and before the server stops (end
    long-lived streams there, or they hold the grace period); ``on_stop`` after it stopped.
    Each is awaited when it returns an awaitable.
    """
    needs_cert = mtls.methods if mtls is not None else frozenset()
    server = aio.server(
        interceptors=[AsyncGuardInterceptor(gate, needs_cert, limits)],
        options=SERVER_OPTIONS,
    )
    register(server)
    names = _service_names(services)
    checker = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = _listen(server, address, tls)
    if mtls is not None:
        if tls is None:
            raise SystemExit("client certificates (WTM_TLS_CLIENT_CA) need TLS on (WTM_TLS)")
        mtls_port = _listen(server, mtls.address, tls, mtls.client_ca)
        log.info("%s on port %d, for clients with certificates", sorted(needs_cert), mtls_port)
    if on_start is not None:
        result = on_start()
        if inspect.isawaitable(result):
            await result
    await server.start()
    for name in ["", *names]:
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on port %d", ", ".join(names), port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await checker.enter_graceful_shutdown()
    if before_stop is not None:
        result = before_stop()
        if inspect.isawaitable(result):
            await result
    try:
        await asyncio.wait_for(server.stop(grace), grace + STOP_SLACK_S)
    except TimeoutError:
        log.warning("still stopping %gs after the grace period: leaving anyway", STOP_SLACK_S)
    if on_stop is not None:
        result = on_stop()
        if inspect.isawaitable(result):
            await result
    log.info("stopped")
