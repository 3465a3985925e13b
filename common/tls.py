"""TLS for every gRPC listener and every channel: one place that makes credentials.

A server with a certificate and key (``WTM_TLS_CERT``, ``WTM_TLS_KEY``) serves TLS only; a
client with a CA (``WTM_TLS_CA``, or an explicit path) verifies the server against it. A
server without a certificate serves plaintext only when told so (``WTM_TLS=false``): it is
an explicit opt-out, for development.

Executors may also prove themselves with a client certificate (mTLS): a scheduler given a
client CA (``WTM_TLS_CLIENT_CA``) serves the executor stream on a listener of its own that
requires one (``WTM_EXECUTOR_LISTEN``), and an executor presents its certificate
(``WTM_TLS_CLIENT_CERT``, ``WTM_TLS_CLIENT_KEY``).
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


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """A certificate to serve with; with ``client_ca``, every client must present a
    certificate signed by it (the TLS handshake fails otherwise)."""
    pair = [(_read(key, "TLS key"), _read(cert, "TLS certificate"))]
    if not client_ca:
        return grpc.ssl_server_credentials(pair)
    return grpc.ssl_server_credentials(
        pair, root_certificates=_read(client_ca, "TLS client CA"), require_client_auth=True
    )


ClientCert = tuple[str, str]  # (certificate, key) a client presents, for mTLS


def client_certificate_name(auth_context: dict[str, list[bytes]]) -> str:
    """The common name of the certificate the caller presented and the server verified
    ("" when it presented none)."""
    names = auth_context.get("x509_common_name") or []
    return names[0].decode() if names else ""


def ca_path(ca: str | None) -> str:
    """The CA to trust: the one given, else WTM_TLS_CA ("" means plaintext)."""
    return os.environ.get(CA_ENV, "") if ca is None else ca


def channel_credentials(ca: str, client_cert: ClientCert | None = None) -> grpc.ChannelCredentials:
    if client_cert is None:
        return grpc.ssl_channel_credentials(root_certificates=_read(ca, "TLS CA"))
    cert, key = client_cert
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "TLS CA"),
        private_key=_read(key, "TLS client key"),
        certificate_chain=_read(cert, "TLS client certificate"),
    )


def channel(
    address: str,
    ca: str | None = None,
    options: tuple = (),  # type: ignore[type-arg]
    client_cert: ClientCert | None = None,
) -> grpc.Channel:
    """A channel to ``address``: TLS verified against ``ca`` (or WTM_TLS_CA) when there is
    one, presenting ``client_cert`` when given; plaintext otherwise."""
    path = ca_path(ca)
    if path:
        credentials = channel_credentials(path, client_cert)
        return grpc.secure_channel(address, credentials, options=options)
    return grpc.insecure_channel(address, options=options)


def aio_channel(
    address: str,
    ca: str | None = None,
    options: tuple = (),  # type: ignore[type-arg]
    client_cert: ClientCert | None = None,
    traced: bool = True,
) -> aio.Channel:
    """``channel`` for asyncio. ``traced=False``: without the tracing interceptors that
    ``telemetry`` gives every other asyncio channel of a traced process (for a long-lived
    stream whose messages carry their own trace context)."""
    insecure, secure = (aio.insecure_channel, aio.secure_channel)
    if not traced:
        from common import telemetry_setup

        insecure, secure = telemetry_setup.untraced_aio_channels()
    path = ca_path(ca)
    if path:
        credentials = channel_credentials(path, client_cert)
        return secure(address, credentials, options=options)
    return insecure(address, options=options)
