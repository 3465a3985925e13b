"""How several assignments (down) or results (up) share one message of an executor's stream
(``StepAssignments``, ``StepResults``; issue 18).

Nothing waits for a group to fill: a message carries what was already queued behind its
first item when the stream was free to write, up to MESSAGE_ITEMS items or MESSAGE_BYTES of
inline documents. Inline documents are at most 256 KiB each (``common.refs``), so a message
stays far below the 4 MiB a gRPC client receives by default and the 8 MiB the scheduler does.
The group stops at the first item of another kind, or one that would not fit; that item is
sent next, so the stream's order is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

MESSAGE_ITEMS = 64
MESSAGE_BYTES = 1024 * 1024

T = TypeVar("T")


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


NOTHING = _Nothing()  # what ``gather`` carries when the queue ran dry


def gather(
    first: T, queue: asyncio.Queue[Any], joins: Callable[[Any], T | None], size: Callable[[T], int]
) -> tuple[list[T], Any]:
    """``first`` and the items queued right behind it that ``joins`` accepts (it returns
    what goes in the group, or None for an item of another kind), within a message's worth
    by ``size`` (bytes of inline documents). Returns the group and the item that stopped it,
    to be sent next (``NOTHING`` when the queue ran dry)."""
    group, used = [first], size(first)
    while not queue.empty():
        item = queue.get_nowait()
        member = joins(item)
        if member is None or len(group) >= MESSAGE_ITEMS or used + size(member) > MESSAGE_BYTES:
            return group, item
        group.append(member)
        used += size(member)
    return group, NOTHING
