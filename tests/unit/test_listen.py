"""A service does not share a busy address: gRPC's SO_REUSEPORT default is off for them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from services.common.grpc_server import SERVER_OPTIONS, _listen
from services.localstack.processes import free_port


def test_a_second_server_on_a_busy_address_refuses_to_start() -> None:
    address = f"127.0.0.1:{free_port()}"
    first = grpc.server(ThreadPoolExecutor(1), options=SERVER_OPTIONS)
    second = grpc.server(ThreadPoolExecutor(1), options=SERVER_OPTIONS)
    try:
        assert _listen(first, address, None) == int(address.rsplit(":", 1)[1])
        first.start()
        with pytest.raises(SystemExit, match=f"cannot listen on {address}"):
            _listen(second, address, None)
    finally:
        first.stop(None)
        second.stop(None)
