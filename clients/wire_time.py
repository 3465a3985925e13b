"""A protobuf ``Timestamp`` field as the SDK's result types give it."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def time_of(message: Any, name: str) -> datetime | None:
    """Field ``name`` of ``message`` as a naive UTC datetime (as protobuf gives them), or None
    when it is unset."""
    return getattr(message, name).ToDatetime() if message.HasField(name) else None
