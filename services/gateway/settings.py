"""Gateway settings: flags and WTM_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import ServerTlsSettings, host_port, setting


@dataclass
class GatewaySettings(ServerTlsSettings):
    """The HTTP gateway: a JSON API, a WebSocket of run events and the dashboard, over the
    registry and the scheduler. It holds no key of its own: every call to them carries the
    caller's."""

    listen: str = setting(
        "127.0.0.1:8080", "WTM_GATEWAY_LISTEN", "address to serve HTTP(S) on", host_port
    )
    registry: str = setting("127.0.0.1:50051", "WTM_REGISTRY_ADDR", "registry address", host_port)
    scheduler: str = setting(
        "127.0.0.1:50052", "WTM_SCHEDULER_ADDR", "scheduler address", host_port
    )
    tls_ca: str = setting(
        "",
        "WTM_TLS_CA",
        "PEM CA the registry's and scheduler's certificates are checked against (empty: plaintext)",
    )
    auth: bool = setting(
        True,
        "WTM_AUTH",
        "refuse calls without an API key before asking the services (false: development, "
        "when the services run without keys too)",
    )
    jaeger_url: str = setting(
        "",
        "WTM_JAEGER_URL",
        "Jaeger's UI, for the run page's trace link (e.g. http://127.0.0.1:16686)",
    )
    timeout: float = setting(30.0, "WTM_GATEWAY_TIMEOUT", "deadline of each call to a service")
