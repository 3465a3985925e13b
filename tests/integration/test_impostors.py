"""Impostor executors: a second stream claiming a live executor's id is refused, a result
from anyone but the executor holding the step's lease does not count, and the stream needs
the executors' client certificate (mTLS) as well as an executor key. The impostors here hold
both (stolen, say) unless a test says otherwise."""

from __future__ import annotations

import time

import grpc
import pymongo
import pytest

from clients.sdk import Client
from services.localstack import Cluster
from tests.conftest import ROOT
from tests.integration.fake_executor import FakeExecutor
from wtm.v1 import executor_service_pb2 as epb

FIXTURES = ROOT / "tests" / "fixtures" / "tasks"


def executor_key(cluster: Cluster) -> str:
    return cluster.key_files["executor"].read_text()


def wait_for_error(fake: FakeExecutor) -> grpc.RpcError:
    deadline = time.monotonic() + 10
    while fake.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.error is not None
    return fake.error


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    client.register_task(FIXTURES / "sleeper")


def test_a_second_stream_with_a_live_executors_id_is_refused(
    cluster: Cluster, client: Client
) -> None:
    live = cluster.executors[0].name  # the session's executor, heartbeating
    deadline = time.monotonic() + 30  # connected by now (it may be a fresh stack)
    while live not in {e.executor_id for e in client.list_executors() if e.state == "CONNECTED"}:
        assert time.monotonic() < deadline, f"{live} never connected"
        time.sleep(0.1)
    fake = FakeExecutor(cluster, live, ["default"], executor_key(cluster))
    try:
        error = wait_for_error(fake)
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "hello.executor_id" in (error.details() or "")
        assert not [m for m in fake.received if m.HasField("assignment")]
    finally:
        fake.close()


def test_a_forged_result_for_another_executors_step_does_not_count(
    cluster: Cluster, client: Client
) -> None:
    fake = FakeExecutor(  # a valid executor key, but no work on its queue
        cluster, "impostor", ["impostorq"], executor_key(cluster)
    )
    try:
        run = client.submit(task="sleeper", input={"seconds": 2})
        deadline = time.monotonic() + 30
        while (step := client.get_run(run.run_id).steps[0]).state != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ref = epb.StepAttemptRef(run_id=run.run_id, step_id=step.step_id, attempt=step.attempt)
        fake.send(
            epb.ConnectRequest(
                result=epb.StepResult(
                    ref=ref,
                    outcome=epb.StepOutcome.STEP_OUTCOME_SUCCEEDED,
                    output_json='{"forged": true}',
                )
            )
        )
        done = client.wait(run.run_id, timeout=60)
        assert done.state == "COMPLETED"
        assert done.output == {"slept": 2}  # the real executor's result, not the forgery
        assert done.steps[0].executor_id != "impostor"
        with pymongo.MongoClient(cluster.endpoints.mongodb_uri) as mongo:  # type: ignore[union-attr]
            deadline = time.monotonic() + 10  # the history is written behind
            while not (records := list(mongo["wtm"]["step_runs"].find({"run_id": run.run_id}))):
                assert time.monotonic() < deadline, "no attempt record"
                time.sleep(0.1)
            time.sleep(0.5)  # and a forged one would have been written by now too
            records = list(mongo["wtm"]["step_runs"].find({"run_id": run.run_id}))
        assert not [d for d in records if "forged" in (d.get("output_json") or "")], records
        assert fake.error is None  # the impostor's stream itself is not the issue here
    finally:
        fake.close()


def test_a_client_key_cannot_open_the_executor_stream(cluster: Cluster) -> None:
    fake = FakeExecutor(cluster, "client-posing", ["default"], cluster.admin_key)
    try:
        error = wait_for_error(fake)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert not [m for m in fake.received if m.HasField("assignment")]
    finally:
        fake.close()


def test_an_executor_key_without_the_client_certificate_gets_no_stream(
    cluster: Cluster,
) -> None:
    """On the executors' listener the TLS handshake itself fails; on the clients' listener
    the stream is refused, naming what is missing."""
    for address, code in (
        (cluster.executor_address, grpc.StatusCode.UNAVAILABLE),
        (cluster.scheduler_address, grpc.StatusCode.UNAUTHENTICATED),
    ):
        fake = FakeExecutor(cluster, "no-cert", ["default"], executor_key(cluster), False, address)
        try:
            error = wait_for_error(fake)
            assert error.code() == code, (address, error)
            if code == grpc.StatusCode.UNAUTHENTICATED:
                assert "client certificate" in (error.details() or "")
            assert not [m for m in fake.received if m.HasField("assignment")]
        finally:
            fake.close()
