"""``wtm-gateway`` / ``python -m services.gateway``: serve the JSON API, the run-event
WebSocket and the dashboard over HTTPS (uvicorn)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import uvicorn

from common import telemetry_setup
from services.common import logs
from services.common.config import load_settings, server_tls
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(GatewaySettings, argv, prog="wtm-gateway")
    logs.configure("gateway")
    # Its calls to the registry and the scheduler join the callers' traces when tracing is on.
    telemetry_setup.setup("wtm-gateway", grpc_client="aio")
    tls = server_tls(settings)
    host, _, port = settings.listen.rpartition(":")
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=int(port),
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        log_config=None,  # the service's own logging (services.common.logs)
        ws="websockets-sansio",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        telemetry_setup.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
