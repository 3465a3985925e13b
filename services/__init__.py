"""The registry, scheduler and executor services, and the local stack."""

import common  # noqa: F401 - first: it sets gRPC's fork setting before grpc is imported
