"""``python -m services.scheduler``: run the scheduler service until SIGTERM."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Sequence

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from common import telemetry_setup
from services.common import heap, logs
from services.common.backends import mongo_database, redis_client, unreachable
from services.common.call_limits import CallLimits
from services.common.config import load_settings, read_secret, server_tls
from services.common.gate import open_gate
from services.common.grpc_server import MutualTls, serve_async
from services.scheduler.artifact_sweep import ArtifactSweep
from services.scheduler.clock_watch import ClockWatch
from services.scheduler.dispatcher import Dispatcher
from services.scheduler.executor_servicer import ExecutorServicer
from services.scheduler.fair_shares import FairShares, parse_weights
from services.scheduler.fleet_report import FleetReport
from services.scheduler.history import History
from services.scheduler.history_retention import HistoryRetention, parse_retention
from services.scheduler.large_documents import LargeDocuments
from services.scheduler.listeners import Listeners
from services.scheduler.namespace_settings import NamespaceSettings
from services.scheduler.pauses import Pauses
from services.scheduler.registry_artifacts import RegistryArtifacts
from services.scheduler.rest_ends import RestEnds
from services.scheduler.result_cache import ResultCache
from services.scheduler.run_limits import RunLimits, parse_limits
from services.scheduler.run_queue import RunQueue
from services.scheduler.run_signals import RunSignals
from services.scheduler.run_store import RunStore
from services.scheduler.runs import RunService
from services.scheduler.schedule_records import ScheduleStore
from services.scheduler.schedule_servicer import ScheduleServicer
from services.scheduler.schedules import Schedules
from services.scheduler.servicer import SchedulerServicer
from services.scheduler.settings import SchedulerSettings
from services.scheduler.signal_records import SignalRecords
from services.scheduler.task_catalog import TaskCatalog
from services.scheduler.task_limits import TaskLimits
from services.scheduler.tracing import TracingListener
from services.scheduler.unrecorded_runs import UnrecordedRuns
from wtm.v1 import (
    executor_service_pb2,
    executor_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    scheduler_service_pb2,
    scheduler_service_pb2_grpc,
)


async def serve(settings: SchedulerSettings) -> None:
    client = redis_client(settings.redis_url)
    api_key = read_secret(settings.api_key, settings.api_key_file, "the API key")
    queue = RunQueue(client, finished_ttl_s=settings.finished_ttl_seconds)
    # What happens to runs and attempts is told to these, in this order (registered below).
    listeners = Listeners()
    store = RunStore(
        settings.mongodb_uri, settings.mongodb_database, timeout_s=settings.mongodb_timeout
    )
    catalog = TaskCatalog(
        settings.registry, api_key, settings.latest_cache_seconds, settings.tls_ca
    )
    history = History(
        queue,
        store,
        listeners,
        retention_seconds=settings.retention_seconds,
        lease_seconds=settings.lease_seconds,
        scan_seconds=settings.recovery_scan_seconds,
        unrecorded=UnrecordedRuns(
            client, queue.reader, store, after_s=settings.unrecorded_after_seconds
        ),
    )
    documents = LargeDocuments(
        settings.registry, api_key, settings.inline_max_bytes, tls_ca=settings.tls_ca
    )
    dispatcher = Dispatcher(
        queue,
        listeners,
        lease_seconds=settings.lease_seconds,
        scheduler_id=settings.scheduler_id,
        documents=documents,
        prefetch=settings.prefetch,
        silent_after=3 * settings.heartbeat_seconds,
        require_isolation=settings.require_isolation,
        isolation_optional=frozenset(settings.isolation_optional_namespaces),
        cache=ResultCache(
            queue.redis, settings.result_cache_seconds, settings.result_cache_max_bytes
        ),
    )
    namespaces = NamespaceSettings(
        store.db,
        settings.max_unfinished_runs,
        parse_limits(settings.namespace_run_limits),
        parse_weights(settings.namespace_weights),
        settings.history_retention_days,
        parse_retention(settings.namespace_retention_days),
        calls_per_second=settings.calls_per_second,
    )
    dispatcher.reaper.also("read the namespaces' settings", namespaces.refresh)
    limits = RunLimits(namespaces.run_limit)
    dispatcher.reaper.keep_counting(limits)
    shares = FairShares(queue.redis, namespaces.weights)
    dispatcher.reaper.also("write the namespaces' fair shares", shares.publish)
    watch = ClockWatch(queue.redis)

    async def compare_clocks() -> None:
        dispatcher.metrics.clock_offset = await watch.measure()

    dispatcher.reaper.also("compare the clock with Redis's", compare_clocks)
    registry_artifacts = RegistryArtifacts(settings.registry, api_key, settings.tls_ca)
    sweep = ArtifactSweep(
        store.db, registry_artifacts, client, settings.scheduler_id, mode=settings.artifact_sweep
    )
    retention = HistoryRetention(
        store.db, settings.history_retention_days, namespaces.retentions, sweep=sweep
    )
    dispatcher.reaper.also("prune the history past its retention", retention.tick)
    signal_records = SignalRecords(store.db["runs"])
    runs = RunService(queue.reader, store, catalog, dispatcher, listeners, limits, signal_records)
    signals = RunSignals(runs, dispatcher, signal_records)
    schedule_store = ScheduleStore(store.db)
    gate = open_gate(
        settings.auth,
        mongo_database(
            settings.mongodb_uri,
            settings.auth_database or settings.mongodb_database,
            settings.mongodb_timeout,
        ),
        settings.key_cache_seconds,
        settings.audit_retention_days,
    )
    if gate.audit is not None:  # its inserts go as a new run's lands, as the history's calls
        gate.audit.write_when = functools.partial(store.landings.next_landing_from_thread, 0.05)
    schedules = Schedules(schedule_store, runs, gate=gate)
    dispatcher.reaper.also("start the runs of the schedules that are due", schedules.tick)
    queue_pauses = Pauses(store.db["paused_queues"], dispatcher.pause_only)
    executor_pauses = Pauses(store.db["paused_executors"], dispatcher.hold_only)
    dispatcher.reaper.also("read the queues' pauses", queue_pauses.refresh)
    dispatcher.reaper.also("read the executors' pauses", executor_pauses.refresh)
    rest_ends = RestEnds(queue.redis, dispatcher.fleet)
    dispatcher.reaper.also("end the rests operators ended elsewhere", rest_ends.tick)
    task_limits = TaskLimits(store.db["task_limits"], queue.redis, catalog)
    dispatcher.reaper.also("read and publish the operators' task limits", task_limits.refresh)
    report = FleetReport(
        queue,
        dispatcher.fleet.record,
        store,
        limits=limits,
        settings=namespaces,
        clock_watch=watch,
        queue_pauses=queue_pauses,
        executor_pauses=executor_pauses,
        rest_ends=rest_ends,
    )
    listeners.register(
        history, TracingListener(), dispatcher.metrics, runs, dispatcher.fleet.proven
    )

    def register(server: object) -> None:
        scheduler_service_pb2_grpc.add_SchedulerServiceServicer_to_server(
            SchedulerServicer(runs, report, task_limits, signals), server
        )
        executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server(
            ExecutorServicer(dispatcher, settings.lease_seconds, settings.heartbeat_seconds), server
        )
        schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server(
            ScheduleServicer(schedules), server
        )

    async def on_start() -> None:
        try:
            await client.ping()
        except RedisError as exc:
            raise unreachable("Redis", "WTM_REDIS_URL", exc) from exc
        await queue.load_scripts()
        try:
            await store.start()
            await schedule_store.start()
            await namespaces.refresh()  # UpdateNamespace's settings before the first submit
            await queue_pauses.refresh()  # and what is paused before the first lease round
            await executor_pauses.refresh()
            await task_limits.refresh()  # and the operators' task limits
        except PyMongoError as exc:
            raise unreachable("MongoDB", "WTM_MONGODB_URI", exc) from exc
        await shares.start()
        await sweep.start()
        await history.start()
        await dispatcher.start()

    async def on_stop() -> None:
        await asyncio.to_thread(gate.close)  # the audit events of the last calls
        await schedules.close()
        await retention.close()
        await history.close()
        await store.close()
        await catalog.close()
        await documents.close()
        await registry_artifacts.close()
        await queue.close()
        await client.aclose()

    await serve_async(
        settings.listen,
        register,
        [
            scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"],
            executor_service_pb2.DESCRIPTOR.services_by_name["ExecutorService"],
            schedule_service_pb2.DESCRIPTOR.services_by_name["ScheduleService"],
        ],
        gate,
        server_tls(settings),
        on_start=on_start,
        on_stop=on_stop,
        before_stop=dispatcher.stop,  # ends executor streams, so they reconnect elsewhere now
        limits=CallLimits(
            settings.calls_per_second, service="scheduler", rates=namespaces.call_rates
        ),
        mtls=executor_mtls(settings),
    )


def executor_mtls(settings: SchedulerSettings) -> MutualTls | None:
    """The executors' listener, when executors must present client certificates."""
    if not settings.tls_client_ca:
        if settings.executor_listen:
            raise SystemExit("WTM_EXECUTOR_LISTEN needs WTM_TLS_CLIENT_CA (it is for mTLS)")
        return None
    if not settings.executor_listen:
        raise SystemExit(
            "WTM_TLS_CLIENT_CA needs WTM_EXECUTOR_LISTEN: executors present certificates on a "
            "listener of their own (clients such as the CLI have none)"
        )
    stream = "/wtm.v1.ExecutorService/Connect"
    return MutualTls(settings.executor_listen, settings.tls_client_ca, frozenset({stream}))


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(SchedulerSettings, argv, prog="wtm-scheduler")
    logs.configure("scheduler")
    telemetry_setup.setup(
        "wtm-scheduler",
        grpc_server="aio",
        grpc_client="aio",
        metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host,
    )
    heap.freeze_startup()
    try:
        asyncio.run(serve(settings))
    finally:
        telemetry_setup.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
