"""Executor settings: flags and WTM_* environment variables."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from common.refs import DEFAULT_INLINE_MAX_BYTES
from services.common.config import (
    ClientKeySettings,
    host_port,
    list_setting,
    non_negative,
    positive,
    setting,
)


@dataclass
class ExecutorSettings(ClientKeySettings):
    """An executor: takes steps from the scheduler and runs them in worker processes."""

    scheduler: list[str] = list_setting(
        "WTM_SCHEDULER_ADDR",
        "scheduler address, or several comma-separated (tried in turn on reconnect)",
        lambda v: (
            "must name at least one address"
            if not v
            else next((f"{a!r}: {p}" for a in v if (p := host_port(a))), None)
        ),
        default=("127.0.0.1:50052",),
    )
    registry: str = setting(
        "127.0.0.1:50051", "WTM_REGISTRY_ADDR", "registry service address", host_port
    )
    executor_id: str = setting(
        f"{socket.gethostname()}", "WTM_EXECUTOR_ID", "this executor's id, unique in the fleet"
    )
    queues: list[str] = list_setting(
        "WTM_EXECUTOR_QUEUES",
        "comma-separated queues to take work from",
        lambda v: None if v else "must name at least one queue",
        default=("default",),
    )
    namespaces: list[str] = list_setting(
        "WTM_EXECUTOR_NAMESPACES",
        "comma-separated namespaces whose queues to serve; empty: every one its key allows "
        "(the key's namespace, or all of them for a key of every namespace)",
    )
    slots: int = setting(2, "WTM_EXECUTOR_SLOTS", "steps run at once", positive)
    tls_client_cert: str = setting(
        "",
        "WTM_TLS_CLIENT_CERT",
        "PEM client certificate to present to the scheduler (mTLS: its WTM_EXECUTOR_LISTEN)",
    )
    tls_client_key: str = setting("", "WTM_TLS_CLIENT_KEY", "PEM private key of that certificate")
    labels: list[str] = list_setting(
        "WTM_EXECUTOR_LABELS",
        "comma-separated KEY=VALUE labels, e.g. gpu=false; a task's executor_labels must all "
        "match for its steps to come here",
        lambda v: next(
            (f"{x!r} is not KEY=VALUE" for x in v if not re.match(r"^[\w.-]+=[\w.-]*$", x)),
            None,
        ),
    )
    cache_dir: str = setting(
        ".wtm/executor-cache", "WTM_EXECUTOR_CACHE_DIR", "package cache directory"
    )
    cache_max_mb: int = setting(
        4096,
        "WTM_EXECUTOR_CACHE_MAX_MB",
        "cap on the package cache; least recently used packages go first, never one a "
        "running step uses (0: no cap)",
        non_negative,
    )
    artifact_cache_max_mb: int = setting(
        2048,
        "WTM_ARTIFACT_CACHE_MAX_MB",
        "cap on the cache of input artifacts (and inputs passed by reference); least recently "
        "used go first, never one a running step reads (0: no cap)",
        non_negative,
    )
    install_requirements: bool = setting(
        False,
        "WTM_INSTALL_REQUIREMENTS",
        "install a task's missing requirements with pip into the cache (else: fail the step)",
    )
    requirements_cache_max_mb: int = setting(
        4096,
        "WTM_REQUIREMENTS_CACHE_MAX_MB",
        "cap on the requirements installed into the cache; least recently used sets go "
        "first, never one a running step uses, and an install over it is refused (0: no cap)",
        non_negative,
    )
    worker_memory_mb: int = setting(
        0,
        "WTM_WORKER_MEMORY_MB",
        "kill a worker process whose memory (RSS) goes over this; the step fails (0: no limit)",
        non_negative,
    )
    inline_max_bytes: int = setting(
        DEFAULT_INLINE_MAX_BYTES,
        "WTM_INLINE_MAX_BYTES",
        "step outputs larger than this go to the object store by reference (0: up to 4 MiB "
        "inline; larger ones always go by reference)",
        non_negative,
    )
    drain_seconds: float = setting(
        30.0, "WTM_DRAIN_SECONDS", "on SIGTERM, how long running steps may finish", positive
    )
    rest_after_errors: int = setting(
        3,
        "WTM_REST_AFTER_SLOT_ERRORS",
        "after this many steps in a row failed in the executor itself (not in task code), of "
        "at least two task versions, or of one that ran well here or (as the scheduler has "
        "seen) on any executor, take nothing new for a while (0: never)",
        non_negative,
    )
    rest_seconds: float = setting(
        30.0,
        "WTM_REST_SECONDS",
        "how long the first such rest lasts; each one that more such failures follow is "
        "twice as long, up to 600 s",
        positive,
    )
    sandbox: bool = setting(
        True,
        "WTM_SANDBOX",
        "confine worker processes: scrubbed environment and limits always; as root also their "
        "own uid, no network and only their own files (see docs/architecture.md)",
    )
    worker_uid_base: int = setting(
        61000,
        "WTM_WORKER_UID_BASE",
        "as root, workers get uids from this one up, each claimed host-wide (/run/wtm/worker-uids)",
        positive,
    )
    worker_max_memory_mb: int = setting(
        8192,
        "WTM_WORKER_MAX_MEMORY_MB",
        "ceiling on a worker's address space; task.json resources.memory_mb may ask for less "
        "(0: none)",
        non_negative,
    )
    worker_max_open_files: int = setting(
        1024,
        "WTM_WORKER_MAX_OPEN_FILES",
        "ceiling on a worker's open files (0: none)",
        non_negative,
    )
    worker_max_file_size_mb: int = setting(
        1024,
        "WTM_WORKER_MAX_FILE_SIZE_MB",
        "ceiling on the size of a file a worker writes (0: none)",
        non_negative,
    )
    worker_threads: int = setting(
        0,
        "WTM_WORKER_THREADS",
        "threads each worker's numeric libraries (OpenMP, OpenBLAS, MKL, OpenCV) may use; 0: "
        "the executor's CPUs divided by its slots, at least 1 (an OMP_NUM_THREADS or the like "
        "set for the executor wins)",
        non_negative,
    )
    worker_max_disk_mb: int = setting(
        1024,
        "WTM_WORKER_MAX_DISK_MB",
        "ceiling on what a worker's files take in all (its directory, its own /tmp), walked "
        "once a second; task.json resources.disk_mb may ask for less (0: none). The cache "
        "volume needs room for (slots + WTM_SPARE_WORKERS) times this besides the caches",
        non_negative,
    )
    worker_max_files: int = setting(
        20_000,
        "WTM_WORKER_MAX_FILES",
        "entries a worker's directory may hold (each walk of it visits all of them); a "
        "worker holding more is killed as one over its disk limit is",
        positive,
    )
    spare_workers: int = setting(
        2,
        "WTM_SPARE_WORKERS",
        "idle warm workers kept beyond the slots (task versions kept warm; least recently "
        "used retired first)",
        non_negative,
    )
    worker_max_processes: int = setting(
        64,
        "WTM_WORKER_MAX_PROCESSES",
        "ceiling on the processes of a worker (as root, where each has its own uid; 0: none)",
        non_negative,
    )
    worker_max_cpu_seconds: int = setting(
        0,
        "WTM_WORKER_MAX_CPU_SECONDS",
        "ceiling on the CPU seconds of one step; task.json resources.cpu_seconds may ask for "
        "less (0: none; the step's timeout still applies)",
        non_negative,
    )
    store_retry_seconds: float = setting(
        60.0,
        "WTM_STORE_RETRY_SECONDS",
        "how long to keep retrying the object store (packages, artifacts, large outputs) "
        "before a step fails: an outage shorter than this costs no retry of the step",
        non_negative,
    )
    health_file: str = setting(
        "", "WTM_HEALTH_FILE", "file touched on every heartbeat, for container health checks"
    )
