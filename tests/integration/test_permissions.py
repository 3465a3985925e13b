"""Who may call what, on the real stack: every RPC × every role,
and keys that are missing, wrong, revoked or expired. The expectation comes from the one
permission table; a call the role may make must get past the gate (whatever the domain then
answers), any other must be PERMISSION_DENIED. What another namespace finds of one:
test_namespace_isolation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from clients.sdk import ApiError, Client
from common import tls
from services.common.auth import METHOD_PERMISSIONS, ROLE_PERMISSIONS, Role
from services.localstack import Cluster
from tests.conftest import ROOT, keyed_channel
from tests.integration.gate import outcome, stream
from wtm.v1 import auth_service_pb2 as apb
from wtm.v1 import auth_service_pb2_grpc as apb_grpc
from wtm.v1 import executor_service_pb2 as epb
from wtm.v1 import executor_service_pb2_grpc as epb_grpc
from wtm.v1 import registry_service_pb2 as rpb
from wtm.v1 import registry_service_pb2_grpc as rpb_grpc
from wtm.v1 import schedule_service_pb2 as schpb
from wtm.v1 import schedule_service_pb2_grpc as schpb_grpc
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc

FIXTURES = ROOT / "tests" / "fixtures" / "tasks"
GATE_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


@pytest.fixture(scope="module")
def keys(client: Client) -> dict[str, str]:
    """A key per role, plus a revoked one and one that has expired."""
    made = {
        role.value: client.create_api_key(f"matrix {role}", role, "default")[1] for role in Role
    }
    revoked, made["revoked"] = client.create_api_key("matrix revoked", "viewer", "default")
    client.revoke_api_key(revoked.key_id)
    made["expired"] = client.create_api_key("matrix expired", "viewer", "default", 0.5)[1]
    made["wrong"] = made["viewer"][:-4] + "AAAA"  # a real key id, not its secret
    made["garbage"] = "not-a-key"
    time.sleep(1.0)  # past the expiry and the services' key cache
    return made


def calls(
    registry: grpc.Channel, scheduler: grpc.Channel, executors: grpc.Channel | None = None
) -> dict[str, Callable[[], Any]]:
    """One harmless call per RPC: each would fail in the domain (not found, invalid) if it
    got past the gate, so nothing changes whoever makes it. The executor stream goes to
    the executors' listener (``executors``: with the client certificate)."""
    r, a = rpb_grpc.RegistryServiceStub(registry), apb_grpc.AuthServiceStub(registry)
    s = spb_grpc.SchedulerServiceStub(scheduler)
    sch = schpb_grpc.ScheduleServiceStub(scheduler)
    e = epb_grpc.ExecutorServiceStub(executors or scheduler)
    missing = "no_such_task"
    return {
        "/wtm.v1.RegistryService/UploadTaskPackage": lambda: r.UploadTaskPackage(stream()),
        "/wtm.v1.RegistryService/GetTask": lambda: r.GetTask(rpb.GetTaskRequest(task_id=missing)),
        "/wtm.v1.RegistryService/ListTasks": lambda: r.ListTasks(rpb.ListTasksRequest()),
        "/wtm.v1.RegistryService/DownloadTaskPackage": lambda: list(
            r.DownloadTaskPackage(rpb.DownloadTaskPackageRequest(digest="0" * 64))
        ),
        "/wtm.v1.RegistryService/DeprecateTask": lambda: r.DeprecateTask(
            rpb.DeprecateTaskRequest(task_id=missing, version="1.0.0")
        ),
        "/wtm.v1.RegistryService/ShareTask": lambda: r.ShareTask(
            rpb.ShareTaskRequest(task_id=missing, shared=True)
        ),
        "/wtm.v1.RegistryService/RegisterPipelines": lambda: r.RegisterPipelines(
            rpb.RegisterPipelinesRequest(config_json="[]", validate_only=True)
        ),
        "/wtm.v1.RegistryService/GetPipeline": lambda: r.GetPipeline(
            rpb.GetPipelineRequest(pipeline_id=missing)
        ),
        "/wtm.v1.RegistryService/ListPipelines": lambda: r.ListPipelines(
            rpb.ListPipelinesRequest()
        ),
        "/wtm.v1.RegistryService/UploadArtifact": lambda: r.UploadArtifact(stream()),
        "/wtm.v1.RegistryService/DownloadArtifact": lambda: list(
            r.DownloadArtifact(rpb.DownloadArtifactRequest(uri="artifact://nope"))
        ),
        "/wtm.v1.RegistryService/ListArtifacts": lambda: r.ListArtifacts(
            rpb.ListArtifactsRequest(page_size=1)
        ),
        "/wtm.v1.RegistryService/DeleteArtifacts": lambda: r.DeleteArtifacts(
            rpb.DeleteArtifactsRequest(digests=["not-a-digest"])
        ),
        "/wtm.v1.SchedulerService/SubmitRun": lambda: s.SubmitRun(
            spb.SubmitRunRequest(task=missing)
        ),
        "/wtm.v1.SchedulerService/SubmitRuns": lambda: s.SubmitRuns(
            spb.SubmitRunsRequest(task=missing, inputs_json=["{}"])
        ),
        "/wtm.v1.SchedulerService/GetRun": lambda: s.GetRun(spb.GetRunRequest(run_id="nope")),
        "/wtm.v1.SchedulerService/WatchRun": lambda: list(
            s.WatchRun(spb.WatchRunRequest(run_id="nope"))
        ),
        "/wtm.v1.SchedulerService/CancelRun": lambda: s.CancelRun(
            spb.CancelRunRequest(run_id="nope")
        ),
        "/wtm.v1.SchedulerService/CancelRuns": lambda: s.CancelRuns(
            spb.CancelRunsRequest(batch_id="nope")
        ),
        "/wtm.v1.SchedulerService/ResumeRuns": lambda: s.ResumeRuns(
            spb.ResumeRunsRequest(batch_id="nope")
        ),
        "/wtm.v1.SchedulerService/RerunRun": lambda: s.RerunRun(spb.RerunRunRequest(run_id="nope")),
        "/wtm.v1.SchedulerService/SignalRun": lambda: s.SignalRun(
            spb.SignalRunRequest(run_id="nope", step_id="a")
        ),
        "/wtm.v1.SchedulerService/SignalRuns": lambda: s.SignalRuns(
            spb.SignalRunsRequest(batch_id="nope", step_id="a")
        ),
        "/wtm.v1.SchedulerService/ListRuns": lambda: s.ListRuns(spb.ListRunsRequest(page_size=1)),
        "/wtm.v1.SchedulerService/ListExecutors": lambda: s.ListExecutors(
            spb.ListExecutorsRequest()
        ),
        "/wtm.v1.SchedulerService/ListQueues": lambda: s.ListQueues(spb.ListQueuesRequest()),
        "/wtm.v1.SchedulerService/ListNamespaces": lambda: s.ListNamespaces(
            spb.ListNamespacesRequest()
        ),
        "/wtm.v1.SchedulerService/UpdateNamespace": lambda: s.UpdateNamespace(
            spb.UpdateNamespaceRequest(weight=1000)  # out of range: INVALID_ARGUMENT
        ),
        "/wtm.v1.SchedulerService/PauseQueue": lambda: s.PauseQueue(
            spb.PauseQueueRequest(queue="Not A Queue")  # INVALID_ARGUMENT: nothing paused
        ),
        "/wtm.v1.SchedulerService/ResumeQueue": lambda: s.ResumeQueue(
            spb.ResumeQueueRequest(queue="Not A Queue")
        ),
        "/wtm.v1.SchedulerService/SetTaskLimits": lambda: s.SetTaskLimits(
            spb.SetTaskLimitsRequest(task_id="Not A Task")  # INVALID_ARGUMENT: nothing set
        ),
        "/wtm.v1.SchedulerService/ListTaskLimits": lambda: s.ListTaskLimits(
            spb.ListTaskLimitsRequest()
        ),
        "/wtm.v1.SchedulerService/PauseExecutor": lambda: s.PauseExecutor(
            spb.PauseExecutorRequest(executor_id="")  # INVALID_ARGUMENT: nothing paused
        ),
        "/wtm.v1.SchedulerService/ResumeExecutor": lambda: s.ResumeExecutor(
            spb.ResumeExecutorRequest(executor_id="")
        ),
        "/wtm.v1.SchedulerService/CheckDependencies": lambda: s.CheckDependencies(
            spb.SchedulerServiceCheckDependenciesRequest()
        ),
        "/wtm.v1.RegistryService/CheckDependencies": lambda: r.CheckDependencies(
            rpb.RegistryServiceCheckDependenciesRequest()
        ),
        "/wtm.v1.ScheduleService/CreateSchedule": lambda: sch.CreateSchedule(
            schpb.CreateScheduleRequest(schedule=schpb.Schedule(schedule_id="x", task=missing))
        ),  # no cron, no interval: INVALID_ARGUMENT
        "/wtm.v1.ScheduleService/GetSchedule": lambda: sch.GetSchedule(
            schpb.GetScheduleRequest(schedule_id="nope")
        ),
        "/wtm.v1.ScheduleService/ListSchedules": lambda: sch.ListSchedules(
            schpb.ListSchedulesRequest(page_size=1)
        ),
        "/wtm.v1.ScheduleService/PauseSchedule": lambda: sch.PauseSchedule(
            schpb.PauseScheduleRequest(schedule_id="nope")
        ),
        "/wtm.v1.ScheduleService/ResumeSchedule": lambda: sch.ResumeSchedule(
            schpb.ResumeScheduleRequest(schedule_id="nope")
        ),
        "/wtm.v1.ScheduleService/DeleteSchedule": lambda: sch.DeleteSchedule(
            schpb.DeleteScheduleRequest(schedule_id="nope")
        ),
        "/wtm.v1.ScheduleService/TriggerSchedule": lambda: sch.TriggerSchedule(
            schpb.TriggerScheduleRequest(schedule_id="nope")
        ),
        "/wtm.v1.ScheduleService/BackfillSchedule": lambda: sch.BackfillSchedule(
            schpb.BackfillScheduleRequest(schedule_id="nope")
        ),
        "/wtm.v1.ScheduleService/CancelBackfill": lambda: sch.CancelBackfill(
            schpb.CancelBackfillRequest(schedule_id="nope")
        ),
        "/wtm.v1.ExecutorService/Connect": lambda: list(
            e.Connect(stream(epb.ConnectRequest(hello=epb.ExecutorHello(executor_id="x"))))
        ),
        "/wtm.v1.AuthService/CreateApiKey": lambda: a.CreateApiKey(
            apb.CreateApiKeyRequest(name="x", role="no-such-role", namespace="default")
        ),
        "/wtm.v1.AuthService/ListApiKeys": lambda: a.ListApiKeys(apb.ListApiKeysRequest()),
        "/wtm.v1.AuthService/RevokeApiKey": lambda: a.RevokeApiKey(
            apb.RevokeApiKeyRequest(key_id="0" * 16)
        ),
        "/wtm.v1.AuthService/ListAuditEvents": lambda: a.ListAuditEvents(
            apb.ListAuditEventsRequest(page_size=1)
        ),
    }


