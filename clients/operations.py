"""What operators and admins call in the SDK: API keys and the audit log, the executors,
the queues, task limits, namespaces, and the services' dependencies.

``Client`` and ``AsyncClient`` take these methods from the two classes here, the sync and
the asyncio twin of each with the same name and arguments (as ``clients.schedules``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clients import requests
from clients.types import (
    ApiKeyInfo,
    DependencyInfo,
    ExecutorInfo,
    ExecutorPauseInfo,
    ExecutorResumed,
    NamespaceInfo,
    QueueInfo,
    QueuePauseInfo,
    TaskLimitsInfo,
)
from common.client_core import AsyncCaller, Caller
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import auth_service_pb2_grpc as apb_grpc
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc


class OperatorMethods:
    """``Client``'s calls for operators and admins."""

    _r: Caller
    _s: Caller
    _registry: rpb_grpc.RegistryServiceStub
    _auth: apb_grpc.AuthServiceStub
    _scheduler: spb_grpc.SchedulerServiceStub

    # API keys and audit (admin) --------------------------------------------------------

    def create_api_key(
        self, name: str, role: str, namespace: str, ttl_seconds: float = 0
    ) -> tuple[ApiKeyInfo, str]:
        """Make a key; returns it and its secret (the whole key text), shown this once."""
        request = requests.create_api_key(name, role, namespace, ttl_seconds)
        reply = self._r.unary(self._auth.CreateApiKey, request, retry=False)
        return ApiKeyInfo.from_proto(reply.key), reply.secret

    def list_api_keys(self) -> list[ApiKeyInfo]:
        """The keys this client's key may manage, oldest first (every page)."""
        pages = self._r.pages(self._auth.ListApiKeys, apb.ListApiKeysRequest())
        return [ApiKeyInfo.from_proto(k) for reply in pages for k in reply.keys]

    def revoke_api_key(self, key_id: str) -> ApiKeyInfo:
        reply = self._r.unary(self._auth.RevokeApiKey, apb.RevokeApiKeyRequest(key_id=key_id))
        return ApiKeyInfo.from_proto(reply.key)

    def list_audit_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded mutations, newest first."""
        request = requests.list_audit_events(limit)
        return requests.audit_events(self._r.unary(self._auth.ListAuditEvents, request))

    # The fleet, queues, limits and namespaces (operators) --------------------------------

    def list_executors(self) -> list[ExecutorInfo]:
        """The executors serving this client's namespace, connected first (every page)."""
        pages = self._s.pages(self._scheduler.ListExecutors, spb.ListExecutorsRequest())
        return [ExecutorInfo.from_proto(e) for reply in pages for e in reply.executors]

    def pause_executor(self, executor_id: str, reason: str = "") -> ExecutorPauseInfo:
        """Give an executor no new step, on every scheduler replica within about a second,
        until ``resume_executor`` (Hatchet's worker pause, Kubernetes' cordon): its running
        steps go on and it stays connected. An operator's or an admin's call; one that
        serves other namespaces too, only a key of every namespace may pause.

        Raises:
            NotFound: no such executor serving this client's namespace.
            PermissionDenied: it serves other namespaces too, or the role may not.
        """
        request = spb.PauseExecutorRequest(executor_id=executor_id, reason=reason)
        reply = self._s.unary(self._scheduler.PauseExecutor, request)
        return ExecutorPauseInfo.from_proto(reply.pause)

    def resume_executor(self, executor_id: str) -> ExecutorResumed:
        """Give a paused executor work again, and end a resting one's rest (steps kept
        failing in it; should they fail in it again, its next rest is twice as long). Falsy
        when it was neither paused nor resting, or is too old to be told its rest is over.

        Raises:
            NotFound: no such executor serving this client's namespace.
            PermissionDenied: it serves other namespaces too, or the role may not.
        """
        request = spb.ResumeExecutorRequest(executor_id=executor_id)
        reply = self._s.unary(self._scheduler.ResumeExecutor, request)
        return ExecutorResumed(executor_id, reply.resumed, reply.rest_ended)

    def list_queues(self) -> tuple[list[QueueInfo], int]:
        """The queues of this client's namespace that have waiting work or an executor, and
        how many steps are held back from their queues (waiting for a time: a retry's
        backoff, a delayed start, a rate limit; or for a place: a concurrency limit)."""
        replies = list(self._s.pages(self._scheduler.ListQueues, spb.ListQueuesRequest()))
        found = [QueueInfo.from_proto(q) for reply in replies for q in reply.queues]
        return found, replies[-1].delayed

    def set_task_limits(
        self,
        task_id: str,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
        reset: Sequence[str] = (),
        rate_burst: int | None = None,
    ) -> TaskLimitsInfo | None:
        """Set a task's limits in this client's namespace over its task.json's (Celery's
        ``control rate_limit``): ``rate_limit`` "N/s|m|h" ("" for none), ``rate_burst`` 1 to
        10,000 (starts at once under the rate limit, the next ones at its rate),
        ``concurrency_limit`` 1 to 1,000 (0 for none); ``reset`` names limits to return to the
        task's own ("rate_limit", "rate_burst", "concurrency_limit"). Every scheduler replica
        applies them within about a second, to the steps already queued too. An operator's or
        an admin's call. Returns the limits as they now are (None when all are the task's own
        again).

        Raises:
            InvalidArgument: a bad limit, or nothing to change (naming the field).
            NotFound: no such task in this namespace.
            FailedPrecondition: the task batches.
            PermissionDenied: the key's role may not.
        """
        request = requests.set_task_limits(
            task_id, rate_limit, concurrency_limit, reset, rate_burst
        )
        reply = self._s.unary(self._scheduler.SetTaskLimits, request)
        return TaskLimitsInfo.from_proto(reply.limits) if reply.HasField("limits") else None

    def task_limits(self) -> list[TaskLimitsInfo]:
        """The task limits operators set in this client's namespace, by task id."""
        pages = self._s.pages(self._scheduler.ListTaskLimits, spb.ListTaskLimitsRequest())
        return [TaskLimitsInfo.from_proto(t) for reply in pages for t in reply.limits]

    def pause_queue(self, queue: str, reason: str = "") -> QueuePauseInfo:
        """Stop leasing the steps waiting on ``queue`` (its name in this client's namespace,
        "vision" or "vision|gpu=true", or its full name), on every scheduler replica within
        about a second, until ``resume_queue`` (Celery's ``cancel_consumer`` on every
        worker): runs are still accepted and their steps wait; running steps go on. An
        operator's or an admin's call.

        Raises:
            InvalidArgument: not a queue name, or ``reason`` over 500 characters.
            NotFound: a queue of another namespace.
            PermissionDenied: the key's role may not hold back others' runs.
        """
        request = spb.PauseQueueRequest(queue=queue, reason=reason)
        return QueuePauseInfo.from_proto(self._s.unary(self._scheduler.PauseQueue, request).pause)

    def resume_queue(self, queue: str) -> bool:
        """Lease a paused queue's steps again; False when it was not paused."""
        request = spb.ResumeQueueRequest(queue=queue)
        return self._s.unary(self._scheduler.ResumeQueue, request).resumed

    def list_namespaces(self) -> list[NamespaceInfo]:
        """The namespace the client acts in (every one in use, for ``namespace="*"`` with a
        key of every namespace): its runs queued or running, its limit of those, its weight
        in the turns new runs take between namespaces, and its steps waiting."""
        pages = self._s.pages(self._scheduler.ListNamespaces, spb.ListNamespacesRequest())
        return [NamespaceInfo.from_proto(n) for reply in pages for n in reply.namespaces]

    def update_namespace(
        self,
        run_limit: int | None = None,
        weight: float | None = None,
        history_retention_days: float | None = None,
        reset: tuple[str, ...] | list[str] = (),
        calls_per_second: float | None = None,
    ) -> NamespaceInfo:
        """Set the settings of the namespace this client acts in over the installation's
        (``reset``: return some to it — "run_limit", "weight", "history_retention_days",
        "calls_per_second"); every scheduler replica applies them within about a second, and
        every registry replica the calls a second too. A key of every
        namespace only. Returns the namespace as it now is."""
        request = requests.update_namespace(
            run_limit, weight, history_retention_days, reset, calls_per_second
        )
        reply = self._s.unary(self._scheduler.UpdateNamespace, request)
        return NamespaceInfo.from_proto(reply.namespace)

    def check_dependencies(self, service: str = "") -> list[DependencyInfo]:
        """The registry's MongoDB and object store, and the scheduler's Redis and MongoDB,
        as each service finds them now (``service``: only "registry" or "scheduler")."""
        found: list[DependencyInfo] = []
        if service in ("", "registry"):
            r = self._r.unary(
                self._registry.CheckDependencies, rpb.RegistryServiceCheckDependenciesRequest()
            )
            found += [DependencyInfo.from_proto("registry", d) for d in r.dependencies]
        if service in ("", "scheduler"):
            s = self._s.unary(
                self._scheduler.CheckDependencies,
                spb.SchedulerServiceCheckDependenciesRequest(),
            )
            found += [DependencyInfo.from_proto("scheduler", d) for d in s.dependencies]
        return found


