"""The asyncio services' event loop (``WTM_EVENT_LOOP``): uvloop unless asked otherwise."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import uvloop

from services.common import event_loop
from services.common.config import load_settings
from services.executor.settings import ExecutorSettings
from services.scheduler.settings import SchedulerSettings


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_the_services_run_on_uvloop_unless_told_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(SchedulerSettings, []).event_loop == "uvloop"
    monkeypatch.setenv("WTM_EVENT_LOOP", "asyncio")
    assert load_settings(ExecutorSettings, []).event_loop == "asyncio"
    assert issubclass(event_loop.run(_loop_type()), uvloop.Loop)
    ran_on = event_loop.run(_loop_type(), "asyncio")
    assert not issubclass(ran_on, uvloop.Loop)
    assert issubclass(ran_on, asyncio.BaseEventLoop)


def test_without_uvloop_the_standard_loop_runs_and_says_so() -> None:
    code = (
        "import sys, asyncio\n"
        "sys.modules['uvloop'] = None  # as where it is not installed\n"
        "from services.common import event_loop\n"
        "async def kind():\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
        "print(event_loop.run(kind()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().startswith("asyncio")
    assert "uvloop is not installed" in done.stderr
