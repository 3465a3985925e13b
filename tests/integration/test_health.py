"""``wtm health`` as an operator runs it, against a stack of its own whose parts are stopped
one by one (by PID): every time, exit 1 and a line that names the part that is down. Before
that, with everything up: exit 0, and a warning (not a failure) for a queue whose work no
executor takes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clients.sdk import Client
from services.localstack import Cluster
from tests.conftest import run_cli
from tests.integration.test_registry import make_task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def doomed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A stack of this module's own: its parts are stopped by the test."""
    # MongoDB operations wait 2 s at most (not 10): with it down, every check waits that out.
    env = {"WTM_MONGODB_TIMEOUT": "2"}
    with Cluster(tmp_path_factory.mktemp("doomed"), executors=1, slots=1, env=env) as c:
        yield c


def health(cluster: Cluster) -> tuple[int, dict[str, str], list[dict[str, str]]]:
    """(exit code, component -> status, the checks) of ``wtm --json health``."""
    done = run_cli(
        cluster,
        "--json",
        "health",
        check=False,
        timeout=60,
        env={"WTM_GATEWAY_URL": cluster.gateway_url},
    )
    report = json.loads(done.stdout)
    checks = report["checks"]
    return done.returncode, {c["component"]: c["status"] for c in checks}, checks


def human(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return run_cli(
        cluster,
        "health",
        check=False,
        timeout=60,
        env={"WTM_GATEWAY_URL": cluster.gateway_url},
    )


def stop(cluster: Cluster, name: str) -> None:
    """Kill one process of the stack by its PID (kill -9: a graceful stop of a service
    whose backing servers are already down waits out its grace period, 3-5 s each, for
    nothing this test looks at)."""
    for group in (cluster.stack.group, cluster.services):
        for child in group.children:
            if child.name == name:
                child.proc.kill()
                child.proc.wait(10)
                return
    raise AssertionError(f"no process {name}")


def test_health_names_each_part_that_goes_down(doomed: Cluster, tmp_path: Path) -> None:
    code, parts, _ = health(doomed)
    assert code == 0, parts
    assert set(parts.values()) == {"ok"}, parts
    for part in (
        "registry",
        "registry/mongodb",
        "registry/s3",
        "scheduler",
        "scheduler/redis",
        "scheduler/mongodb",
        "gateway",
        "executors",
        "queues",
    ):
        assert parts[part] == "ok", part

    with Client(
        doomed.registry_address,
        doomed.scheduler_address,
        api_key=doomed.admin_key,
        tls_ca=str(doomed.ca_file),
    ) as client:
        client.register_task(make_task(tmp_path, "unserved", queue="nobody-here"))
        client.submit(task="unserved", input={})
    code, parts, _ = health(doomed)
    assert code == 0 and parts["queue nobody-here"] == "warn", parts
    shown = human(doomed)
    assert shown.returncode == 0
    assert "no connected executor takes from it" in shown.stdout

    # Each stopped part fails a line that names it, and the command exits 1 saying so. (With
    # MongoDB down, the services cannot check keys: their own lines fail, naming MongoDB.)
    # The quick ones first: with S3 down every check waits out the registry's 3 s S3 timeout,
    # with MongoDB down the services' MongoDB one, 2 s here (the order changes nothing else).
    for process, named in (
        ("gateway", "gateway"),
        ("valkey", "redis"),
        ("seaweedfs", "s3"),
        ("nx-27017", "mongodb"),
        ("scheduler", "scheduler"),
        ("registry", "registry"),
    ):
        stop(doomed, process)
        with ThreadPoolExecutor(2) as both:  # each waits out the same timeouts: at once
            as_json, as_text = both.submit(health, doomed), both.submit(human, doomed)
            (code, parts, checks), shown = as_json.result(), as_text.result()
        assert code == 1, (process, checks)
        failed = [c for c in checks if c["status"] == "fail"]
        assert any(named in (c["component"] + c["detail"]).lower() for c in failed), checks
        assert shown.returncode == 1
        down = [line for line in shown.stderr.splitlines() if line.startswith("down ")]
        assert any(named in line.lower() for line in down), (process, shown.stderr)