def test_every_rpc_is_in_the_table_and_tested() -> None:
    with tls.channel("127.0.0.1:1") as ch:
        assert set(calls(ch, ch)) == set(METHOD_PERMISSIONS)


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_each_role_may_call_what_the_table_grants_and_nothing_else(
    cluster: Cluster, keys: dict[str, str], role: str
) -> None:
    granted = ROLE_PERMISSIONS[Role(role)]
    with (
        keyed_channel(cluster.registry_address, keys[role]) as registry,
        keyed_channel(cluster.scheduler_address, keys[role]) as scheduler,
        keyed_channel(
            cluster.executor_address, keys[role], client_cert=cluster.executor_cert
        ) as executors,
    ):
        wrong = {}
        for method, call in calls(registry, scheduler, executors).items():
            code = outcome(call)
            allowed = METHOD_PERMISSIONS[method] in granted
            if (allowed and code in GATE_CODES) or (
                not allowed and code != grpc.StatusCode.PERMISSION_DENIED
            ):
                wrong[method] = (allowed, code.name)
    assert not wrong, f"{role}: method -> (should be allowed, got): {wrong}"


@pytest.mark.parametrize("which", ["none", "garbage", "wrong", "revoked", "expired"])
def test_no_valid_key_gets_past_the_gate_anywhere(
    cluster: Cluster, keys: dict[str, str], which: str
) -> None:
    key = keys.get(which, "")
    cert = (str(cluster.executor_cert[0]), str(cluster.executor_cert[1]))
    channels = (
        (
            keyed_channel(cluster.registry_address, key),
            keyed_channel(cluster.scheduler_address, key),
            keyed_channel(cluster.executor_address, key, client_cert=cluster.executor_cert),
        )
        if key
        else (
            tls.channel(cluster.registry_address),
            tls.channel(cluster.scheduler_address),
            tls.channel(cluster.executor_address, client_cert=cert),
        )
    )
    with channels[0] as registry, channels[1] as scheduler, channels[2] as executors:
        codes = {m: outcome(c) for m, c in calls(registry, scheduler, executors).items()}
    assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes


