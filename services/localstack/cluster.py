"""``Cluster``: the local stack plus the three services, as child processes.

    with Cluster(".wtm/demo") as c, Client(
        c.registry_address, c.scheduler_address, api_key=c.admin_key, tls_ca=str(c.ca_file)
    ) as client:
        ...

Used by ``make demo``, the CLI's ``stack up`` and the integration tests alike.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from common import tls
from common.api_keys import new_key
from services.localstack.processes import Child, ProcessGroup, free_port, wait_until
from services.localstack.stack import LocalStack, StackEndpoints

ROOT = Path(__file__).resolve().parents[2]


def serving(address: str, ca: str | None = None) -> bool:
    """True when the gRPC server at ``address`` reports SERVING on grpc.health.v1."""
    with tls.channel(address, ca) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1
        )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def gateway_serving(url: str, ca: str) -> bool:
    """True when the gateway at ``url`` answers its liveness check."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(f"{url}/healthz", timeout=1, context=context) as reply:
        return bool(reply.status == 200)


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
        self.gateway_address = ""  # the HTTPS gateway and dashboard (gateway_url)
        # The scheduler's listener for executors: it requires their client certificate (mTLS).
        self.executor_address = ""
        self.executors: list[Child] = []
        self._executor_count = 0
        self.scheduler: Child | None = None
        self.registry: Child | None = None
        # API keys (auth is on): files of mode 0600 under root/keys, never in cluster.json.
        self.key_files: dict[str, Path] = {}
        self.admin_key = ""
        # TLS: a throwaway CA made at every start; its certificate is what clients trust,
        # and it signs the executors' client certificate (executor.pem, executor.key).
        self.ca_file = self.root / "tls" / "ca.pem"
        self.executor_cert = (
            self.root / "tls" / "executor.pem",
            self.root / "tls" / "executor.key",
        )

    def env(self) -> dict[str, str]:
        """What every service gets (the scheduler's key: ``service``; executors get theirs)."""
        keys = (
            {"WTM_API_KEY_FILE": str(self.key_files["service"])}
            if "service" in self.key_files
            else {}
        )
        return {**self._bare_env(), **keys, **self.extra_env}

    def executor_env(self) -> dict[str, str]:
        """An executor's environment: its own key (role executor: the stream, packages and
        artifacts, nothing else), its client certificate, and the scheduler's listener for
        executors."""
        return {
            **self.env(),
            "WTM_API_KEY_FILE": str(self.key_files["executor"]),
            "WTM_SCHEDULER_ADDR": self.executor_address,
            "WTM_TLS_CLIENT_CERT": str(self.executor_cert[0]),
            "WTM_TLS_CLIENT_KEY": str(self.executor_cert[1]),
        }

    def _write_key(self, name: str, text: str) -> Path:
        path = self.root / "keys" / f"{name}.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.touch(mode=0o600)
        path.write_text(text)
        self.key_files[name] = path
        return path

    def _make_keys(self) -> None:
        """The admin key the registry registers at start, then (through AuthService) a key
        for the scheduler (role service) and one for the executors (role executor)."""
        from wtm.v1 import auth_service_pb2 as apb
        from wtm.v1 import auth_service_pb2_grpc as apb_grpc

        metadata = (("authorization", f"Bearer {self.admin_key}"),)
        with tls.channel(self.registry_address, str(self.ca_file)) as channel:
            stub = apb_grpc.AuthServiceStub(channel)
            for name, role in (("service", "service"), ("executor", "executor")):
                request = apb.CreateApiKeyRequest(
                    name=f"local {name}",
                    role=role,
                    namespace="*",  # every namespace
                )
                reply = stub.CreateApiKey(request, metadata=metadata, timeout=30)
                self._write_key(name, reply.secret)

    def start(self) -> Cluster:
        try:
            self.endpoints = self.stack.start()
            self.registry_address = f"127.0.0.1:{free_port()}"
            self.scheduler_address = f"127.0.0.1:{free_port()}"
            self._make_tls()
            self.admin_key = new_key()[1]
            admin_file = self._write_key("admin", self.admin_key)
            self.registry = self._service(
                "registry",
                "services.registry",
                "--listen",
                self.registry_address,
                env={"WTM_BOOTSTRAP_ADMIN_KEY_FILE": str(admin_file)},
            )
            ca = str(self.ca_file)
            wait_until("registry", lambda: serving(self.registry_address, ca), self.registry)
            self._make_keys()
            self.executor_address = f"127.0.0.1:{free_port()}"
            self.scheduler = self._service(
                "scheduler",
                "services.scheduler",
                "--listen",
                self.scheduler_address,
                "--executor-listen",
                self.executor_address,
                env={"WTM_TLS_CLIENT_CA": str(self.ca_file)},
            )
            wait_until("scheduler", lambda: serving(self.scheduler_address, ca), self.scheduler)
            self.gateway_address = f"127.0.0.1:{free_port()}"
            self.gateway = self._service(
                "gateway",
                "services.gateway",
                "--listen",
                self.gateway_address,
                env=self.gateway_env(),
                replace_env=True,
            )
            wait_until("gateway", lambda: gateway_serving(self.gateway_url, ca), self.gateway)
            for _ in range(self.n_executors):
                self.add_executor()
            self._record()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def gateway_url(self) -> str:
        return f"https://{self.gateway_address}"

    def gateway_env(self) -> dict[str, str]:
        """The gateway's environment: where the services are and the TLS files; no key and
        no backing-service credential (it calls with each caller's key)."""
        bare = self._bare_env()
        kept = ("WTM_REGISTRY_ADDR", "WTM_SCHEDULER_ADDR", "WTM_TLS_CERT", "WTM_TLS_KEY")
        return {
            **{k: bare[k] for k in (*kept, "WTM_TLS_CA", "PYTHONUNBUFFERED")},
            **{k: v for k, v in self.extra_env.items() if "KEY" not in k},
        }

    def _service(
        self,
        name: str,
        module: str,
        *args: str,
        env: dict[str, str] | None = None,
        replace_env: bool = False,
        launcher: Sequence[str] = (),
    ) -> Child:
        full = dict(env or {}) if replace_env else {**self.env(), **(env or {})}
        argv = [*launcher, sys.executable, "-m", module, *args]
        return self.services.start(name, argv, env=full, cwd=ROOT)

    def _bare_env(self) -> dict[str, str]:
        assert self.endpoints is not None
        return {
            **self.endpoints.service_env(),
            "WTM_MONGODB_DATABASE": "wtm",
            "WTM_REGISTRY_ADDR": self.registry_address,
            "WTM_SCHEDULER_ADDR": self.scheduler_address,
            "PYTHONUNBUFFERED": "1",
            "WTM_TLS_CERT": str(self.root / "tls" / "server.pem"),
            "WTM_TLS_KEY": str(self.root / "tls" / "server.key"),
            "WTM_TLS_CA": str(self.ca_file),
        }

    def _make_tls(self) -> None:
        """A CA for this start and a server certificate for 127.0.0.1 and localhost (trustme,
        built on cryptography); the key files are mode 0600."""
        import trustme

        directory = self.ca_file.parent
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        server.private_key_pem.write_to_path(str(directory / "server.key"))
        (directory / "server.key").chmod(0o600)
        with open(directory / "server.pem", "wb") as fh:
            for blob in server.cert_chain_pems:
                fh.write(blob.bytes())
        executor = ca.issue_cert("wtm-executor", common_name="wtm-executor")
        cert, key = self.executor_cert
        executor.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        executor.cert_chain_pems[0].write_to_path(str(cert))

    def add_executor(
        self, *args: str, slots: int | None = None, launcher: Sequence[str] = ()
    ) -> Child:
        """Another executor (its own id, cache and log); ``launcher`` is a command line it is
        started under (say ``setpriv`` with fewer capabilities)."""
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
            env=self.executor_env(),
            launcher=launcher,
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
                    "gateway": self.gateway_url,
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
