"""TLS for every gRPC listener and every channel: one place that makes credentials.

A server with a certificate and key (``WTM_TLS_CERT``, ``WTM_TLS_KEY``) serves TLS only; a
client with a CA (``WTM_TLS_CA``, or an explicit path) verifies the server against it. A
server without a certificate serves plaintext only when told so (``WTM_TLS=false``): it is
an explicit opt-out, for development.
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc
from grpc import aio

CA_ENV = "WTM_TLS_CA"


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SystemExit(f"cannot read the {what} {path}: {exc.strerror}") from exc


def server_credentials(cert: str, key: str) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(_read(key, "TLS key"), _read(cert, "TLS certificate"))])


def ca_path(ca: str | None) -> str:
    """The CA to trust: the one given, else WTM_TLS_CA ("" means plaintext)."""
    return os.environ.get(CA_ENV, "") if ca is None else ca


def channel_credentials(ca: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=_read(ca, "TLS CA"))


def channel(address: str, ca: str | None = None, options: tuple = ()) -> grpc.Channel:  # type: ignore[type-arg]
    """A channel to ``address``: TLS verified against ``ca`` (or WTM_TLS_CA) when there is
    one, plaintext otherwise."""
    path = ca_path(ca)
    if path:
        return grpc.secure_channel(address, channel_credentials(path), options=options)
    return grpc.insecure_channel(address, options=options)


def aio_channel(address: str, ca: str | None = None, options: tuple = ()) -> aio.Channel:  # type: ignore[type-arg]
    """``channel`` for asyncio."""
    path = ca_path(ca)
    if path:
        return aio.secure_channel(address, channel_credentials(path), options=options)
    return aio.insecure_channel(address, options=options)
