"""How exceptions from domain code become gRPC statuses (services/common/grpc_server)."""

from __future__ import annotations

import grpc
import pymongo.errors
import pytest
import redis.exceptions

from common.errors import InvalidArgument, NotFound
from services.common.grpc_server import status_for


def test_domain_errors_keep_their_code_and_name_the_field() -> None:
    assert status_for(InvalidArgument("must be a JSON object", field="input_json")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input_json: must be a JSON object",
    )
    assert status_for(NotFound("no run r1", field="run_id"))[0] == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.ConnectionError("Connection closed by server."),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        pymongo.errors.ServerSelectionTimeoutError("127.0.0.1:27017: connection refused"),
        pymongo.errors.AutoReconnect("connection reset"),
    ],
)
def test_a_backing_service_out_of_reach_is_unavailable(exc: Exception) -> None:
    code, message = status_for(exc)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert type(exc).__name__ in message and "try again" in message


def test_an_unexpected_error_is_internal_with_an_id_the_log_also_has(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "redis://:hunter2@10.0.0.5:6379 said: WRONGTYPE"
    code, message = status_for(RuntimeError(secret))
    assert code == grpc.StatusCode.INTERNAL
    error_id = message.split()[2].rstrip(":")
    assert len(error_id) == 12 and secret not in message  # the backend's text stays inside
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)
