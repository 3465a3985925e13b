"""Executors' caches on the real stack: requirements installed once (from wheels only,
within their cap), the package and artifact caches kept to their caps."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from clients.sdk import Client
from common.artifacts import parse_uri
from services.localstack import Cluster
from tests.integration.executor_tasks import (
    installing_executor,
    make_task,
    register_fixtures,
    run,
    stop_executor,
)
from tests.wheels import build_sdist, build_wheel


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    register_fixtures(client)


USES_PROBE_LIB = """
import wtm_probe_lib
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        return {"value": wtm_probe_lib.VALUE, "from": wtm_probe_lib.__file__}
"""


def test_missing_requirements_are_installed_once_into_the_cache_when_allowed(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheelhouse"
    build_wheel(wheels, "wtm-probe-lib", "1.0", "VALUE = 42\n")
    client.register_task(
        make_task(
            tmp_path,
            "probe_lib_user",
            USES_PROBE_LIB,
            queue="installq",
            requirements=["wtm-probe-lib==1.0", "numpy"],
        )
    )
    client.register_task(
        make_task(tmp_path, "unfindable_user", queue="installq", requirements=["wtm-absent-lib>=1"])
    )
    child = installing_executor(cluster, wheels, "installq")
    try:
        first = run(client, task="probe_lib_user", input={}, timeout=120)
        second = run(client, task="probe_lib_user", input={})
        assert first.state == second.state == "COMPLETED", first.steps[0].error
        assert first.output["value"] == 42
        assert "executor-" in first.output["from"] and "/requirements/" in first.output["from"]
        assert child.log_path.read_text().count("installing wtm-probe-lib==1.0") == 1
        failed = run(client, task="unfindable_user", input={}, timeout=120)
        assert failed.state == "FAILED" and failed.steps[0].attempt == 1
        assert "could not install wtm-absent-lib>=1" in failed.steps[0].error
    finally:
        stop_executor(cluster, child)


USES_LIB = """
import os

import {module}
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        return {{"pid": os.getpid(), "from": {module}.__file__}}
"""


def test_installed_requirements_keep_to_their_cap_and_an_install_over_it_is_refused(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """Every set of requirements any task version named was kept for good: a team could
    fill the executor's volume. Over ``--requirements-cache-max-mb`` the least recently used
    set goes (its idle workers with it); one bigger than the cap is refused."""
    wheels = tmp_path / "wheelhouse"
    for name, kb in (("a", 600), ("b", 600), ("huge", 1500)):
        build_wheel(wheels, f"wtm-lib-{name}", "1.0", "", data=os.urandom(kb * 1024))
        code = USES_LIB.format(module=f"wtm_lib_{name}")
        requirements = [f"wtm-lib-{name}==1.0"]
        client.register_task(
            make_task(tmp_path, f"lib_{name}_user", code, queue="capq", requirements=requirements)
        )
    cluster.extra_env["WTM_REQUIREMENTS_CACHE_MAX_MB"] = "1"
    try:
        child = installing_executor(cluster, wheels, "capq")
    finally:
        del cluster.extra_env["WTM_REQUIREMENTS_CACHE_MAX_MB"]
    try:
        first = run(client, task="lib_a_user", input={}, timeout=120)
        assert first.state == "COMPLETED", first.steps[0].error
        assert run(client, task="lib_b_user", input={}, timeout=120).state == "COMPLETED"
        cached = cluster.root / f"{child.name}-cache" / "requirements"
        [kept] = [p for p in cached.iterdir() if not p.name.startswith(".")]
        assert (kept / "wtm_lib_b").is_dir()  # 1 MiB holds one set: a's went
        log = child.log_path.read_text()
        assert "evicted requirements" in log
        again = run(client, task="lib_a_user", input={}, timeout=120)
        assert again.state == "COMPLETED", again.steps[0].error
        # Installed afresh, in a new worker: the idle one that had a's set went with it.
        assert child.log_path.read_text().count("installing wtm-lib-a==1.0") == 2
        assert again.output["pid"] != first.output["pid"]
        huge = run(client, task="lib_huge_user", input={}, timeout=120)
        assert huge.state == "FAILED" and huge.steps[0].attempt == 1
        assert "took over 1 MiB of disk" in huge.steps[0].error
        assert "WTM_REQUIREMENTS_CACHE_MAX_MB" in huge.steps[0].error
        assert not any("huge" in str(p) for p in cached.rglob("*"))
    finally:
        stop_executor(cluster, child)


def test_a_requirement_is_installed_from_a_wheel_only_never_built_here(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """A task's requirements are as untrusted as its code: building a source distribution
    runs code it brings, and pip ran it in the executor, as the executor's user (root in
    the local stack), with the executor's environment."""
    marker = tmp_path / "built-in-the-executor"
    backend = f"import os\nopen({str(marker)!r}, 'w').write(os.environ.get('WTM_API_KEY', '-'))\n"
    wheels = tmp_path / "wheelhouse"
    build_sdist(wheels, "wtm-sdist-only", "1.0", backend)
    client.register_task(
        make_task(tmp_path, "sdist_user", queue="sdistq", requirements=["wtm-sdist-only==1.0"])
    )
    child = installing_executor(cluster, wheels, "sdistq")
    try:
        failed = run(client, task="sdist_user", input={}, timeout=120)
        assert failed.state == "FAILED", failed.steps[0].error
        assert "could not install wtm-sdist-only==1.0" in failed.steps[0].error
        assert not marker.exists(), marker.read_text()
    finally:
        stop_executor(cluster, child)