def test_a_submitter_cancels_its_own_runs_only_and_an_operator_any(
    cluster: Cluster, client: Client, keys: dict[str, str]
) -> None:
    client.register_task(FIXTURES / "sleeper")
    second, _ = client.create_api_key("another submitter", "submitter", "default")
    other_key = client.create_api_key("yet another", "submitter", "default")[1]
    a = Client(cluster.registry_address, cluster.scheduler_address, api_key=keys["submitter"])
    b = Client(cluster.registry_address, cluster.scheduler_address, api_key=other_key)
    op = Client(cluster.registry_address, cluster.scheduler_address, api_key=keys["operator"])
    with a, b, op:
        mine = a.submit(task="sleeper", input={"seconds": 30})
        theirs = b.submit(task="sleeper", input={"seconds": 30})
        with pytest.raises(ApiError) as err:
            b.cancel(mine.run_id)
        assert err.value.code == "PERMISSION_DENIED" and "run_id" in err.value.message
        assert a.cancel(mine.run_id).state == "CANCELLED"
        assert op.cancel(theirs.run_id).state == "CANCELLED"
        # Cancelling by a label: a submitter's own runs, and the others counted, left alone.
        tag = {"bulk": f"t{time.time_ns()}"}
        own = a.submit(task="sleeper", input={"seconds": 30}, labels=tag)
        other = b.submit(task="sleeper", input={"seconds": 30}, labels=tag)
        done = a.cancel_runs("tidy up", labels=tag)  # a submit answers once MongoDB has it
        assert [r.run_id for r in done.cancelled] == [own.run_id]
        assert done.not_theirs == [other.run_id]
        assert b.get_run(other.run_id).state != "CANCELLED"
        assert [r.run_id for r in op.cancel_runs(labels=tag).cancelled] == [other.run_id]
    expected = {
        ("CancelRun", "PERMISSION_DENIED", "submitter"),
        ("CancelRun", "OK", "operator"),
        ("CancelRun", "OK", "submitter"),
        ("SubmitRun", "OK", "submitter"),
    }
    deadline = time.monotonic() + 10
    while True:  # the audit is written behind, by a thread of each service's own
        events = client.list_audit_events(1000)
        seen = {(e["method"], e["outcome"], e["role"]) for e in events}
        if expected <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert expected <= seen, expected - seen
    assert all(e["key_id"] and e["namespace"] == "default" for e in events if e["role"] != "admin")


