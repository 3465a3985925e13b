"""The local stack (valkey, SeaweedFS, nx-27017) and the services on top of it."""

from services.localstack.cluster import Cluster
from services.localstack.stack import LocalStack, StackEndpoints

__all__ = ["Cluster", "LocalStack", "StackEndpoints"]
