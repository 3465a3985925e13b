"""Hostile input through a raw gRPC client, as any generated client could send it: each call
gets INVALID_ARGUMENT naming the field (never UNKNOWN, never a backend's message), and the
services keep answering."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator

import grpc
import pytest

from clients.sdk import Client
from services.localstack import Cluster
from tests.conftest import ROOT, keyed_channel
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc
from wtm.v1 import run_pb2
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc

FIXTURES = ROOT / "tests" / "fixtures" / "tasks"
DEEP = "[" * 1000 + "]" * 1000


@pytest.fixture(scope="module")
def channels(cluster: Cluster, client: Client) -> Iterator[tuple[grpc.Channel, grpc.Channel]]:
    client.register_task(FIXTURES / "word_count")
    with (
        keyed_channel(cluster.scheduler_address, cluster.admin_key) as scheduler,
        keyed_channel(cluster.registry_address, cluster.admin_key) as registry,
    ):
        yield scheduler, registry


@pytest.fixture(scope="module")
def scheduler(channels: tuple[grpc.Channel, grpc.Channel]) -> spb_grpc.SchedulerServiceStub:
    return spb_grpc.SchedulerServiceStub(channels[0])


@pytest.fixture(scope="module")
def registry(channels: tuple[grpc.Channel, grpc.Channel]) -> rpb_grpc.RegistryServiceStub:
    return rpb_grpc.RegistryServiceStub(channels[1])


def refused(
    call: object, field: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
) -> str:
    """The call fails with ``code`` and a message that names ``field``."""
    with pytest.raises(grpc.RpcError) as err:
        result = call()  # type: ignore[operator]
        if hasattr(result, "__next__"):
            list(result)
    assert err.value.code() == code, err.value.details()
    assert field in err.value.details(), err.value.details()
    return str(err.value.details())


def submit(**fields: object) -> spb.SubmitRunRequest:
    return spb.SubmitRunRequest(task="word_count", **fields)  # type: ignore[arg-type]


def test_deeply_nested_json_is_refused_with_its_limit(
    scheduler: spb_grpc.SchedulerServiceStub, registry: rpb_grpc.RegistryServiceStub
) -> None:
    message = refused(
        lambda: scheduler.SubmitRun(submit(input_json='{"a": ' + DEEP + "}"), timeout=10),
        "input_json",
    )
    assert "deeper than 64" in message
    refused(
        lambda: registry.RegisterPipelines(
            rpb.RegisterPipelinesRequest(config_json='{"pipelines": ' + DEEP + "}"), timeout=10
        ),
        "config_json",
    )


def test_nan_and_infinity_are_not_json(scheduler: spb_grpc.SchedulerServiceStub) -> None:
    for bad in ('{"text": "a", "x": NaN}', '{"text": "a", "x": -Infinity}'):
        assert "is not JSON" in refused(
            lambda bad=bad: scheduler.SubmitRun(submit(input_json=bad), timeout=10), "input_json"
        )


def test_a_lone_surrogate_is_not_text(scheduler: spb_grpc.SchedulerServiceStub) -> None:
    """Valid JSON, but half of a UTF-16 pair is no character: accepted, it made the gateway's
    runs list a 500 for the whole namespace (it cannot be written as UTF-8)."""
    for bad, where in (('{"text": "a\\ud800"}', "$.text"), ('{"\\udc00": 1}', "$ (a key)")):
        message = refused(
            lambda bad=bad: scheduler.SubmitRun(submit(input_json=bad), timeout=10), "input_json"
        )
        assert "holds a lone surrogate" in message and where in message, message
    made = scheduler.SubmitRun(submit(input_json='{"text": "\\ud83d\\ude00"}'), timeout=10)
    assert made.run.run_id  # a pair is one character: 😀


def test_invalid_utf8_in_a_string_field_is_invalid_argument(
    channels: tuple[grpc.Channel, grpc.Channel],
) -> None:
    raw = submit(input_json="{}").SerializeToString().replace(b"word_count", b"word\xff\xfeount")
    call = channels[0].unary_unary(
        "/wtm.v1.SchedulerService/SubmitRun",
        request_serializer=lambda x: x,
        response_deserializer=lambda x: x,
    )
    refused(lambda: call(raw, timeout=10), "request: cannot be parsed")


def test_an_unknown_state_and_an_impossible_time_are_named(
    scheduler: spb_grpc.SchedulerServiceStub,
) -> None:
    refused(lambda: scheduler.ListRuns(spb.ListRunsRequest(state=99), timeout=10), "state")
    request = spb.ListRunsRequest()
    request.created_after.seconds = 2**62
    refused(lambda: scheduler.ListRuns(request, timeout=10), "created_after")


def token(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def test_page_tokens_carry_only_plain_values(
    scheduler: spb_grpc.SchedulerServiceStub, registry: rpb_grpc.RegistryServiceStub
) -> None:
    for bad in ([2**70, "x"], [True, "x"], [1, {"$ne": None}], "garbage"):
        refused(
            lambda bad=bad: scheduler.ListRuns(
                spb.ListRunsRequest(page_token=token(bad)), timeout=10
            ),
            "page_token",
        )
    for bad in ([{"$ne": None}, "~"], [{"$where": "1"}, "x"], ["a", 1]):
        refused(
            lambda bad=bad: registry.ListTasks(
                rpb.ListTasksRequest(page_token=token(bad)), timeout=10
            ),
            "page_token",
        )


def test_a_malformed_event_id_is_named_and_a_finished_run_ends_its_watch_at_once(
    scheduler: spb_grpc.SchedulerServiceStub,
) -> None:
    run = scheduler.SubmitRun(
        submit(input_json='{"text": "a b"}', wait={"seconds": 30}), timeout=40
    ).run
    assert run.state == run_pb2.STATE_COMPLETED
    for bad in ("zzz", "1-2-3", "99999999999999999999999-0"):
        refused(
            lambda bad=bad: scheduler.WatchRun(
                spb.WatchRunRequest(run_id=run.run_id, after_event_id=bad), timeout=10
            ),
            "after_event_id",
        )
    events = list(scheduler.WatchRun(spb.WatchRunRequest(run_id=run.run_id), timeout=10))
    t0 = time.monotonic()
    after_last = list(
        scheduler.WatchRun(
            spb.WatchRunRequest(run_id=run.run_id, after_event_id=events[-1].event.event_id),
            timeout=10,
        )
    )
    assert after_last == []
    assert time.monotonic() - t0 < 2.0  # not the 5 s block, nor the deadline


def test_oversized_request_ids_labels_and_names_are_refused(
    scheduler: spb_grpc.SchedulerServiceStub,
) -> None:
    ok = '{"text": "a"}'
    refused(
        lambda: scheduler.SubmitRun(submit(input_json=ok, request_id="x" * (1 << 20)), timeout=10),
        "request_id",
    )
    many = {f"k{i}": "v" for i in range(10_000)}
    refused(lambda: scheduler.SubmitRun(submit(input_json=ok, labels=many), timeout=10), "labels")
    refused(
        lambda: scheduler.SubmitRun(submit(input_json=ok, labels={"k": "v" * 5000}), timeout=10),
        "labels.k",
    )
    refused(
        lambda: scheduler.SubmitRun(
            spb.SubmitRunRequest(task="t" * 100_000, input_json=ok), timeout=10
        ),
        "task",
    )


def test_a_huge_id_is_not_found_by_name_not_a_dropped_answer(
    scheduler: spb_grpc.SchedulerServiceStub, registry: rpb_grpc.RegistryServiceStub
) -> None:
    """Lookups echo the id they did not find; an id of 100,000 characters echoed whole made
    the caller's gRPC drop the answer (RESOURCE_EXHAUSTED, metadata over its hard limit)."""
    huge = "ü" * 100_000  # percent-encoded in the header: 6 bytes a character
    for call, field in [
        (lambda: scheduler.GetRun(spb.GetRunRequest(run_id=huge), timeout=10), "run_id"),
        (lambda: scheduler.CancelRun(spb.CancelRunRequest(run_id=huge), timeout=10), "run_id"),
        (lambda: scheduler.WatchRun(spb.WatchRunRequest(run_id=huge), timeout=10), "run_id"),
        (lambda: registry.GetTask(rpb.GetTaskRequest(task_id=huge), timeout=10), "task_id"),
        (
            lambda: registry.GetPipeline(rpb.GetPipelineRequest(pipeline_id=huge), timeout=10),
            "pipeline_id",
        ),
    ]:
        message = refused(call, field, grpc.StatusCode.NOT_FOUND)
        assert message.startswith(f"{field}: ") and "characters in all" in message, message[:200]
        assert len(message) < 1100
    uri = registry.DownloadArtifact(rpb.DownloadArtifactRequest(uri=huge), timeout=10)
    assert "characters in all" in refused(lambda: uri, "uri")


