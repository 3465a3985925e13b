"""Tasks, pipelines and artifacts in the SDK: the registry's calls.

``Client`` and ``AsyncClient`` take these methods from the two classes here, the sync and
the asyncio twin of each with the same name and arguments (as ``clients.schedules``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from clients import requests
from clients.errors import DataLoss
from clients.types import (
    ArtifactInfo,
    PipelineInfo,
    TaskInfo,
)
from common import refs
from common.artifacts import is_file_field, is_uri, upload_requests
from common.client_core import AsyncCaller, Caller
from common.packaging import pack_directory, sha256_hex
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc


class CatalogMethods:
    """``Client``'s tasks, artifacts and pipelines."""

    _r: Caller
    _registry: rpb_grpc.RegistryServiceStub
    _timeout: float

    # Tasks -------------------------------------------------------------------------------

    def register_task(self, path: str | Path) -> TaskInfo:
        """Pack a task directory deterministically and register it.

        Raises:
            InvalidArgument: the package or its task.json is not valid (``field`` says
                where).
            AlreadyExists: that version is registered with other content.
        """
        return self.upload_package(pack_directory(path))

    def upload_package(self, data: bytes) -> TaskInfo:
        """Register an already packed archive (tar.gz bytes)."""
        reply = self._r.unary(self._registry.UploadTaskPackage, requests.package_messages(data))
        return TaskInfo.from_proto(reply.task, reply.created)

    def get_task(self, ref: str) -> TaskInfo:
        """A task version by ``"id"`` (latest) or ``"id@version"``.

        Raises:
            NotFound: no such task (version) in this namespace.
        """
        task_id, version = requests.split_ref(ref)
        request = rpb.GetTaskRequest(task_id=task_id, version=version)
        return TaskInfo.from_proto(self._r.unary(self._registry.GetTask, request).task)

    def list_tasks(self, page_size: int = 100, **filters: str) -> Iterator[TaskInfo]:
        """Every task version matching the filters (task_id, category, tag, queue)."""
        token = ""
        while True:
            request = rpb.ListTasksRequest(page_size=page_size, page_token=token, **filters)
            reply = self._r.unary(self._registry.ListTasks, request)
            yield from (TaskInfo.from_proto(t) for t in reply.tasks)
            token = reply.next_page_token
            if not token:
                return

    def download_package(self, digest: str, timeout: float | None = None) -> bytes:
        """A package archive by digest, checked against it.

        Raises:
            DataLoss: what arrived does not match the digest.
        """
        request = rpb.DownloadTaskPackageRequest(digest=digest)
        method = self._registry.DownloadTaskPackage
        chunks = self._r.stream(method, request, timeout=timeout or self._timeout)
        data = b"".join(r.chunk for r in chunks)
        if sha256_hex(data) != digest:
            raise DataLoss(f"package does not match digest {digest}")
        return data

    def deprecate_task(self, ref: str, reason: str = "") -> TaskInfo:
        """Deprecate ``"id@version"``: kept for pinned pipelines, no longer "latest"."""
        task_id, version = requests.split_ref(ref)
        request = rpb.DeprecateTaskRequest(task_id=task_id, version=version, reason=reason)
        return TaskInfo.from_proto(self._r.unary(self._registry.DeprecateTask, request).task)

    def share_task(self, task_id: str, shared: bool = True) -> TaskInfo:
        """Let every namespace's pipelines use this task of yours, as "namespace/task_id"
        (admins); ``shared=False`` stops that."""
        request = rpb.ShareTaskRequest(task_id=task_id, shared=shared)
        return TaskInfo.from_proto(self._r.unary(self._registry.ShareTask, request).task)

    # Artifacts ---------------------------------------------------------------------------

    def upload_artifact(self, path: str | Path) -> str:
        """Store a local file in the object store; returns the ``artifact://`` URI to put in a
        run's input."""
        path = Path(path)
        return self.upload_artifact_data(path.name, path.read_bytes())

    def upload_artifact_data(self, filename: str, data: bytes) -> str:
        """``upload_artifact`` of bytes in hand, stored under ``filename``."""
        messages = upload_requests(filename, data)
        return str(self._r.unary(self._registry.UploadArtifact, messages).uri)

    def list_artifacts(self) -> list[ArtifactInfo]:
        """The artifacts stored in this client's namespace (every namespace's, for
        ``namespace="*"`` with a key of every namespace), by namespace and digest."""
        pages = self._r.pages(self._registry.ListArtifacts, rpb.ListArtifactsRequest())
        return [ArtifactInfo.from_proto(a) for reply in pages for a in reply.artifacts]

    def delete_artifacts(self, artifacts: list[str]) -> list[str]:
        """Remove artifacts of this client's namespace (URIs or digests, at most 1000); a
        run that names one afterwards fails its step. Returns the digests now gone."""
        request = requests.delete_artifacts(artifacts)
        return list(self._r.unary(self._registry.DeleteArtifacts, request).digests)

    def download_artifact(self, uri: str, timeout: float | None = None) -> bytes:
        """The bytes of a stored artifact (an uploaded input, or an output that went by
        reference)."""
        request = rpb.DownloadArtifactRequest(uri=uri)
        chunks = self._r.stream(
            self._registry.DownloadArtifact, request, timeout=timeout or self._timeout
        )
        return b"".join(reply.chunk for reply in chunks)

    def resolve_refs(self, value: Any, fetched: dict[str, Any] | None = None) -> Any:
        """``value`` with every large document that went by reference (``{"wtm_ref": ...}``)
        replaced by the document itself; ``fetched`` (URI -> document) is filled as it
        goes, so a document referenced twice is downloaded once."""
        fetched = {} if fetched is None else fetched
        uri = refs.ref_uri(value)
        if uri is not None:
            if uri not in fetched:
                fetched[uri] = json.loads(self.download_artifact(uri))
            return fetched[uri]
        if isinstance(value, dict):
            return {k: self.resolve_refs(v, fetched) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve_refs(v, fetched) for v in value]
        return value

    def upload_local_files(
        self, document: dict[str, Any], base: Path | None = None
    ) -> dict[str, Any]:
        """A copy of ``document`` where every file field (``image_path``, ``*_file``...) that
        names an existing local file is uploaded and replaced by its artifact URI."""
        out = dict(document)
        for name, value in document.items():
            if isinstance(value, str) and is_file_field(name) and not is_uri(value):
                candidate = (base or Path.cwd()) / value
                if candidate.is_file():
                    out[name] = self.upload_artifact(candidate)
        return out

    # Pipelines ---------------------------------------------------------------------------

    def register_pipelines(
        self,
        config: str | Path | dict[str, Any],
        pipeline_id: str = "",
        validate_only: bool = False,
    ) -> list[PipelineInfo]:
        """Register the pipelines of a config (a file path or a dict); ``validate_only`` for a
        dry run that stores nothing. Each result carries the registration's ``warnings``.

        Raises:
            InvalidArgument: the config is not valid (``field`` names the key).
            AlreadyExists: a version is registered with another definition.
        """
        request = requests.register_pipelines(config, pipeline_id, validate_only)
        reply = self._r.unary(self._registry.RegisterPipelines, request)
        return requests.registered_pipelines(reply)

    def get_pipeline(self, ref: str) -> PipelineInfo:
        """A pipeline version by ``"id"`` (latest) or ``"id@version"``.

        Raises:
            NotFound: no such pipeline (version) in this namespace.
        """
        pipeline_id, version = requests.split_ref(ref)
        request = rpb.GetPipelineRequest(pipeline_id=pipeline_id, version=version)
        return PipelineInfo.from_proto(self._r.unary(self._registry.GetPipeline, request).pipeline)

    def list_pipelines(self, page_size: int = 100, pipeline_id: str = "") -> Iterator[PipelineInfo]:
        token = ""
        while True:
            request = rpb.ListPipelinesRequest(
                page_size=page_size, page_token=token, pipeline_id=pipeline_id
            )
            reply = self._r.unary(self._registry.ListPipelines, request)
            yield from (PipelineInfo.from_proto(p) for p in reply.pipelines)
            token = reply.next_page_token
            if not token:
                return