def test_the_package_cache_keeps_to_its_cap_evicting_the_least_recently_used(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    digests = []
    for i in range(3):  # three packages of ~600 KB each (random bytes do not compress)
        d = make_task(tmp_path, f"bulky_{i}", queue="bulkyq")
        (d / "weights.bin").write_bytes(os.urandom(600 * 1024))
        digests.append(client.register_task(d).digest)
    child = cluster.add_executor("--queues", "bulkyq", "--cache-max-mb", "1")
    try:
        for i in range(3):
            assert run(client, task=f"bulky_{i}", input={}).state == "COMPLETED"
        packages = cluster.root / f"{child.name}-cache" / "packages"
        kept = {p.name for p in packages.iterdir() if not p.name.startswith(".")}
        # 1 MiB holds one 600 KB package: each new one evicts the one used before it.
        assert kept == {digests[2]}
        log = child.log_path.read_text()
        assert f"evicted package {digests[0]}" in log and f"evicted package {digests[1]}" in log
        # An evicted package comes back on demand.
        assert run(client, task="bulky_0", input={}).state == "COMPLETED"
    finally:
        stop_executor(cluster, child)


ARTIFACT_READER = """
import hashlib

from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        path = self.context.local_path(input_data["blob"], "blob")
        return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
"""


def test_the_artifact_cache_keeps_to_its_cap_least_recently_used_first(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """Every step's input artifacts were kept for good: a long-lived executor filled its
    volume. Over ``--artifact-cache-max-mb`` the least recently used go."""
    client.register_task(make_task(tmp_path, "artifact_reader", ARTIFACT_READER, queue="artq"))
    blobs = [os.urandom(600 * 1024) for _ in range(3)]  # random bytes do not compress
    uris = [client.upload_artifact_data(f"blob{i}.bin", b) for i, b in enumerate(blobs)]
    child = cluster.add_executor("--queues", "artq", "--artifact-cache-max-mb", "1", slots=1)
    try:
        for uri, blob in [*zip(uris, blobs, strict=True), (uris[0], blobs[0])]:
            done = run(client, task="artifact_reader", input={"blob": uri})
            assert done.state == "COMPLETED", done.steps[0].error
            assert done.output["sha256"] == hashlib.sha256(blob).hexdigest()
        cached = cluster.root / f"{child.name}-cache" / "artifacts" / "default"
        # 1 MiB holds one: each new one evicted the one before; the first came back on demand.
        assert {p.name for p in cached.iterdir()} == {parse_uri(uris[0])[0]}
    finally:
        stop_executor(cluster, child)
