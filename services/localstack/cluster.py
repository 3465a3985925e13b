"""``Cluster``: the local stack plus the three services, as child processes.

    with Cluster(".wtm/demo") as c:
        client = c.client()
        ...

Used by ``make demo``, the CLI's ``stack up`` and the integration tests alike.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.localstack.processes import Child, ProcessGroup, free_port, wait_until
from services.localstack.stack import LocalStack, StackEndpoints

ROOT = Path(__file__).resolve().parents[2]


def serving(address: str) -> bool:
    """True when the gRPC server at ``address`` reports SERVING on grpc.health.v1."""
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1
        )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


class Cluster:
    """Backing servers and the registry, scheduler and executor(s) on 127.0.0.1."""

    def __init__(
        self,
        root: str | Path,
        executors: int = 1,
        slots: int = 2,
        env: dict[str, str] | None = None,
        fresh: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        if fresh and self.root.exists():
            shutil.rmtree(self.root)
        self.stack = LocalStack(self.root / "stack")
        self.services = ProcessGroup(self.root / "logs")
        self.n_executors = executors
        self.slots = slots
        self.extra_env = dict(env or {})
        self.endpoints: StackEndpoints | None = None
        self.registry_address = ""
        self.scheduler_address = ""
        self.executors: list[Child] = []
        self._executor_count = 0
        self.scheduler: Child | None = None
        self.registry: Child | None = None

    def env(self) -> dict[str, str]:
        assert self.endpoints is not None
        return {
            **self.endpoints.service_env(),
            "WTM_MONGODB_DATABASE": "wtm",
            "WTM_REGISTRY_ADDR": self.registry_address,
            "WTM_SCHEDULER_ADDR": self.scheduler_address,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(self) -> Cluster:
        try:
            self.endpoints = self.stack.start()
            self.registry_address = f"127.0.0.1:{free_port()}"
            self.scheduler_address = f"127.0.0.1:{free_port()}"
            self.registry = self._service(
                "registry", "services.registry", "--listen", self.registry_address
            )
            self.scheduler = self._service(
                "scheduler", "services.scheduler", "--listen", self.scheduler_address
            )
            wait_until("registry", lambda: serving(self.registry_address), self.registry)
            wait_until("scheduler", lambda: serving(self.scheduler_address), self.scheduler)
            for _ in range(self.n_executors):
                self.add_executor()
            self._record()
        except BaseException:
            self.stop()
            raise
        return self

    def _service(self, name: str, module: str, *args: str) -> Child:
        return self.services.start(
            name, [sys.executable, "-m", module, *args], env=self.env(), cwd=ROOT
        )

    def add_executor(self, *args: str, slots: int | None = None) -> Child:
        self._executor_count += 1  # never reused, so every executor has its own id and log
        n = self._executor_count
        child = self._service(
            f"executor-{n}",
            "services.executor",
            "--executor-id",
            f"executor-{n}",
            "--slots",
            str(slots or self.slots),
            "--cache-dir",
            str(self.root / f"executor-{n}-cache"),
            *args,
        )
        self.executors.append(child)
        return child

    def _record(self) -> None:
        """Write the addresses and PIDs to ``root/cluster.json`` for people and tests."""
        children = self.stack.group.children + self.services.children
        (self.root / "cluster.json").write_text(
            json.dumps(
                {
                    "registry": self.registry_address,
                    "scheduler": self.scheduler_address,
                    "pids": {c.name: c.pid for c in children},
                },
                indent=2,
            )
        )

    def stop(self) -> None:
        try:
            self.services.stop_all()
        finally:
            self.stack.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, token: str = "") -> object:
        from clients.sdk import Client

        return Client(self.registry_address, self.scheduler_address, token=token)
