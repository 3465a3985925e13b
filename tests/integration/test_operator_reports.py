"""What operators ask the installation rather than one run: executors' CPU, memory and disk, the
queues with their waiting work (and the warning for work no executor takes), and whether
each service reaches its backing servers. Against the session's real stack."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.sdk import ApiError, Client
from clients.types import ExecutorInfo
from services.executor.worker_disk import usage
from services.localstack import Cluster
from tests.conftest import ROOT, keyed_channel, run_cli
from tests.integration.fake_executor import FakeExecutor
from tests.integration.test_impostors import executor_key
from tests.integration.test_registry import make_task
from tests.waiting import eventually
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import auth_service_pb2_grpc as apb_grpc
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc


def test_executors_report_cpu_and_memory_in_their_heartbeats(client: Client) -> None:
    """The stack's own executor (others connected by other tests of this session, such as
    the impostors' hand-made streams, send no vitals: CI once listed one still connected)."""

    def measured() -> list[ExecutorInfo]:
        ours = [e for e in client.list_executors() if e.executor_id == "executor-1"]
        return [e for e in ours if e.state == "CONNECTED" and e.memory_bytes > 0]

    [e] = eventually(measured, timeout=10, what="an executor heartbeat with its memory")
    # An executor with its Python and gRPC loaded holds tens of MB; CPU is a share of at
    # most every core of this machine (with its workers).
    assert 20 * 2**20 < e.memory_bytes < 8 * 2**30
    assert 0.0 <= e.cpu_percent <= 100.0 * 64


def test_executors_report_what_their_cache_holds_on_disk(
    client: Client, cluster: Cluster, tmp_path: Path
) -> None:
    """The caps on packages, input artifacts, installed requirements and workers' files keep
    an executor's cache volume from filling; its heartbeats say how full it is."""
    task = make_task(tmp_path, "disk_probe")
    (task / "weights.bin").write_bytes(os.urandom(300 * 1024))
    client.register_task(task)
    done = client.wait(client.submit(task="disk_probe", input={}).run_id, timeout=60)
    assert done.state == "COMPLETED", done.steps[0].error
    executor_id = done.steps[0].executor_id

    def reported() -> int:
        return next(e.disk_bytes for e in client.list_executors() if e.executor_id == executor_id)

    eventually(lambda: reported() >= 300 * 1024, timeout=15, what="the package in its disk use")
    # What it says is what its cache directory holds (blocks: at least the files' sizes).
    held = usage(str(cluster.root / f"{executor_id}-cache"), max_files=10**6).bytes
    assert 300 * 1024 <= reported() <= held + 2**20
    listed = json.loads(run_cli(cluster, "--json", "executor", "list").stdout)
    assert any(e["disk_bytes"] >= 300 * 1024 for e in listed)


def test_a_queue_with_work_and_no_executor_is_reported_with_its_age(
    client: Client, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "stranded_probe", queue="nobody-serves-this"))
    run = client.submit(task="stranded_probe", input={})
    time.sleep(0.3)
    queues, delayed = client.list_queues()
    by_name = {q.queue: q for q in queues}
    stranded = by_name["nobody-serves-this"]
    assert stranded.depth == 1 and stranded.executors == 0 and stranded.stranded
    assert 0.2 <= stranded.oldest_age_seconds < 60
    assert delayed >= 0
    served = by_name["default"]  # the session's executor takes from it
    assert served.executors >= 1 and not served.stranded
    client.cancel(run.run_id, "the test is over")
    eventually(
        lambda: "nobody-serves-this" not in {q.queue for q in client.list_queues()[0]},
        timeout=10,
        what="the cancelled run's step leaving its queue",
    )