def test_a_huge_task_manifest_is_refused_and_listing_keeps_working(
    client: Client, registry: rpb_grpc.RegistryServiceStub, tmp_path: object
) -> None:
    from pathlib import Path

    d = Path(str(tmp_path)) / "huge"
    d.mkdir()
    (d / "task.py").write_text("")
    doc = {"task_id": "huge", "version": "1.0.0", "description": secrets.token_hex(100_000)}
    (d / "task.json").write_text(json.dumps(doc))
    with pytest.raises(Exception, match="task.json: is over 65536 bytes"):
        client.register_task(d)
    assert registry.ListTasks(rpb.ListTasksRequest(), timeout=10).tasks


def test_a_dry_run_says_it_stored_nothing(registry: rpb_grpc.RegistryServiceStub) -> None:
    config = {"pipeline_id": "dry_run_probe", "steps": [{"task_id": "word_count"}]}
    reply = registry.RegisterPipelines(
        rpb.RegisterPipelinesRequest(config_json=json.dumps(config), validate_only=True),
        timeout=10,
    )
    assert list(reply.created) == [False] and list(reply.registered_before) == [False]
    refused(
        lambda: registry.GetPipeline(
            rpb.GetPipelineRequest(pipeline_id="dry_run_probe"), timeout=10
        ),
        "pipeline_id",
        grpc.StatusCode.NOT_FOUND,
    )


