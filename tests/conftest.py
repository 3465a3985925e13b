"""Shared fixtures: one real local stack and the three services per test session."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from clients.sdk import Client
from common import tls
from services.localstack import Cluster

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tasks" / "examples"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """valkey + SeaweedFS + nx-27017, then registry, scheduler and one 2-slot executor."""
    c = Cluster(
        tmp_path_factory.mktemp("cluster"),
        executors=1,
        slots=2,
        env={
            "WTM_LEASE_SECONDS": "3",
            "WTM_HEARTBEAT_SECONDS": "0.5",
            "WTM_KEY_CACHE_SECONDS": "0.3",  # revocations show within the tests' patience
            "WTM_NAMESPACE_RUN_LIMITS": "capped-team=3",  # test_namespaces.py's limit
            "WTM_NAMESPACE_WEIGHTS": "weighty-team=4",  # and its weight
        },
    )
    with c:
        # The stack serves TLS with a CA of its own: every client here trusts it (the SDK,
        # raw channels and health checks read WTM_TLS_CA; services are given it anyway).
        os.environ["WTM_TLS_CA"] = str(c.ca_file)
        try:
            yield c
        finally:
            os.environ.pop("WTM_TLS_CA", None)
    # Whatever the tests provoked, a service must never have hit an unexpected error (an
    # INTERNAL answer) nor lost a task's failure: each is a bug, seen only in its log. A run
    # whose summary raised once answered INTERNAL one time in ~3,600 and no test noticed.
    found = [
        f"{log.name}: {line.strip()[:200]}"
        for log in sorted((c.root / "logs").glob("*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if any(sign in line for sign in BUG_SIGNS)
    ]
    assert not found, "the session's stack logged what only a bug logs:\n" + "\n".join(found)


BUG_SIGNS = ("unexpected error", "Task exception was never retrieved")


@pytest.fixture(scope="session")
def client(cluster: Cluster) -> Iterator[Client]:
    """The session's admin client. Its ``run``/``wait`` return a run that did not complete
    (the tests assert its state) instead of raising; tests/integration/test_sdk.py covers
    the raising."""
    with Client(
        cluster.registry_address,
        cluster.scheduler_address,
        api_key=cluster.admin_key,
        raise_on_failure=False,
    ) as c:
        yield c


def run_cli(
    cluster: Cluster,
    *args: str,
    check: bool = True,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run ``wtm ARGS`` as a user would, against the session's services (with ``env``
    added to the environment)."""
    env = {
        **os.environ,
        **(env or {}),
        "WTM_REGISTRY_ADDR": cluster.registry_address,
        "WTM_SCHEDULER_ADDR": cluster.scheduler_address,
        "WTM_API_KEY_FILE": str(cluster.key_files["admin"]),
        "WTM_TLS_CA": str(cluster.ca_file),
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "clients.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <key>`` (and a ``wtm-namespace``, when given) to every
    call of a raw channel."""

    def __init__(self, key: str, namespace: str = "") -> None:
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {key}"),)
        if namespace:
            self._metadata += (("wtm-namespace", namespace),)

    def _with_key(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_key(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_key(details), requests)


def keyed_channel(
    address: str, key: str, namespace: str = "", client_cert: tuple[Path, Path] | None = None
) -> grpc.Channel:
    """A raw channel whose calls present ``key`` (as any generated client would), acting
    in ``namespace`` when given, presenting ``client_cert`` (mTLS) when given."""
    cert = (str(client_cert[0]), str(client_cert[1])) if client_cert else None
    return grpc.intercept_channel(tls.channel(address, client_cert=cert), _Bearer(key, namespace))


def gateway_http(cluster: Cluster) -> httpx.Client:
    """An HTTPS client of the stack's gateway that trusts its CA and presents the admin key."""
    return httpx.Client(
        base_url=cluster.gateway_url,
        verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
        headers={"Authorization": f"Bearer {cluster.admin_key}"},
        timeout=30,
    )


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory sandboxed task code may write into (tests' journals and ledgers), open to
    every uid (as root, each worker has a uid of its own). Under /run as root: a worker's
    /tmp is its own, not the host's. Files in it are made with ``shared_file``."""
    base = "/run" if os.geteuid() == 0 and os.access("/run", os.W_OK) else "/tmp"
    d = Path(tempfile.mkdtemp(prefix="wtm-shared-", dir=base))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def shared_file(directory: Path, name: str) -> Path:
    """An empty file every worker may append to, whatever its uid."""
    path = directory / name
    path.touch()
    path.chmod(0o666)
    return path


# The suite leaves the checkout as it found it: a server started with the repository as its
# working directory once committed its dump.rdb. Whatever a run adds or changes outside the
# ignored paths fails the run, named.
_REPO = Path(__file__).resolve().parent.parent
_checkout_key = pytest.StashKey[set[str] | None]()


def _checkout_changes() -> set[str] | None:
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=_REPO, capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (an sdist, say): nothing to compare
    return set(out.splitlines())


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_checkout_key] = _checkout_changes()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_checkout_key, None)
    after = _checkout_changes()
    if before is None or after is None:
        return
    if added := sorted(after - before):
        sys.stderr.write("\nthe tests left these in the checkout:\n  " + "\n  ".join(added) + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