class AsyncCatalogMethods:
    """``AsyncClient``'s tasks, artifacts and pipelines: as ``CatalogMethods``'."""

    _r: AsyncCaller
    _registry: rpb_grpc.RegistryServiceStub
    _timeout: float

    # Tasks and artifacts -----------------------------------------------------------------

    async def register_task(self, path: str | Path) -> TaskInfo:
        data = await asyncio.to_thread(pack_directory, path)
        return await self.upload_package(data)

    async def upload_package(self, data: bytes) -> TaskInfo:
        messages = requests.package_messages(data)
        reply = await self._r.unary(self._registry.UploadTaskPackage, messages)
        return TaskInfo.from_proto(reply.task, reply.created)

    async def get_task(self, ref: str) -> TaskInfo:
        task_id, version = requests.split_ref(ref)
        request = rpb.GetTaskRequest(task_id=task_id, version=version)
        return TaskInfo.from_proto((await self._r.unary(self._registry.GetTask, request)).task)

    async def list_tasks(self, page_size: int = 100, **filters: str) -> AsyncIterator[TaskInfo]:
        token = ""
        while True:
            request = rpb.ListTasksRequest(page_size=page_size, page_token=token, **filters)
            reply = await self._r.unary(self._registry.ListTasks, request)
            for t in reply.tasks:
                yield TaskInfo.from_proto(t)
            token = reply.next_page_token
            if not token:
                return

    async def download_package(self, digest: str, timeout: float | None = None) -> bytes:
        request = rpb.DownloadTaskPackageRequest(digest=digest)
        method = self._registry.DownloadTaskPackage
        data = b"".join(
            [
                r.chunk
                async for r in self._r.stream(method, request, timeout=timeout or self._timeout)
            ]
        )
        if sha256_hex(data) != digest:
            raise DataLoss(f"package does not match digest {digest}")
        return data

    async def deprecate_task(self, ref: str, reason: str = "") -> TaskInfo:
        task_id, version = requests.split_ref(ref)
        request = rpb.DeprecateTaskRequest(task_id=task_id, version=version, reason=reason)
        reply = await self._r.unary(self._registry.DeprecateTask, request)
        return TaskInfo.from_proto(reply.task)

    async def share_task(self, task_id: str, shared: bool = True) -> TaskInfo:
        request = rpb.ShareTaskRequest(task_id=task_id, shared=shared)
        return TaskInfo.from_proto((await self._r.unary(self._registry.ShareTask, request)).task)

    async def upload_artifact(self, path: str | Path) -> str:
        path = Path(path)
        return await self.upload_artifact_data(path.name, await asyncio.to_thread(path.read_bytes))

    async def upload_artifact_data(self, filename: str, data: bytes) -> str:
        messages = upload_requests(filename, data)
        return str((await self._r.unary(self._registry.UploadArtifact, messages)).uri)

    async def list_artifacts(self) -> list[ArtifactInfo]:
        """As ``Client.list_artifacts``."""
        pages = self._r.pages(self._registry.ListArtifacts, rpb.ListArtifactsRequest())
        return [ArtifactInfo.from_proto(a) async for reply in pages for a in reply.artifacts]

    async def delete_artifacts(self, artifacts: list[str]) -> list[str]:
        """As ``Client.delete_artifacts``."""
        request = requests.delete_artifacts(artifacts)
        return list((await self._r.unary(self._registry.DeleteArtifacts, request)).digests)

    async def download_artifact(self, uri: str, timeout: float | None = None) -> bytes:
        request = rpb.DownloadArtifactRequest(uri=uri)
        method = self._registry.DownloadArtifact
        return b"".join(
            [
                r.chunk
                async for r in self._r.stream(method, request, timeout=timeout or self._timeout)
            ]
        )

    async def resolve_refs(self, value: Any, fetched: dict[str, Any] | None = None) -> Any:
        fetched = {} if fetched is None else fetched
        uri = refs.ref_uri(value)
        if uri is not None:
            if uri not in fetched:
                fetched[uri] = json.loads(await self.download_artifact(uri))
            return fetched[uri]
        if isinstance(value, dict):
            return {k: await self.resolve_refs(v, fetched) for k, v in value.items()}
        if isinstance(value, list):
            return [await self.resolve_refs(v, fetched) for v in value]
        return value

    async def upload_local_files(
        self, document: dict[str, Any], base: Path | None = None
    ) -> dict[str, Any]:
        out = dict(document)
        for name, value in document.items():
            if isinstance(value, str) and is_file_field(name) and not is_uri(value):
                candidate = (base or Path.cwd()) / value
                if candidate.is_file():
                    out[name] = await self.upload_artifact(candidate)
        return out

    # Pipelines ---------------------------------------------------------------------------

    async def register_pipelines(
        self,
        config: str | Path | dict[str, Any],
        pipeline_id: str = "",
        validate_only: bool = False,
    ) -> list[PipelineInfo]:
        request = requests.register_pipelines(config, pipeline_id, validate_only)
        reply = await self._r.unary(self._registry.RegisterPipelines, request)
        return requests.registered_pipelines(reply)

    async def get_pipeline(self, ref: str) -> PipelineInfo:
        pipeline_id, version = requests.split_ref(ref)
        request = rpb.GetPipelineRequest(pipeline_id=pipeline_id, version=version)
        reply = await self._r.unary(self._registry.GetPipeline, request)
        return PipelineInfo.from_proto(reply.pipeline)

    async def list_pipelines(
        self, page_size: int = 100, pipeline_id: str = ""
    ) -> AsyncIterator[PipelineInfo]:
        token = ""
        while True:
            request = rpb.ListPipelinesRequest(
                page_size=page_size, page_token=token, pipeline_id=pipeline_id
            )
            reply = await self._r.unary(self._registry.ListPipelines, request)
            for p in reply.pipelines:
                yield PipelineInfo.from_proto(p)
            token = reply.next_page_token
            if not token:
                return
