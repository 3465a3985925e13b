"""What a call through the gate comes to, for the permission and namespace tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc


def stream(*messages: Any) -> Iterator[Any]:
    """A request stream of ``messages``."""
    yield from messages


def outcome(call: Callable[[], Any]) -> grpc.StatusCode:
    """The status ``call`` ends with (OK when it returns)."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
