"""What ``Client`` and ``clients.aio.AsyncClient`` share: the key to present, the
settings, one caller per service, the stubs, the copies that act as another key, and the
rule that turns a run that did not complete into an exception."""

from __future__ import annotations

import copy
import os
from typing import Any, Self

from clients.errors import Unauthenticated, raise_for_outcome
from clients.types import RunInfo
from wtm.v1 import auth_service_pb2_grpc as apb_grpc
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc
from wtm.v1 import schedule_service_pb2_grpc as schpb_grpc
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc


def resolve_key(key: str = "", path: str = "") -> str:
    """The API key to present: ``key``, else the one in the file ``path``, else
    ``WTM_API_KEY``, else the one in the file ``WTM_API_KEY_FILE`` names ("" for none).

    Raises:
        Unauthenticated: the key file cannot be read.
    """
    if key.strip():
        return key.strip()
    if not path:
        if from_env := os.environ.get("WTM_API_KEY", "").strip():
            return from_env
        path = os.environ.get("WTM_API_KEY_FILE", "")
    if not path:
        return ""
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError as exc:
        raise Unauthenticated(f"cannot read the API key file {path}: {exc.strerror}") from exc


class NotFinished(Exception):
    """The run's event stream ended before the run did (a scheduler went away)."""


class Connection:
    """What ``Client`` and ``clients.aio.AsyncClient`` share: the settings, one caller per
    service (``_caller``: the sync or the asyncio one), the stubs, and the outcome rule."""

    _caller: Any

    def _connect(
        self,
        registry: str,
        scheduler: str,
        api_key: str,
        tls_ca: str | None,
        namespace: str | None,
        timeout: float,
        retry_seconds: float,
        raise_on_failure: bool,
    ) -> None:
        self.namespace = os.environ.get("WTM_NAMESPACE", "") if namespace is None else namespace
        # As the CLI: the addresses `wtm stack up` prints, else the services' default ports.
        registry = registry or os.environ.get("WTM_REGISTRY_ADDR") or "127.0.0.1:50051"
        scheduler = scheduler or os.environ.get("WTM_SCHEDULER_ADDR") or "127.0.0.1:50052"
        settings: dict[str, Any] = {
            "ca": tls_ca,
            "api_key": api_key,
            "namespace": self.namespace,
            "timeout": timeout,
            "retry_seconds": retry_seconds,
        }
        self._r = self._caller(registry, **settings)
        self._s = self._caller(scheduler, **settings)
        self._registry = rpb_grpc.RegistryServiceStub(self._r.channel)
        self._auth = apb_grpc.AuthServiceStub(self._r.channel)
        self._scheduler = spb_grpc.SchedulerServiceStub(self._s.channel)
        self._schedules = schpb_grpc.ScheduleServiceStub(self._s.channel)
        self._timeout = timeout
        self.raise_on_failure = raise_on_failure

    def __repr__(self) -> str:
        """The services it calls and the namespace it acts in; never its key."""
        namespace = repr(self.namespace) if self.namespace else "the key's"
        return (
            f"{type(self).__name__}(registry={self._r.address!r}, "
            f"scheduler={self._s.address!r}, namespace={namespace})"
        )

    def acting_as(self, api_key: str, namespace: str = "") -> Self:
        """A client on the same channels that presents another key (and namespace): how a
        gateway calls for each of its callers without a connection each. Close only the
        original; the copies share its channels."""
        other = copy.copy(self)
        other.namespace = namespace
        other._r = self._r.acting_as(api_key, namespace)
        other._s = self._s.acting_as(api_key, namespace)
        return other

    def _outcome(self, run: RunInfo, raise_on_failure: bool | None) -> RunInfo:
        """A finished run, or its ``RunError`` when it did not complete and the caller (or
        this client's default) asked for that."""
        wanted = self.raise_on_failure if raise_on_failure is None else raise_on_failure
        return raise_for_outcome(run) if wanted else run
