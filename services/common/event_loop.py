"""The event loop an asyncio service runs on (``WTM_EVENT_LOOP``): uvloop by default.

uvloop is asyncio's loop rebuilt on libuv, in Cython; uvicorn (the gateway's server) runs on
it the same way. grpc.aio, redis-py and pymongo's async client use only the loop's public
interface (sockets, readers, timers, signals), so nothing else changes. Measured on the local
stack (2026-12-03, two stacks side by side, interleaved rounds, one on each loop): sequential
no-op runs' p50 0.92, 0.82 and 0.96 of asyncio's in three pairs; bulk runs/s 0.89, 1.04 and
0.98 (the same within the noise), with the same CPU per run. A platform without uvloop (it
has no Windows build) runs on asyncio's loop, and says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def run(main: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    """``asyncio.run(main)``, on uvloop when ``loop`` is "uvloop" and it is installed."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed here: running on asyncio's event loop")
        else:
            return uvloop.run(main)
    return asyncio.run(main)
