"""Benchmarks on the local stack (python -m bench.run)."""

import common  # noqa: F401 - first: it sets gRPC's fork setting before grpc is imported