class AsyncOperatorMethods:
    """``AsyncClient``'s calls for operators and admins: as ``OperatorMethods``'."""

    _r: AsyncCaller
    _s: AsyncCaller
    _registry: rpb_grpc.RegistryServiceStub
    _auth: apb_grpc.AuthServiceStub
    _scheduler: spb_grpc.SchedulerServiceStub

    # API keys and audit (admin) --------------------------------------------------------

    async def create_api_key(
        self, name: str, role: str, namespace: str, ttl_seconds: float = 0
    ) -> tuple[ApiKeyInfo, str]:
        request = requests.create_api_key(name, role, namespace, ttl_seconds)
        reply = await self._r.unary(self._auth.CreateApiKey, request, retry=False)
        return ApiKeyInfo.from_proto(reply.key), reply.secret

    async def list_api_keys(self) -> list[ApiKeyInfo]:
        """As ``Client.list_api_keys``."""
        pages = self._r.pages(self._auth.ListApiKeys, apb.ListApiKeysRequest())
        return [ApiKeyInfo.from_proto(k) async for reply in pages for k in reply.keys]

    async def revoke_api_key(self, key_id: str) -> ApiKeyInfo:
        request = apb.RevokeApiKeyRequest(key_id=key_id)
        return ApiKeyInfo.from_proto((await self._r.unary(self._auth.RevokeApiKey, request)).key)

    async def list_audit_events(self, limit: int = 100) -> list[dict[str, Any]]:
        request = requests.list_audit_events(limit)
        return requests.audit_events(await self._r.unary(self._auth.ListAuditEvents, request))

    # The fleet, queues, limits and namespaces (operators) --------------------------------

    async def list_executors(self) -> list[ExecutorInfo]:
        """As ``Client.list_executors``."""
        pages = self._s.pages(self._scheduler.ListExecutors, spb.ListExecutorsRequest())
        return [ExecutorInfo.from_proto(e) async for reply in pages for e in reply.executors]

    async def pause_executor(self, executor_id: str, reason: str = "") -> ExecutorPauseInfo:
        """As ``Client.pause_executor``."""
        request = spb.PauseExecutorRequest(executor_id=executor_id, reason=reason)
        reply = await self._s.unary(self._scheduler.PauseExecutor, request)
        return ExecutorPauseInfo.from_proto(reply.pause)

    async def resume_executor(self, executor_id: str) -> ExecutorResumed:
        """As ``Client.resume_executor``."""
        request = spb.ResumeExecutorRequest(executor_id=executor_id)
        reply = await self._s.unary(self._scheduler.ResumeExecutor, request)
        return ExecutorResumed(executor_id, reply.resumed, reply.rest_ended)

    async def list_queues(self) -> tuple[list[QueueInfo], int]:
        """As ``Client.list_queues``."""
        pages = self._s.pages(self._scheduler.ListQueues, spb.ListQueuesRequest())
        replies = [reply async for reply in pages]
        found = [QueueInfo.from_proto(q) for reply in replies for q in reply.queues]
        return found, replies[-1].delayed

    async def set_task_limits(
        self,
        task_id: str,
        rate_limit: str | None = None,
        concurrency_limit: int | None = None,
        reset: Sequence[str] = (),
        rate_burst: int | None = None,
    ) -> TaskLimitsInfo | None:
        """As ``Client.set_task_limits``."""
        request = requests.set_task_limits(
            task_id, rate_limit, concurrency_limit, reset, rate_burst
        )
        reply = await self._s.unary(self._scheduler.SetTaskLimits, request)
        return TaskLimitsInfo.from_proto(reply.limits) if reply.HasField("limits") else None

    async def task_limits(self) -> list[TaskLimitsInfo]:
        """As ``Client.task_limits``."""
        pages = self._s.pages(self._scheduler.ListTaskLimits, spb.ListTaskLimitsRequest())
        return [TaskLimitsInfo.from_proto(t) async for reply in pages for t in reply.limits]

    async def pause_queue(self, queue: str, reason: str = "") -> QueuePauseInfo:
        """As ``Client.pause_queue``."""
        request = spb.PauseQueueRequest(queue=queue, reason=reason)
        reply = await self._s.unary(self._scheduler.PauseQueue, request)
        return QueuePauseInfo.from_proto(reply.pause)

    async def resume_queue(self, queue: str) -> bool:
        """As ``Client.resume_queue``."""
        request = spb.ResumeQueueRequest(queue=queue)
        return (await self._s.unary(self._scheduler.ResumeQueue, request)).resumed

    async def list_namespaces(self) -> list[NamespaceInfo]:
        """As ``Client.list_namespaces``."""
        pages = self._s.pages(self._scheduler.ListNamespaces, spb.ListNamespacesRequest())
        return [NamespaceInfo.from_proto(n) async for reply in pages for n in reply.namespaces]

    async def update_namespace(
        self,
        run_limit: int | None = None,
        weight: float | None = None,
        history_retention_days: float | None = None,
        reset: tuple[str, ...] | list[str] = (),
        calls_per_second: float | None = None,
    ) -> NamespaceInfo:
        """As ``Client.update_namespace``."""
        request = requests.update_namespace(
            run_limit, weight, history_retention_days, reset, calls_per_second
        )
        reply = await self._s.unary(self._scheduler.UpdateNamespace, request)
        return NamespaceInfo.from_proto(reply.namespace)

    async def check_dependencies(self, service: str = "") -> list[DependencyInfo]:
        """As ``Client.check_dependencies``."""
        found: list[DependencyInfo] = []
        if service in ("", "registry"):
            r = await self._r.unary(
                self._registry.CheckDependencies, rpb.RegistryServiceCheckDependenciesRequest()
            )
            found += [DependencyInfo.from_proto("registry", d) for d in r.dependencies]
        if service in ("", "scheduler"):
            s = await self._s.unary(
                self._scheduler.CheckDependencies,
                spb.SchedulerServiceCheckDependenciesRequest(),
            )
            found += [DependencyInfo.from_proto("scheduler", d) for d in s.dependencies]
        return found
