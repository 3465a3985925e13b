"""The test suite."""

import common  # noqa: F401 - first: it sets gRPC's fork setting before conftest imports grpc
