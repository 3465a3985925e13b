"""What ``wtm`` loads to start: not the asyncio client nor OpenTelemetry's SDK unless tracing
is on (together ~120 ms of every command, 734 -> 623 ms for ``run list`` on 2026-12-07)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("clients.aio", "opentelemetry.sdk.trace", "common.telemetry", "psutil")


def _loaded(env: dict[str, str]) -> dict[str, bool]:
    code = (
        "import sys, json, clients.cli; from clients import Client; "
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_the_cli_and_the_sync_client_start_without_the_asyncio_client_or_the_tracing_sdk() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    assert not any(_loaded(env).values()), _loaded(env)


def test_the_asyncio_client_is_still_there_when_asked_for() -> None:
    from clients import AsyncClient
    from clients.aio import AsyncClient as Direct

    assert AsyncClient is Direct
