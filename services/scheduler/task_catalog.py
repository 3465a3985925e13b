"""``TaskCatalog``: the scheduler's view of the registry — resolve a task reference to a
pinned version. Pinned versions are immutable, so they are cached; ``latest`` is not."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc import aio

from services.common.errors import InvalidArgument, NotFound, Unavailable
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc


@dataclass(frozen=True)
class ResolvedTask:
    """What the scheduler needs to run a task version."""

    task_id: str
    version: str
    digest: str
    entry_point: str
    queue: str
    priority: int
    timeout_seconds: int
    max_retries: int


def split_ref(ref: str, field: str) -> tuple[str, str]:
    """``"id"`` or ``"id@version"`` -> (id, version)."""
    ident, _, version = ref.partition("@")
    if not ident:
        raise InvalidArgument("must be 'id' or 'id@version'", field=field)
    return ident, version


class TaskCatalog:
    """Looks task versions up in the registry over gRPC."""

    def __init__(self, registry_address: str, token: str = "") -> None:
        self._channel = aio.insecure_channel(registry_address)
        self._stub = rpb_grpc.RegistryServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._pinned: dict[tuple[str, str], ResolvedTask] = {}

    async def resolve(self, ref: str, field: str = "task") -> ResolvedTask:
        task_id, version = split_ref(ref, field)
        if version not in ("", "latest") and (task_id, version) in self._pinned:
            return self._pinned[(task_id, version)]
        try:
            reply = await self._stub.GetTask(
                rpb.GetTaskRequest(task_id=task_id, version=version),
                metadata=self._metadata,
                timeout=10,
            )
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details() or "", field=field) from exc
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(exc.details() or "", field=field) from exc
            raise Unavailable(f"registry: {exc.code().name}: {exc.details()}") from exc
        t = reply.task
        resolved = ResolvedTask(
            t.task_id,
            t.version,
            t.digest,
            t.entry_point,
            t.queue,
            t.priority,
            t.timeout_seconds,
            t.max_retries,
        )
        self._pinned[(t.task_id, t.version)] = resolved
        return resolved

    async def close(self) -> None:
        await self._channel.close()