def test_an_operator_pauses_a_queue_from_the_cli_and_it_is_listed_until_resumed(
    client: Client, cluster: Cluster
) -> None:
    """The CLI's pause, the queue listed as paused with no work and no executor, the resume;
    and the bad names and reasons refused naming their field. (That a paused queue's steps
    wait, on every replica: test_scheduler_durability.)"""
    try:
        shown = run_cli(cluster, "queue", "pause", "pause-probe", "--reason", "new model")
        assert "queue pause-probe paused" in shown.stdout
        [q] = [q for q in client.list_queues()[0] if q.queue == "pause-probe"]
        assert q.pause is not None and (q.pause.reason, q.depth, q.executors) == ("new model", 0, 0)
        assert q.pause.paused_at is not None
        listed = run_cli(cluster, "queue", "list").stdout
        assert "paused" in listed and "new model" in listed
        as_json = json.loads(run_cli(cluster, "--json", "queue", "list").stdout)
        [paused] = [x for x in as_json["queues"] if x["queue"] == "pause-probe"]
        assert paused["pause"]["reason"] == "new model"
    finally:
        resumed = run_cli(cluster, "queue", "resume", "pause-probe").stdout
    assert "queue pause-probe resumed" in resumed
    assert "pause-probe" not in {q.queue for q in client.list_queues()[0]}
    again = run_cli(cluster, "queue", "resume", "pause-probe").stdout
    assert "was not paused" in again
    for name, reason, code, field in (
        ("Not A Queue", "", "INVALID_ARGUMENT", "queue"),
        ("team-x/default", "", "NOT_FOUND", "queue"),
        ("pause-probe", "x" * 501, "INVALID_ARGUMENT", "reason"),
    ):
        with pytest.raises(ApiError) as err:
            client.pause_queue(name, reason)
        assert (err.value.code, err.value.field) == (code, field), err.value
    assert "pause-probe" not in {q.queue for q in client.list_queues()[0]}


def test_an_operator_pauses_the_executors_and_work_waits_until_one_is_resumed(
    client: Client, cluster: Cluster
) -> None:
    """A cordon: paused executors keep their streams and are listed paused; a run waits;
    resumed, it runs. A namespace's operator may not pause an executor every namespace
    shares; bad ids and reasons are refused naming their field."""
    client.register_task(ROOT / "tests" / "fixtures" / "tasks" / "word_count")
    live = eventually(
        lambda: [e.executor_id for e in client.list_executors() if e.state == "CONNECTED"],
        timeout=15,
        what="a connected executor",
    )
    try:
        for executor_id in live:
            client.pause_executor(executor_id, "kernel upgrade")
        run = client.submit(task="word_count", input={"text": "held back"})
        time.sleep(1.5)
        assert client.get_run(run.run_id).state == "QUEUED"
        listed = {e.executor_id: e for e in client.list_executors()}
        for executor_id in live:
            pause = listed[executor_id].pause
            assert listed[executor_id].state == "CONNECTED"
            assert pause is not None and pause.reason == "kernel upgrade" and pause.paused_at
        assert "paused" in run_cli(cluster, "executor", "list").stdout
        assert "paused by" in run_cli(cluster, "health", check=False).stdout
    finally:
        said = [run_cli(cluster, "executor", "resume", e).stdout for e in live]
    assert all("resumed" in s for s in said)
    assert client.wait(run.run_id, 30).state == "COMPLETED"
    assert all(e.pause is None for e in client.list_executors())
    _, key = client.create_api_key("team-p operator", "operator", "team-p")
    with Client(cluster.registry_address, cluster.scheduler_address, api_key=key) as theirs:
        with pytest.raises(ApiError) as err:
            theirs.pause_executor(live[0])
        assert (err.value.code, err.value.field) == ("PERMISSION_DENIED", "executor_id")
    for executor_id, reason, code, field in (
        ("no-such-executor", "", "NOT_FOUND", "executor_id"),
        ("", "", "INVALID_ARGUMENT", "executor_id"),
        (live[0], "x" * 501, "INVALID_ARGUMENT", "reason"),
    ):
        with pytest.raises(ApiError) as err:
            client.pause_executor(executor_id, reason)
        assert (err.value.code, err.value.field) == (code, field), err.value
    assert all(e.pause is None for e in client.list_executors())


def assert_every_backing_server_answers(client: Client) -> None:
    """The registry's MongoDB and S3 and the scheduler's Redis and MongoDB, each answering."""
    found = {(d.service, d.name): d for d in client.check_dependencies()}
    assert set(found) == {
        ("registry", "mongodb"),
        ("registry", "s3"),
        ("scheduler", "redis"),
        ("scheduler", "mongodb"),
    }
    for d in found.values():
        assert d.ok, d
        assert 0 < d.latency_seconds < 3


def test_each_service_reports_its_backing_servers(client: Client, cluster: Cluster) -> None:
    assert_every_backing_server_answers(client)
    # The scheduler's Redis comes with the replica's clock offset (the reaper's, each second);
    # valkey runs on this host, so it is the same clock.
    [offset] = eventually(
        lambda: [
            d.clock_offset_seconds
            for d in client.check_dependencies("scheduler")
            if d.name == "redis" and d.clock_offset_seconds is not None
        ],
        5,
        "the scheduler's clock offset",
    )
    assert offset is not None and abs(offset) < 0.25


