"""Scheduler settings: flags and WTM_* environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from common.refs import DEFAULT_INLINE_MAX_BYTES
from services.common.backends import redis_url_problem
from services.common.config import (
    ClientKeySettings,
    MongoSettings,
    ServerAuthSettings,
    host_port,
    list_setting,
    non_negative,
    positive,
    setting,
)
from services.common.leases import heartbeat_problem
from services.scheduler.artifact_sweep import SWEEP_MODES
from services.scheduler.fair_shares import weights_problem
from services.scheduler.history_retention import retention_problem
from services.scheduler.result_cache import DEFAULT_MAX_BYTES, DEFAULT_TTL_SECONDS
from services.scheduler.run_limits import limits_problem


@dataclass
class SchedulerSettings(MongoSettings, ServerAuthSettings, ClientKeySettings):
    """The scheduler service: runs, queues and leases in Redis, history in MongoDB."""

    executor_listen: str = setting(
        "",
        "WTM_EXECUTOR_LISTEN",
        "a second address for executors' streams, which requires client certificates signed "
        "by WTM_TLS_CLIENT_CA (mTLS); empty: executors use WTM_SCHEDULER_LISTEN",
        lambda v: host_port(v) if v else None,
    )
    tls_client_ca: str = setting(
        "",
        "WTM_TLS_CLIENT_CA",
        "PEM CA of the executors' client certificates; when set, the executor stream is "
        "served only on WTM_EXECUTOR_LISTEN, to executors presenting one",
    )
    listen: str = setting(
        "127.0.0.1:50052", "WTM_SCHEDULER_LISTEN", "address to serve gRPC on", host_port
    )
    registry: str = setting(
        "127.0.0.1:50051", "WTM_REGISTRY_ADDR", "registry service address", host_port
    )
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "WTM_REDIS_URL",
        "Redis URL; or Sentinel: redis+sentinel://[user:password@]host:port[,host:port]/"
        "<service name>[/db]",
        redis_url_problem,
    )
    lease_seconds: int = setting(
        30, "WTM_LEASE_SECONDS", "lease of a step attempt without heartbeats", positive
    )
    heartbeat_seconds: float = setting(
        5.0, "WTM_HEARTBEAT_SECONDS", "how often executors send heartbeats", positive
    )
    finished_ttl_seconds: int = setting(
        3600,
        "WTM_FINISHED_TTL_SECONDS",
        "how long a finished run stays in Redis while its end is not yet in MongoDB "
        "(the longest history outage that loses nothing)",
        positive,
    )
    recovery_scan_seconds: float = setting(
        30.0,
        "WTM_RECOVERY_SCAN_SECONDS",
        "how often MongoDB's unfinished runs are checked against Redis (rebuilding what Redis "
        "lost, writing ends another replica died before writing)",
        positive,
    )
    unrecorded_after_seconds: float = setting(
        30.0,
        "WTM_UNRECORDED_AFTER_SECONDS",
        "how long after its submit a run in Redis with no MongoDB document (its replica killed "
        "before the insert landed) is recorded whole from Redis",
        positive,
    )
    retention_seconds: int = setting(
        120,
        "WTM_FINISHED_RETENTION_SECONDS",
        "how long a finished run stays in Redis once MongoDB has it (GetRun and WatchRun "
        "then read MongoDB)",
        positive,
    )
    history_retention_days: float = setting(
        30.0,
        "WTM_HISTORY_RETENTION_DAYS",
        "how long MongoDB keeps a finished run, its step records and its request id, counted "
        "from its creation (0: for good); pruned hourly",
        non_negative,
    )
    artifact_sweep: str = setting(
        "on",
        "WTM_ARTIFACT_SWEEP",
        "the daily sweep of artifacts no kept run or pipeline names: on, dry-run (log what it "
        "would delete, delete nothing) or off",
        lambda v: None if v in SWEEP_MODES else f"must be one of {', '.join(SWEEP_MODES)}",
    )
    namespace_retention_days: list[str] = list_setting(
        "WTM_NAMESPACE_RETENTION_DAYS",
        "comma-separated NAMESPACE=DAYS: a namespace's own WTM_HISTORY_RETENTION_DAYS "
        "(0: for good)",
        retention_problem,
    )
    prefetch: int = setting(
        0,
        "WTM_PREFETCH",
        "steps each executor may hold beyond its free slots, so a freed slot starts the next "
        "one at once (0: none); held steps keep their lease through heartbeats",
        non_negative,
    )
    require_isolation: bool = setting(
        False,
        "WTM_REQUIRE_ISOLATION",
        "take only executors that isolate task code (their hello says sandbox 'isolated': "
        "root, a uid and namespaces per worker); refuse the others at connect with "
        "FAILED_PRECONDITION, so that no step runs where its code would share the executor's "
        "user and network",
    )
    isolation_optional_namespaces: list[str] = list_setting(
        "WTM_ISOLATION_OPTIONAL_NAMESPACES",
        "comma-separated namespaces whose steps may run where task code is not isolated (a "
        "team's own trusted code): with WTM_REQUIRE_ISOLATION, an executor that does not "
        "isolate is taken when every namespace it serves is listed here "
        "(WTM_EXECUTOR_NAMESPACES, or a key bound to one)",
        lambda v: next((f"{n!r} is not a namespace name" for n in v if n == "*" or not n), None),
    )
    max_unfinished_runs: int = setting(
        0,
        "WTM_MAX_UNFINISHED_RUNS",
        "how many runs queued or running a namespace may have (0: no limit); a submit past "
        "it is refused with RESOURCE_EXHAUSTED, so that no team fills Redis for all",
        non_negative,
    )
    namespace_run_limits: list[str] = list_setting(
        "WTM_NAMESPACE_RUN_LIMITS",
        "comma-separated NAMESPACE=LIMIT: a namespace's own limit of runs queued or running, "
        "instead of WTM_MAX_UNFINISHED_RUNS (0: none)",
        limits_problem,
    )
    namespace_weights: list[str] = list_setting(
        "WTM_NAMESPACE_WEIGHTS",
        "comma-separated NAMESPACE=WEIGHT: a namespace's share of new runs while others also "
        "wait (1 unless named; 3: three runs started for each one of a namespace of weight 1)",
        weights_problem,
    )
    inline_max_bytes: int = setting(
        DEFAULT_INLINE_MAX_BYTES,
        "WTM_INLINE_MAX_BYTES",
        "step inputs larger than this go to the executor by reference (0: up to 4 MiB "
        "inline; larger ones always go by reference)",
        non_negative,
    )
    latest_cache_seconds: float = setting(
        1.0,
        "WTM_LATEST_CACHE_SECONDS",
        "how long what 'latest' means for a task or pipeline is cached (0: ask every time)",
        non_negative,
    )
    result_cache_seconds: int = setting(
        DEFAULT_TTL_SECONDS,
        "WTM_RESULT_CACHE_SECONDS",
        "how long a cached step output is reused (pipelines with enable_caching)",
        positive,
    )
    result_cache_max_bytes: int = setting(
        DEFAULT_MAX_BYTES,
        "WTM_RESULT_CACHE_MAX_BYTES",
        "outputs larger than this are not cached (outputs by reference are small)",
        non_negative,
    )
    metrics_port: int = setting(
        0,
        "WTM_METRICS_PORT",
        "serve Prometheus metrics on this port at /metrics (0: off)",
        lambda v: None if 0 <= v < 65536 else "must be a port number or 0",
    )
    metrics_host: str = setting(
        "127.0.0.1", "WTM_METRICS_HOST", "address the metrics endpoint listens on"
    )
    scheduler_id: str = setting(
        f"{socket.gethostname()}-{os.getpid()}",
        "WTM_SCHEDULER_ID",
        "this replica's name, shown with the executors connected to it",
    )

    def problem(self) -> str | None:
        """What the settings together do not allow (``load_settings`` exits saying it)."""
        return heartbeat_problem(self.lease_seconds, self.heartbeat_seconds)