def test_keys_are_shown_once_and_stored_only_as_a_hash(cluster: Cluster, client: Client) -> None:
    import pymongo

    key, secret = client.create_api_key("hash probe", "viewer", "default")
    listed = {k.key_id: k for k in client.list_api_keys()}
    assert key.key_id in listed and secret not in repr(listed[key.key_id])
    with pymongo.MongoClient(cluster.endpoints.mongodb_uri) as mongo:  # type: ignore[union-attr]
        doc = mongo["wtm"]["api_keys"].find_one({"_id": key.key_id})
    assert doc is not None and secret.split(".", 1)[1] not in str(doc)
    assert secret not in repr(
        Client(cluster.registry_address, cluster.scheduler_address, api_key=secret)
    )


def test_an_admin_of_one_namespace_manages_only_its_own_keys_and_audit(
    cluster: Cluster, client: Client
) -> None:
    _, team_a_admin = client.create_api_key("team-a admin", "admin", "team-a")
    theirs, _ = client.create_api_key("team-b viewer", "viewer", "team-b")
    with Client(cluster.registry_address, cluster.scheduler_address, api_key=team_a_admin) as a:
        mine, _ = a.create_api_key("team-a viewer", "viewer", "team-a")
        with pytest.raises(ApiError) as err:
            a.create_api_key("sneaky", "admin", "team-b")
        assert err.value.code == "PERMISSION_DENIED" and "namespace" in err.value.message
        with pytest.raises(ApiError) as err:
            a.revoke_api_key(theirs.key_id)
        assert err.value.code == "NOT_FOUND"  # another namespace's key is not even there
        assert {k.namespace for k in a.list_api_keys()} == {"team-a"}
        assert mine.key_id in {k.key_id for k in a.list_api_keys()}
        deadline = time.monotonic() + 10
        while not (events := a.list_audit_events(100)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert events and {e["namespace"] for e in events} == {"team-a"}
