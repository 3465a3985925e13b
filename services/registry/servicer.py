"""``RegistryService`` over gRPC: translate protos, call one ``Registry`` method, translate back."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from common.errors import InvalidArgument
from services.common import auth
from services.common.dependencies import dependency_to_proto
from services.registry.artifacts import Artifacts
from services.registry.pipelines import Pipelines
from services.registry.registry import Registry
from wtm.v1 import registry_service_pb2 as pb
from wtm.v1 import registry_service_pb2_grpc as pb_grpc


class RegistryServicer(pb_grpc.RegistryServiceServicer):
    """Thin gRPC adapter over ``Registry``."""

    def __init__(self, registry: Registry, pipelines: Pipelines, artifacts: Artifacts) -> None:
        self._registry = registry
        self._pipelines = pipelines
        self._artifacts = artifacts

    def CheckDependencies(
        self, request: pb.RegistryServiceCheckDependenciesRequest, context: grpc.ServicerContext
    ) -> pb.RegistryServiceCheckDependenciesResponse:
        return pb.RegistryServiceCheckDependenciesResponse(
            dependencies=[dependency_to_proto(d) for d in self._registry.dependencies()]
        )

    def UploadTaskPackage(
        self, request_iterator: Iterator[pb.UploadTaskPackageRequest], context: grpc.ServicerContext
    ) -> pb.UploadTaskPackageResponse:
        header = pb.UploadTaskPackageHeader()
        chunks: list[bytes] = []
        size = 0
        for i, message in enumerate(request_iterator):
            if message.HasField("header"):
                if i != 0:
                    raise InvalidArgument("must only be in the first message", field="header")
                header = message.header
                continue
            size += len(message.chunk)
            self._registry.check_size(size)
            chunks.append(message.chunk)
        if header.size_bytes and header.size_bytes != size:
            raise InvalidArgument(
                f"declared {header.size_bytes} bytes but {size} arrived", field="header.size_bytes"
            )
        result = self._registry.register_package(auth.scope(), b"".join(chunks), header.sha256)
        return pb.UploadTaskPackageResponse(task=result.task.to_proto(), created=result.created)

    def GetTask(
        self, request: pb.GetTaskRequest, context: grpc.ServicerContext
    ) -> pb.GetTaskResponse:
        return pb.GetTaskResponse(
            task=self._registry.get_task(auth.scope(), request.task_id, request.version).to_proto()
        )

    def ListTasks(
        self, request: pb.ListTasksRequest, context: grpc.ServicerContext
    ) -> pb.ListTasksResponse:
        tasks, token = self._registry.list_tasks(
            auth.scope(),
            page_size=request.page_size,
            page_token=request.page_token,
            task_id=request.task_id,
            category=request.category,
            tag=request.tag,
            queue=request.queue,
        )
        return pb.ListTasksResponse(tasks=[t.to_proto() for t in tasks], next_page_token=token)

    def DownloadTaskPackage(
        self, request: pb.DownloadTaskPackageRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadTaskPackageResponse]:
        for chunk in self._registry.open_package(auth.scope(), request.digest):
            yield pb.DownloadTaskPackageResponse(chunk=chunk)

    def DeprecateTask(
        self, request: pb.DeprecateTaskRequest, context: grpc.ServicerContext
    ) -> pb.DeprecateTaskResponse:
        task = self._registry.deprecate_task(
            auth.scope(), request.task_id, request.version, request.reason
        )
        return pb.DeprecateTaskResponse(task=task.to_proto())

    def ShareTask(
        self, request: pb.ShareTaskRequest, context: grpc.ServicerContext
    ) -> pb.ShareTaskResponse:
        caller = auth.current()
        task = self._registry.share_task(
            caller.scope, request.task_id, request.shared, caller.key_id or caller.name
        )
        return pb.ShareTaskResponse(task=task.to_proto())

    def RegisterPipelines(
        self, request: pb.RegisterPipelinesRequest, context: grpc.ServicerContext
    ) -> pb.RegisterPipelinesResponse:
        results, warnings = self._pipelines.register(
            auth.scope(), request.config_json, request.pipeline_id, request.validate_only
        )
        return pb.RegisterPipelinesResponse(
            pipelines=[r.pipeline.to_proto() for r in results],
            created=[r.created for r in results],
            registered_before=[r.registered_before for r in results],
            warnings=warnings,
        )

    def GetPipeline(
        self, request: pb.GetPipelineRequest, context: grpc.ServicerContext
    ) -> pb.GetPipelineResponse:
        found = self._pipelines.get(auth.scope(), request.pipeline_id, request.version)
        return pb.GetPipelineResponse(pipeline=found.to_proto())

    def ListPipelines(
        self, request: pb.ListPipelinesRequest, context: grpc.ServicerContext
    ) -> pb.ListPipelinesResponse:
        items, token = self._pipelines.list(
            auth.scope(), request.page_size, request.page_token, request.pipeline_id
        )
        return pb.ListPipelinesResponse(
            pipelines=[p.to_proto() for p in items], next_page_token=token
        )

    def UploadArtifact(
        self,
        request_iterator: Iterator[pb.UploadArtifactRequest],
        context: grpc.ServicerContext,
    ) -> pb.UploadArtifactResponse:
        filename, chunks, size = "", [], 0
        for i, message in enumerate(request_iterator):
            if message.HasField("header"):
                if i != 0:
                    raise InvalidArgument("must only be in the first message", field="header")
                filename = message.header.filename
                continue
            size += len(message.chunk)
            self._artifacts.check_size(size)
            chunks.append(message.chunk)
        stored = self._artifacts.upload(auth.scope(), filename, b"".join(chunks))
        return pb.UploadArtifactResponse(
            uri=stored.uri, digest=stored.digest, size_bytes=stored.size_bytes
        )

    def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadArtifactResponse]:
        for chunk in self._artifacts.open(auth.scope(), request.uri):
            yield pb.DownloadArtifactResponse(chunk=chunk)

    def ListArtifacts(
        self, request: pb.ListArtifactsRequest, context: grpc.ServicerContext
    ) -> pb.ListArtifactsResponse:
        found, token = self._artifacts.page(auth.scope(), request.page_size, request.page_token)
        reply = pb.ListArtifactsResponse(next_page_token=token)
        for a in found:
            m = reply.artifacts.add(
                name=f"artifacts/{a.digest}",
                digest=a.digest,
                namespace=a.namespace,
                size_bytes=a.size_bytes,
            )
            m.store_time.FromMilliseconds(a.stored_ms)
        return reply

    def DeleteArtifacts(
        self, request: pb.DeleteArtifactsRequest, context: grpc.ServicerContext
    ) -> pb.DeleteArtifactsResponse:
        gone = self._artifacts.delete(auth.scope(), list(request.digests))
        return pb.DeleteArtifactsResponse(digests=gone)
