"""One task, end to end: registry (MongoDB + S3), scheduler (Redis), executor (gRPC stream)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pymongo
import pytest

from clients.sdk import ApiError, Client
from common.packaging import pack_directory
from services.common.backends import s3_client
from services.localstack import Cluster
from tests.conftest import EXAMPLES, keyed_channel
from tests.waiting import eventually


@pytest.fixture(scope="module")
def db(cluster: Cluster):  # noqa: ANN201
    assert cluster.endpoints is not None
    with pymongo.MongoClient(cluster.endpoints.mongodb_uri) as mongo_client:
        yield mongo_client["wtm"]


@pytest.fixture(scope="module")
def sentiment(client: Client):  # noqa: ANN201
    return client.register_task(EXAMPLES / "text_sentiment")


def test_registering_stores_the_package_by_digest_and_the_metadata(
    cluster: Cluster, db, sentiment
) -> None:  # noqa: ANN001
    assert cluster.endpoints is not None
    e = cluster.endpoints
    response = s3_client(e.s3_endpoint, e.s3_access_key, e.s3_secret_key).get_object(
        "wtm-packages", f"sha256/{sentiment.digest}.tar.gz"
    )
    try:
        stored = response.read()
    finally:
        response.close()
        response.release_conn()
    assert stored == pack_directory(EXAMPLES / "text_sentiment")
    doc = db.tasks.find_one({"task_id": "text_sentiment", "version": "1.0.0"})
    assert doc["digest"] == sentiment.digest
    assert json.loads(doc["manifest_json"])["category"] == "nlp"


def test_registering_the_same_bytes_again_is_idempotent(client: Client, sentiment) -> None:  # noqa: ANN001
    again = client.register_task(EXAMPLES / "text_sentiment")
    assert (again.digest, again.created) == (sentiment.digest, False)


def test_the_same_version_with_other_content_is_refused(
    client: Client, sentiment, tmp_path: Path
) -> None:  # noqa: ANN001
    changed = shutil.copytree(EXAMPLES / "text_sentiment", tmp_path / "t")
    (changed / "task.py").write_text((changed / "task.py").read_text() + "\n# changed\n")
    with pytest.raises(ApiError) as err:
        client.register_task(changed)
    assert err.value.code == "ALREADY_EXISTS"
    assert "task.json: version" in err.value.message


def test_garbage_is_refused_naming_the_package(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.upload_package(b"definitely not a tarball")
    assert err.value.code == "INVALID_ARGUMENT"
    assert "package" in err.value.message


def test_an_unknown_task_is_not_found(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.get_task("no_such_task")
    assert (err.value.code, "task_id" in err.value.message) == ("NOT_FOUND", True)


def test_a_one_step_run_completes_with_its_output(client: Client, sentiment) -> None:  # noqa: ANN001
    run = client.submit(task="text_sentiment", input={"text": "I love it, it is wonderful"})
    assert run.state == "QUEUED"
    done = client.wait(run.run_id, timeout=60)
    assert done.state == "COMPLETED", done.error
    assert done.output["sentiment"] == "positive"
    [step] = done.steps
    assert (step.state, step.attempt, step.executor_id) == ("COMPLETED", 1, "executor-1")
    assert step.task_version == sentiment.version


def test_the_finished_run_is_recorded_in_mongodb(db, client: Client, sentiment) -> None:  # noqa: ANN001
    run = client.submit(task="text_sentiment", input={"text": "terrible and slow"})
    client.wait(run.run_id, timeout=60)
    doc = eventually(lambda: db.runs.find_one({"run_id": run.run_id, "state": "COMPLETED"}))
    assert json.loads(doc["output_json"])["sentiment"] == "negative"
    step = eventually(lambda: db.step_runs.find_one({"run_id": run.run_id}))
    assert (step["state"], step["attempt"], step["executor_id"]) == ("COMPLETED", 1, "executor-1")


def test_watching_shows_the_life_of_the_run_in_order(client: Client, sentiment) -> None:  # noqa: ANN001
    run = client.submit(task="text_sentiment", input={"text": "fine"})
    events = [
        (e.step_id, e.state) for e in client.watch(run.run_id, timeout=60) if e.kind == "STATE"
    ]
    assert events == [
        ("", "QUEUED"),
        ("text_sentiment", "QUEUED"),
        ("", "RUNNING"),
        ("text_sentiment", "RUNNING"),
        ("text_sentiment", "COMPLETED"),
        ("", "COMPLETED"),
    ]


def test_a_watch_resumes_after_the_last_event_seen(client: Client, sentiment) -> None:  # noqa: ANN001
    run = client.submit(task="text_sentiment", input={"text": "fine"})
    everything = list(client.watch(run.run_id, timeout=60))
    rest = list(client.watch(run.run_id, after_event_id=everything[2].event_id, timeout=60))
    assert [e.event_id for e in rest] == [e.event_id for e in everything[3:]]


def test_input_that_does_not_fit_the_tasks_schema_is_refused_at_submit(
    client: Client, sentiment
) -> None:  # noqa: ANN001
    with pytest.raises(ApiError) as err:
        client.submit(task="text_sentiment", input={"body": "no text field"})
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.message.startswith("input_json:") and "'text'" in err.value.message


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"task": "no_such_task"}, "NOT_FOUND", "task"),
        ({"task": "text_sentiment", "priority": 11}, "INVALID_ARGUMENT", "priority"),
        ({}, "INVALID_ARGUMENT", "task"),
    ],
)
def test_bad_submissions_are_refused_naming_the_field(
    client: Client, sentiment, kwargs, code, field
) -> None:  # noqa: ANN001
    with pytest.raises(ApiError) as err:
        client.submit(**kwargs)
    assert err.value.code == code
    assert err.value.message.startswith(f"{field}:")
    assert err.value.message.count(":") == 1  # one field named, once


def test_an_unknown_task_is_named_once(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(task="no_such_task@2.0.0")
    assert (err.value.code, err.value.message) == (
        "NOT_FOUND",
        "task: no task no_such_task@2.0.0 is registered",
    )


def test_input_that_is_not_a_json_object_is_refused(cluster: Cluster, sentiment) -> None:  # noqa: ANN001
    import grpc

    from wtm.v1 import scheduler_service_pb2 as spb
    from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc

    with (
        keyed_channel(cluster.scheduler_address, cluster.admin_key) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        spb_grpc.SchedulerServiceStub(channel).SubmitRun(
            spb.SubmitRunRequest(task="text_sentiment", input_json="[1, 2"), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input_json" in err.value.details()


def test_the_same_request_id_gives_the_same_run(client: Client, sentiment) -> None:  # noqa: ANN001
    first = client.submit(task="text_sentiment", input={"text": "ok"}, request_id="once-only")
    second = client.submit(task="text_sentiment", input={"text": "ok"}, request_id="once-only")
    assert second.run_id == first.run_id


def grpcurl(*args: str) -> str:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"
    result = subprocess.run(
        [binary, "-cacert", os.environ["WTM_TLS_CA"], *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_each_service_and_health(cluster: Cluster) -> None:
    registry = grpcurl(cluster.registry_address, "list").split()
    scheduler = grpcurl(cluster.scheduler_address, "list").split()
    assert {"wtm.v1.RegistryService", "grpc.health.v1.Health"} <= set(registry)
    served = {"wtm.v1.SchedulerService", "wtm.v1.ExecutorService", "wtm.v1.ScheduleService"}
    assert served | {"grpc.health.v1.Health"} <= set(scheduler)


def test_grpcurl_can_call_an_rpc_from_reflection_alone(cluster: Cluster, sentiment) -> None:  # noqa: ANN001
    out = grpcurl(
        "-H",
        f"authorization: Bearer {cluster.admin_key}",  # as the README shows
        "-d",
        '{"task_id": "text_sentiment"}',
        cluster.registry_address,
        "wtm.v1.RegistryService/GetTask",
    )
    assert json.loads(out)["task"]["digest"] == sentiment.digest


def test_grpcurl_runs_a_run_again_in_one_call(cluster: Cluster, sentiment) -> None:  # noqa: ANN001
    """RerunRun, as the README shows it: what the SDK's rerun does, from reflection alone."""
    auth = f"authorization: Bearer {cluster.admin_key}"
    asked = {"task": "text_sentiment", "input_json": '{"text": "great"}', "wait": "30s"}
    first = json.loads(
        grpcurl(
            "-H",
            auth,
            "-d",
            json.dumps(asked),
            cluster.scheduler_address,
            "wtm.v1.SchedulerService/SubmitRun",
        )
    )["run"]
    again = json.loads(
        grpcurl(
            "-H",
            auth,
            "-d",
            json.dumps({"run_id": first["run_id"]}),
            cluster.scheduler_address,
            "wtm.v1.SchedulerService/RerunRun",
        )
    )["run"]
    assert again["run_id"] != first["run_id"] and again["input_json"] == first["input_json"]
    assert again["labels"] == {"wtm.rerun_of": first["run_id"]}
