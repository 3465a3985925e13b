"""``RegistryArtifacts``: what the artifact sweep reads and deletes through the registry — the
stored artifacts of every namespace (ListArtifacts), a namespace's pipelines' constant inputs
(ListPipelines), and DeleteArtifacts — with the scheduler's service key."""

from __future__ import annotations

from collections.abc import AsyncIterator

from common.client_core import AsyncCaller
from services.common.auth import ALL_NAMESPACES
from services.scheduler.artifact_sweep import StoredArtifact
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc


class RegistryArtifacts:
    def __init__(self, registry_address: str, api_key: str, tls_ca: str = "") -> None:
        self._address = registry_address
        self._api_key = api_key
        self._tls_ca = tls_ca
        self._caller: AsyncCaller | None = None

    def _in(self, namespace: str) -> tuple[AsyncCaller, rpb_grpc.RegistryServiceStub]:
        if self._caller is None:  # on first use: a day after the start at the soonest
            self._caller = AsyncCaller(self._address, ca=self._tls_ca, api_key=self._api_key)
        caller = self._caller.acting_as(self._api_key, namespace)
        return caller, rpb_grpc.RegistryServiceStub(caller.channel)

    async def close(self) -> None:
        if self._caller is not None:
            await self._caller.close()

    async def artifacts(self) -> AsyncIterator[StoredArtifact]:
        caller, registry = self._in(ALL_NAMESPACES)
        request = rpb.ListArtifactsRequest(page_size=1000)
        async for reply in caller.pages(registry.ListArtifacts, request):
            for a in reply.artifacts:
                yield StoredArtifact(a.namespace, a.digest, a.store_time.ToMilliseconds())

    async def pipeline_texts(self, namespace: str) -> AsyncIterator[str]:
        caller, registry = self._in(namespace)
        request = rpb.ListPipelinesRequest(page_size=500)
        async for reply in caller.pages(registry.ListPipelines, request):
            for pipeline in reply.pipelines:
                for step in pipeline.steps:
                    yield step.input_mapping_json

    async def delete(self, namespace: str, digests: list[str]) -> None:
        caller, registry = self._in(namespace)
        await caller.unary(registry.DeleteArtifacts, rpb.DeleteArtifactsRequest(digests=digests))