def test_monitor_prints_a_snapshot_and_refreshes_in_place(cluster: Cluster) -> None:
    snapshot = json.loads(run_cli(cluster, "--json", "monitor").stdout)
    assert set(snapshot) == {"queues", "delayed", "executors", "runs"}
    assert any(e["memory_bytes"] > 0 for e in snapshot["executors"])
    shown = run_cli(cluster, "monitor", "--count", "2", "--interval", "0.2").stdout
    assert "Queues" in shown and "Executors" in shown and "Runs" in shown
    listed = json.loads(run_cli(cluster, "--json", "queue", "list").stdout)
    assert "default" in {q["queue"] for q in listed["queues"]}


def test_an_executor_lists_the_steps_it_runs(client: Client) -> None:
    client.register_task(Path(__file__).resolve().parents[1] / "fixtures" / "tasks" / "sleeper")
    run = client.submit(task="sleeper", input={"seconds": 3})
    member = f"{run.run_id}:sleeper"
    eventually(
        lambda: any(member in e.running_steps for e in client.list_executors()),
        timeout=10,
        what="the running step in its executor's record",
    )
    client.wait(run.run_id, timeout=30)
    eventually(
        lambda: not any(member in e.running_steps for e in client.list_executors()),
        timeout=10,
        what="the finished step gone from its executor's record",
    )


def test_every_report_is_paged(cluster: Cluster, client: Client) -> None:
    """House rule 10: every List has pages, the reports too (an executor's record is a few
    KiB, so a fleet of a thousand in one reply would pass gRPC's 4 MiB). Walked one item a
    page, each report gives what the SDK's whole list gives, in its order; a token the
    service did not make and a negative page size are INVALID_ARGUMENT naming the field; a
    size past the maximum is the maximum (AIP-158)."""
    fake = FakeExecutor(cluster, "paging-probe", ["paging-probe"], executor_key(cluster))
    client.create_api_key("paging-probe", "viewer", "default")
    everyone = Client(
        cluster.registry_address,
        cluster.scheduler_address,
        api_key=cluster.admin_key,
        namespace="*",
        tls_ca=str(cluster.ca_file),
    )
    try:
        eventually(
            lambda: "paging-probe" in {e.executor_id for e in everyone.list_executors()},
            timeout=10,
            what="the probe executor listed",
        )
        with (
            keyed_channel(cluster.scheduler_address, cluster.admin_key, "*") as sched,
            keyed_channel(cluster.registry_address, cluster.admin_key, "*") as reg,
        ):
            s, a = spb_grpc.SchedulerServiceStub(sched), apb_grpc.AuthServiceStub(reg)
            reports: list[tuple[Any, Any, str, str, list[str]]] = [
                (
                    s.ListExecutors,
                    spb.ListExecutorsRequest,
                    "executors",
                    "executor_id",
                    [e.executor_id for e in everyone.list_executors()],
                ),
                (
                    s.ListQueues,
                    spb.ListQueuesRequest,
                    "queues",
                    "queue",
                    [q.queue for q in everyone.list_queues()[0]],
                ),
                (
                    s.ListNamespaces,
                    spb.ListNamespacesRequest,
                    "namespaces",
                    "namespace",
                    [n.namespace for n in everyone.list_namespaces()],
                ),
                (
                    a.ListApiKeys,
                    apb.ListApiKeysRequest,
                    "keys",
                    "key_id",
                    [k.key_id for k in everyone.list_api_keys()],
                ),
            ]
            for method, request, field, ident, whole in reports:
                assert len(whole) >= 2, (field, whole)
                walked: list[str] = []
                token = ""
                while True:
                    reply = method(request(page_size=1, page_token=token))
                    assert len(getattr(reply, field)) == 1, field
                    walked += [getattr(item, ident) for item in getattr(reply, field)]
                    token = reply.next_page_token
                    if not token:
                        break
                assert walked == whole, field
                everything = method(request(page_size=100_000))  # more than the most: the most
                assert [getattr(i, ident) for i in getattr(everything, field)] == whole, field
                for bad, name in (
                    (request(page_token="bm90IG91cnM="), "page_token"),
                    (request(page_size=-1), "page_size"),
                ):
                    with pytest.raises(grpc.RpcError) as err:
                        method(bad)
                    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert name in (err.value.details() or ""), (field, err.value.details())
    finally:
        everyone.close()
        fake.close()
