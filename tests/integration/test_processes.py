"""Services start from one command, stop cleanly on SIGTERM, and leave nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.localstack import Cluster
from services.localstack.cluster import serving
from services.localstack.processes import free_port, wait_until
from tests.conftest import ROOT


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped; /proc says so.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("module", ["services.registry", "services.scheduler"])
def test_a_service_stops_cleanly_on_sigterm(cluster: Cluster, module: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    with subprocess.Popen(
        [sys.executable, "-m", module, "--listen", address],
        env={**os.environ, **cluster.env()},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as proc:
        try:
            wait_until(module, lambda: serving(address), timeout=30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            assert b"stopped" in proc.stdout.read()  # type: ignore[union-attr]
        finally:
            if proc.poll() is None:
                proc.kill()


def test_an_executor_drains_and_exits_on_sigterm(cluster: Cluster) -> None:
    child = cluster.add_executor("--drain-seconds", "5")
    wait_until("executor", lambda: "connected to" in child.log_path.read_text(), child, timeout=30)
    child.proc.send_signal(signal.SIGTERM)
    assert child.proc.wait(15) == 0
    cluster.executors.remove(child)
    cluster.services.children.remove(child)


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("services.scheduler", ["--lease-seconds", "soon"], "--lease-seconds / WTM_LEASE_SECONDS"),
        ("services.registry", ["--listen", "nowhere"], "--listen / WTM_REGISTRY_LISTEN"),
        ("services.executor", ["--slots", "0"], "--slots / WTM_EXECUTOR_SLOTS"),
    ],
)
def test_a_bad_setting_exits_with_a_message_naming_it(
    module: str, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_killing_the_stack_command_leaves_no_server_running(tmp_path: Path) -> None:
    root = tmp_path / "stack"
    errors = tmp_path / "stack-up.err"
    with (
        errors.open("w") as err,
        subprocess.Popen(
            [sys.executable, "-m", "clients.cli", "stack", "up", "--dir", str(root)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        ) as proc,
    ):
        try:
            first = proc.stdout.readline()  # type: ignore[union-attr]
            assert "WTM_REGISTRY_ADDR" in first, errors.read_text()[-3000:]
            recorded: dict[str, int] = json.loads((root / "cluster.json").read_text())["pids"]
            pids = list(recorded.values())
            assert {
                "valkey",
                "nx-27017",
                "seaweedfs",
                "registry",
                "scheduler",
                "executor-1",
            } <= set(recorded)
            assert all(alive(pid) for pid in pids)
        finally:
            proc.kill()  # SIGKILL: no cleanup code of ours runs
    # Each server stops on its parent-death signal, as on SIGTERM: gracefully, within its
    # grace periods (a server whose backing servers went at the same moment waits out a
    # timeout or two; on a slow machine that once took over 15 s).
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    lingering = {name: pid for name, pid in recorded.items() if alive(pid)}
    assert not lingering, f"still running 30 s after the stack command was killed: {lingering}"


@pytest.mark.slow
def test_the_readmes_first_command_runs_the_face_pipeline(tmp_path: Path) -> None:
    """``make demo`` is ``python -m clients.cli demo``: the whole stack, TLS and auth on,
    from nothing to the printed result, and everything stopped after."""
    result = subprocess.run(
        [sys.executable, "-m", "clients.cli", "demo", "--dir", str(tmp_path / "demo")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "COMPLETED" in result.stdout and "face(s) in a 512x512 image" in result.stdout
    assert "landmarks: right_eye" in result.stdout and "embedding 128-D" in result.stdout
    assert "age: unavailable" in result.stdout and "gender: unavailable" in result.stdout
    assert "output_001_faces_array -> input_002_faces_array" in result.stdout
    # How the executor confined the task code, as it says (root here: isolated).
    confined = "isolated: its own uid" if os.geteuid() == 0 else "with resource limits only"
    assert f"executor-1 ran the task code {confined}" in result.stdout
    # The dashboard's address, and the run made, as the dashboard's own API reports it.
    assert re.search(
        r"Dashboard https://127\.0\.0\.1:\d+/#/runs/\w+ \(it shows this run: COMPLETED\)",
        result.stdout,
    )
    assert "Stopped everything." in result.stdout
