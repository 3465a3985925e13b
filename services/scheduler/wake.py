"""The wake channel's messages: "work was queued", from one scheduler process to the others.

A message is the sender's origin, then, when it knows them, the steps it queued per queue as
JSON: ``ORIGIN {"vision": 3}``. A replica that hears one asks only those queues' executors
(as many as there are steps); a bare origin (an older replica's) means "somewhere", and every
idle executor is asked. ``complete.lua`` writes the same form for the steps a result made
ready.
"""

from __future__ import annotations

import json
from collections import Counter


def message(origin: str, queued: Counter[str] | None) -> str:
    return origin if not queued else f"{origin} {json.dumps(queued)}"


def parse(data: bytes | str) -> tuple[str, Counter[str] | None]:
    """(origin, steps per queue or None when it does not say)."""
    text = data.decode() if isinstance(data, bytes) else data
    origin, _, hint = text.partition(" ")
    try:
        counts = json.loads(hint) if hint else None
        return origin, Counter({str(q): int(n) for q, n in counts.items()}) if counts else None
    except (ValueError, TypeError, AttributeError):
        return origin, None  # garbled: ask everyone
