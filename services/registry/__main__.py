"""``python -m services.registry``: run the registry service until SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common import logs, telemetry
from services.common.backends import mongo_database, s3_client
from services.common.config import load_settings
from services.common.grpc_server import serve_threaded
from services.registry.artifacts import Artifacts
from services.registry.pipelines import Pipelines
from services.registry.registry import Registry
from services.registry.servicer import RegistryServicer
from services.registry.settings import RegistrySettings
from services.registry.stores import ArtifactStore, PackageStore, PipelineStore, TaskStore
from wtm.v1 import registry_service_pb2, registry_service_pb2_grpc


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(RegistrySettings, argv, prog="wtm-registry")
    logs.configure("registry")
    telemetry.setup("wtm-registry", grpc_server="sync")
    db = mongo_database(settings.mongodb_uri, settings.mongodb_database)
    s3 = s3_client(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key)
    tasks, pipelines = TaskStore(db), PipelineStore(db)
    packages = PackageStore(s3, settings.packages_bucket)
    artifact_store = ArtifactStore(s3, settings.artifacts_bucket)
    for store in (tasks, pipelines):
        store.ensure_indexes()
    for bucket in (packages, artifact_store):
        bucket.ensure_bucket()
    registry = Registry(tasks, packages, settings.max_package_bytes)
    servicer = RegistryServicer(
        registry,
        Pipelines(pipelines, registry),
        Artifacts(artifact_store, settings.max_artifact_bytes),
    )
    serve_threaded(
        settings.listen,
        lambda server: registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
            servicer, server
        ),
        [registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"]],
        settings.auth_token or None,
        on_stop=db.client.close,
    )
    telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
