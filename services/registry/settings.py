"""Registry settings: flags and WTM_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import (
    MongoSettings,
    ServerAuthSettings,
    host_port,
    positive,
    readable_file,
    setting,
)


@dataclass
class RegistrySettings(MongoSettings, ServerAuthSettings):
    """The registry service: task packages in MongoDB and an S3 bucket."""

    listen: str = setting(
        "127.0.0.1:50051", "WTM_REGISTRY_LISTEN", "address to serve gRPC on", host_port
    )
    s3_endpoint: str = setting(
        "http://127.0.0.1:9000", "WTM_S3_ENDPOINT", "S3 endpoint URL (https://: TLS)"
    )
    s3_ca_file: str = setting(
        "",
        "WTM_S3_CA_FILE",
        "CA certificate(s) to check an https S3 endpoint against (empty: certifi's CAs)",
        readable_file,
    )
    s3_access_key: str = setting("", "WTM_S3_ACCESS_KEY", "S3 access key (required)")
    s3_secret_key: str = setting("", "WTM_S3_SECRET_KEY", "S3 secret key (required)", secret=True)
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
    bootstrap_admin_key: str = setting(
        "",
        "WTM_BOOTSTRAP_ADMIN_KEY",
        "an admin key for every namespace (wtm_<16 hex>.<secret>), registered at start",
        secret=True,
    )
    bootstrap_admin_key_file: str = setting(
        "", "WTM_BOOTSTRAP_ADMIN_KEY_FILE", "file holding the bootstrap admin key (preferred)"
    )
    bootstrap_service_key: str = setting(
        "",
        "WTM_BOOTSTRAP_SERVICE_KEY",
        "a key for schedulers (role service, namespace default), registered at start",
        secret=True,
    )
    bootstrap_executor_key: str = setting(
        "",
        "WTM_BOOTSTRAP_EXECUTOR_KEY",
        "a key for executors (role executor, namespace default), registered at start",
        secret=True,
    )
