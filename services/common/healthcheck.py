"""Container health checks: ``python -m services.common.healthcheck``.

--grpc HOST:PORT     exit 0 when the server reports SERVING on grpc.health.v1
--http URL           exit 0 when URL answers 200 (the gateway's /healthz; https is checked
                     against WTM_TLS_CA)
--file PATH --max-age S
                     exit 0 when PATH was touched in the last S seconds (executors,
                     which serve nothing, touch it on every heartbeat)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="healthcheck", description=__doc__)
    parser.add_argument("--grpc", help="address of a gRPC server")
    parser.add_argument("--http", help="a URL that answers 200 while healthy")
    parser.add_argument("--file", type=Path, help="a file touched while healthy")
    parser.add_argument("--max-age", type=float, default=30.0)
    parser.add_argument("--tls-ca", default=None, help="CA to check the server with (WTM_TLS_CA)")
    ns = parser.parse_args(argv)
    if ns.grpc:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            from common import tls

            with tls.channel(ns.grpc, ns.tls_ca) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=3
                )
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}", file=sys.stderr)
            return 1
        return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
    if ns.http:
        import ssl
        import urllib.error
        import urllib.request

        from common import tls

        ca = tls.ca_path(ns.tls_ca)
        context = ssl.create_default_context(cafile=ca or None)
        try:
            with urllib.request.urlopen(ns.http, timeout=3, context=context) as reply:
                return 0 if reply.status == 200 else 1
        except (urllib.error.URLError, OSError) as exc:
            print(f"unhealthy: {exc}", file=sys.stderr)
            return 1
    if ns.file:
        try:
            age = time.time() - ns.file.stat().st_mtime
        except OSError:
            print(f"unhealthy: {ns.file} missing", file=sys.stderr)
            return 1
        return 0 if age <= ns.max_age else 1
    parser.error("give --grpc, --http or --file")
    return 2


if __name__ == "__main__":
    sys.exit(main())
