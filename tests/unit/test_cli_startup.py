"""What ``wtm`` loads to start: not OpenTelemetry's SDK (nor psutil, which its resources
load) unless tracing is on — ~100 ms of every command (``import clients.cli``, medians of 21
in four alternating rounds, 2026-12-07)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("opentelemetry.sdk.trace", "common.telemetry", "psutil")


def test_the_cli_and_the_sync_client_start_without_the_tracing_sdk() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import sys, json, clients.cli; from clients import Client; "
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout)
    assert not any(loaded.values()), loaded


def test_the_asyncio_client_is_there_as_before() -> None:
    from clients import AsyncClient
    from clients.aio import AsyncClient as Direct

    assert AsyncClient is Direct