def test_a_pipeline_over_the_step_limit_and_a_long_mapping_are_refused(
    registry: rpb_grpc.RegistryServiceStub,
) -> None:
    steps = [{"step_id": f"s{i}", "task_id": "word_count"} for i in range(501)]
    refused(
        lambda: registry.RegisterPipelines(
            rpb.RegisterPipelinesRequest(
                config_json=json.dumps({"pipeline_id": "too_long", "steps": steps})
            ),
            timeout=10,
        ),
        "pipeline.steps",
    )
    mapping = {"text": "$.text" + "[*]" * 600}
    refused(
        lambda: registry.RegisterPipelines(
            rpb.RegisterPipelinesRequest(
                config_json=json.dumps(
                    {
                        "pipeline_id": "star_bomb",
                        "steps": [{"task_id": "word_count", "input_mapping": mapping}],
                    }
                )
            ),
            timeout=10,
        ),
        "input_mapping.text",
    )


def test_a_500_step_chain_registers_and_runs(
    client: Client, registry: rpb_grpc.RegistryServiceStub
) -> None:
    """The deepest pipeline allowed: validated without recursion, pinned with one lookup
    per task, and run to the end."""
    steps = [{"step_id": "s0", "task_id": "word_count", "input_mapping": {"text": "$.text"}}]
    steps += [
        {
            "step_id": f"s{i}",
            "task_id": "word_count",
            "depends_on": [f"s{i - 1}"],
            "input_mapping": {"text": "$.text"},
        }
        for i in range(1, 500)
    ]
    steps.reverse()  # listed last step first
    t0 = time.monotonic()
    registry.RegisterPipelines(
        rpb.RegisterPipelinesRequest(
            config_json=json.dumps({"pipeline_id": "chain", "steps": steps})
        ),
        timeout=60,
    )
    assert time.monotonic() - t0 < 30
    done = client.run(pipeline="chain", input={"text": "a b c"}, timeout=300)
    assert done.state == "COMPLETED"
    assert done.output == {"words": ["a", "b", "c"], "count": 3}
    assert len(done.steps) == 500 and all(s.state == "COMPLETED" for s in done.steps)


def test_a_step_that_times_out_ends_its_run_timed_out(client: Client) -> None:
    client.register_task(FIXTURES / "sleeper")
    # sleeper's own timeout is 30 s; a pipeline step sets a shorter one.
    config = {
        "pipeline_id": "times_out",
        "steps": [{"task_id": "sleeper", "timeout": 1, "retry_count": 0}],
    }
    client.register_pipelines(config)
    done = client.wait(client.submit(pipeline="times_out", input={"seconds": 10}).run_id, 60)
    assert done.state == "TIMED_OUT", (done.state, done.error)
    assert done.steps[0].state == "TIMED_OUT"


def test_list_runs_shows_a_run_while_it_runs(client: Client) -> None:
    run = client.submit(task="sleeper", input={"seconds": 6})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            running = [r.run_id for r in client.list_runs(state="RUNNING", limit=200)]
            if run.run_id in running:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("ListRuns never showed the run RUNNING")
    finally:
        client.cancel(run.run_id)
    assert client.wait(run.run_id, 30).state == "CANCELLED"
    deadline = time.monotonic() + 10
    while run.run_id not in [r.run_id for r in client.list_runs(state="CANCELLED", limit=200)]:
        assert time.monotonic() < deadline, "the end never reached the history"
        time.sleep(0.1)


def test_the_services_still_answer(client: Client) -> None:
    assert client.run(task="word_count", input={"text": "still up"}).state == "COMPLETED"
