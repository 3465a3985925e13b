"""``python -m services.executor``: run an executor until SIGTERM, then drain."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from common import telemetry_setup
from services.common import heap, logs
from services.common.config import load_settings
from services.executor.executor import Executor
from services.executor.settings import ExecutorSettings


async def serve(settings: ExecutorSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Executor(settings).run(stop)


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(ExecutorSettings, argv, prog="wtm-executor")
    logs.configure("executor")
    telemetry_setup.setup("wtm-executor", grpc_client="aio")
    heap.freeze_startup()
    try:
        asyncio.run(serve(settings))
    finally:
        telemetry_setup.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
