"""Registry settings: flags and WTM_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import host_port, positive, setting


@dataclass
class RegistrySettings:
    """The registry service: task packages in MongoDB and an S3 bucket."""

    listen: str = setting(
        "127.0.0.1:50051", "WTM_REGISTRY_LISTEN", "address to serve gRPC on", host_port
    )
    mongodb_uri: str = setting("mongodb://127.0.0.1:27017", "WTM_MONGODB_URI", "MongoDB URI")
    mongodb_database: str = setting("wtm", "WTM_MONGODB_DATABASE", "MongoDB database name")
    s3_endpoint: str = setting("http://127.0.0.1:9000", "WTM_S3_ENDPOINT", "S3 endpoint URL")
    s3_access_key: str = setting("minioadmin", "WTM_S3_ACCESS_KEY", "S3 access key")
    s3_secret_key: str = setting("minioadmin", "WTM_S3_SECRET_KEY", "S3 secret key")
    packages_bucket: str = setting(
        "wtm-packages", "WTM_PACKAGES_BUCKET", "bucket for task packages"
    )
    artifacts_bucket: str = setting(
        "wtm-artifacts", "WTM_ARTIFACTS_BUCKET", "bucket for uploaded run inputs"
    )
    max_artifact_bytes: int = setting(
        64 * 1024 * 1024, "WTM_MAX_ARTIFACT_BYTES", "largest artifact accepted", positive
    )
    max_package_bytes: int = setting(
        64 * 1024 * 1024, "WTM_MAX_PACKAGE_BYTES", "largest package accepted", positive
    )
    auth_token: str = setting("", "WTM_AUTH_TOKEN", "bearer token callers must send (empty: none)")
