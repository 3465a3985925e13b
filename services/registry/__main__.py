"""``python -m services.registry``: run the registry service until SIGTERM."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import minio.error
import pymongo.errors
import urllib3.exceptions

from common import telemetry_setup
from services.common import auth, call_limits, logs
from services.common.api_key_store import ApiKeys
from services.common.audit_log import AuditLog
from services.common.backends import mongo_database, s3_client, unreachable
from services.common.call_limits import CallLimits
from services.common.config import load_settings, read_secret, server_tls
from services.common.gate import Gate, open_gate
from services.common.grpc_server import serve_threaded
from services.registry.artifacts import Artifacts
from services.registry.auth_servicer import AuthServicer
from services.registry.pipelines import Pipelines
from services.registry.registry import Registry
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings
from services.registry.stores import (
    ArtifactStore,
    PackageStore,
    PipelineStore,
    SharedTasks,
    TaskStore,
)
from wtm.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
)


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(RegistrySettings, argv, prog="wtm-registry")
    if not settings.s3_access_key or not settings.s3_secret_key:
        raise SystemExit(
            "WTM_S3_ACCESS_KEY and WTM_S3_SECRET_KEY are required (there is no default)"
        )
    if settings.s3_ca_file and not settings.s3_endpoint.startswith("https://"):
        raise SystemExit(
            f"WTM_S3_CA_FILE is set but WTM_S3_ENDPOINT ({settings.s3_endpoint}) is not "
            "https://: the CA would check nothing"
        )
    logs.configure("registry")
    telemetry_setup.setup("wtm-registry", grpc_server="sync")
    db = mongo_database(settings.mongodb_uri, settings.mongodb_database, settings.mongodb_timeout)
    s3 = s3_client(
        settings.s3_endpoint,
        settings.s3_access_key,
        settings.s3_secret_key,
        settings.s3_ca_file,
    )
    tasks, pipelines = TaskStore(db), PipelineStore(db)
    packages = PackageStore(s3, settings.packages_bucket)
    artifact_store = ArtifactStore(s3, settings.artifacts_bucket)
    try:
        for store in (tasks, pipelines):
            store.ensure_indexes()
    except pymongo.errors.PyMongoError as exc:
        raise unreachable("MongoDB", "WTM_MONGODB_URI", exc) from exc
    try:
        for bucket in (packages, artifact_store):
            bucket.ensure_bucket()
    except (urllib3.exceptions.HTTPError, minio.error.MinioException) as exc:
        raise unreachable(
            f"the object store at {settings.s3_endpoint}", "WTM_S3_ENDPOINT", exc
        ) from exc
    registry = Registry(tasks, packages, SharedTasks(db), settings.max_package_bytes)
    servicer = RegistryServicer(
        registry,
        Pipelines(pipelines, registry),
        Artifacts(artifact_store, settings.max_artifact_bytes),
    )
    auth_db = db.client[settings.auth_database] if settings.auth_database else db
    gate = open_gate(
        settings.auth, auth_db, settings.key_cache_seconds, settings.audit_retention_days
    )
    keys = gate.keys or ApiKeys(auth_db)
    audit = gate.audit or AuditLog(auth_db, settings.audit_retention_days)
    bootstrap = read_secret(
        settings.bootstrap_admin_key, settings.bootstrap_admin_key_file, "the bootstrap admin key"
    )
    if bootstrap:
        keys.create("bootstrap", "admin", auth.ALL_NAMESPACES, 0, auth.ANONYMOUS, bootstrap)
    elif settings.auth and keys.count() == 0:
        raise SystemExit(
            "no API keys exist: set WTM_BOOTSTRAP_ADMIN_KEY_FILE (or WTM_BOOTSTRAP_ADMIN_KEY) "
            "to an admin key of your own making (wtm_<16 hex>.<secret>), or WTM_AUTH=false "
            "for development"
        )
    for role, key in (
        ("service", settings.bootstrap_service_key),
        ("executor", settings.bootstrap_executor_key),
    ):
        if key:
            keys.create(f"bootstrap {role}", role, auth.ALL_NAMESPACES, 0, auth.ANONYMOUS, key)

    calls = CallLimits(settings.calls_per_second, service="registry")
    call_limits.follow_rates(db[call_limits.SETTINGS_COLLECTION], calls)  # namespaces' own

    def register(server: object) -> None:
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server)
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(keys, audit), server)

    serve_threaded(
        settings.listen,
        register,
        [
            registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"],
            auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
        ],
        gate,
        server_tls(settings),
        on_stop=lambda: stop(gate, audit, db.client),
        limits=calls,
    )
    telemetry_setup.shutdown()
    # Stopped cleanly: leave now. (Once, under load in a CI run, the interpreter's exit hung
    # past 15 s after "stopped" was logged, waiting on a thread; the grpc server's worker
    # pool is the suspect. Nothing is left to do or flush at this point.)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def stop(gate: Gate, audit: AuditLog, client: Any) -> None:
    """The graceful stop's last steps: the audit events of the last calls written (the
    process then leaves at once), then MongoDB's connections closed."""
    gate.close()
    if audit is not gate.audit:
        audit.close()
    client.close()


if __name__ == "__main__":
    sys.exit(main())
