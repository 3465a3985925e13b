"""Namespaces on the real stack: keys bound to another namespace, and keys of every namespace
acting in another, find nothing of the first through any RPC their role may call —
NOT_FOUND, or a list without it — and a key bound to one namespace cannot name another.
Every RPC has such a call (``other_namespace_calls``), as every RPC has a row in
test_permissions' role table."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from clients.sdk import Client, TaskInfo
from common import tls
from common.artifacts import parse_uri
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


@dataclass
class Theirs:
    """Things of the "default" namespace that another namespace must not find."""

    task: TaskInfo
    pipeline_id: str
    run_id: str
    artifact: str
    key_id: str
    schedule_id: str
    waiting_run_id: str  # a run not yet started (an hour's delay): what a bulk cancel finds
    cancelled_run_id: str  # a run cancelled: what a bulk resume finds


@pytest.fixture(scope="module")
def theirs(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Theirs]:
    task = client.register_task(FIXTURES / "echo")
    client.register_pipelines({"pipeline_id": "ns_probe", "steps": [{"task_id": "echo"}]})
    run = client.wait(client.submit(task="echo", input={"secret": 1}).run_id, timeout=30)
    image = tmp_path_factory.mktemp("ns") / "theirs.txt"
    image.write_text("default's file")
    key, _ = client.create_api_key("default's viewer", "viewer", "default")
    schedule = client.create_schedule("ns-probe", task="echo", every=3600, paused=True)
    waiting = client.submit(task="echo", input={"secret": 2}, start_delay=3600)
    cancelled = client.submit(task="echo", input={"secret": 3}, start_delay=3600)
    client.cancel(cancelled.run_id)
    client.set_task_limits("echo", rate_limit="10000/s")  # an operator's: what a list finds
    yield Theirs(
        task,
        "ns_probe",
        run.run_id,
        client.upload_artifact(image),
        key.key_id,
        schedule.schedule_id,
        waiting.run_id,
        cancelled.run_id,
    )
    client.set_task_limits("echo", reset=["rate_limit"])


def other_namespace_calls(
    registry: grpc.Channel,
    scheduler: grpc.Channel,
    t: Theirs,
    executors: grpc.Channel | None = None,
) -> dict[str, Callable[[], Any]]:
    """Per RPC, a call from another namespace naming the things of "default": each returns
    True when it found nothing of them (a NOT_FOUND, an INVALID_ARGUMENT that says the task
    is not registered, or a list without them)."""
    r, a = rpb_grpc.RegistryServiceStub(registry), apb_grpc.AuthServiceStub(registry)
    s = spb_grpc.SchedulerServiceStub(scheduler)
    sch = schpb_grpc.ScheduleServiceStub(scheduler)
    e = epb_grpc.ExecutorServiceStub(executors or scheduler)
    task, version = t.task.task_id, t.task.version
    every_hour = schpb.Schedule(schedule_id="ns-x", task=task)
    every_hour.every.FromSeconds(3600)
    past = Timestamp()
    past.FromSeconds(int(time.time()) - 60)

    def not_found(
        call: Callable[[], Any], code: grpc.StatusCode = grpc.StatusCode.NOT_FOUND
    ) -> Any:
        return lambda: outcome(call) == code

    def without(items: Callable[[], list[str]], mine: str) -> Any:
        return lambda: mine not in items()

    def bulk_cancel() -> list[str]:  # every run a bulk cancel of the task's runs came upon
        page = s.CancelRuns(spb.CancelRunsRequest(task_id=task))
        return [r.run_id for r in [*page.cancelled, *page.ended]] + list(page.not_theirs)

    def bulk_resume() -> list[str]:  # every run a bulk resume of the task's runs came upon
        page = s.ResumeRuns(spb.ResumeRunsRequest(task_id=task))
        return [r.run_id for r in page.resumed] + [r.run_id for r in page.refused]

    def bulk_signal() -> list[str]:  # every run a bulk signal of the task's runs came upon
        page = s.SignalRuns(spb.SignalRunsRequest(task_id=task, step_id="a"))
        return list(page.signaled) + [r.run_id for r in page.refused]

    hello = epb.ExecutorHello(
        executor_id="ns-x", queues=["default"], slots=1, namespaces=["default"]
    )
    return {
        "/wtm.v1.RegistryService/UploadTaskPackage": lambda: True,  # it stores in its own
        "/wtm.v1.RegistryService/GetTask": not_found(
            lambda: r.GetTask(rpb.GetTaskRequest(task_id=task))
        ),
        "/wtm.v1.RegistryService/ListTasks": without(
            lambda: [x.task_id for x in r.ListTasks(rpb.ListTasksRequest()).tasks], task
        ),
        "/wtm.v1.RegistryService/DownloadTaskPackage": not_found(
            lambda: list(
                r.DownloadTaskPackage(rpb.DownloadTaskPackageRequest(digest=t.task.digest))
            )
        ),
        "/wtm.v1.RegistryService/DeprecateTask": not_found(
            lambda: r.DeprecateTask(rpb.DeprecateTaskRequest(task_id=task, version=version))
        ),
        "/wtm.v1.RegistryService/ShareTask": not_found(
            lambda: r.ShareTask(rpb.ShareTaskRequest(task_id=task, shared=True))
        ),
        "/wtm.v1.RegistryService/RegisterPipelines": not_found(
            lambda: r.RegisterPipelines(
                rpb.RegisterPipelinesRequest(
                    config_json=f'{{"pipeline_id": "x", "steps": [{{"task_id": "{task}"}}]}}',
                    validate_only=True,
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,  # "uses a task that is not registered"
        ),
        "/wtm.v1.RegistryService/GetPipeline": not_found(
            lambda: r.GetPipeline(rpb.GetPipelineRequest(pipeline_id=t.pipeline_id))
        ),
        "/wtm.v1.RegistryService/ListPipelines": without(
            lambda: [p.pipeline_id for p in r.ListPipelines(rpb.ListPipelinesRequest()).pipelines],
            t.pipeline_id,
        ),
        "/wtm.v1.RegistryService/UploadArtifact": lambda: True,  # it stores in its own
        "/wtm.v1.RegistryService/DownloadArtifact": not_found(
            lambda: list(r.DownloadArtifact(rpb.DownloadArtifactRequest(uri=t.artifact)))
        ),
        "/wtm.v1.RegistryService/ListArtifacts": without(
            lambda: [x.digest for x in r.ListArtifacts(rpb.ListArtifactsRequest()).artifacts],
            parse_uri(t.artifact)[0],
        ),
        # It deletes in its own namespace: "default"'s copy stays (test_artifact_sweep.py).
        "/wtm.v1.RegistryService/DeleteArtifacts": lambda: (
            list(
                r.DeleteArtifacts(
                    rpb.DeleteArtifactsRequest(digests=[parse_uri(t.artifact)[0]])
                ).digests
            )
            == [parse_uri(t.artifact)[0]]
        ),
        "/wtm.v1.SchedulerService/SubmitRun": not_found(
            lambda: s.SubmitRun(spb.SubmitRunRequest(task=task))
        ),
        "/wtm.v1.SchedulerService/SubmitRuns": not_found(
            lambda: s.SubmitRuns(spb.SubmitRunsRequest(task=task, inputs_json=["{}"]))
        ),
        "/wtm.v1.SchedulerService/GetRun": not_found(
            lambda: s.GetRun(spb.GetRunRequest(run_id=t.run_id))
        ),
        "/wtm.v1.SchedulerService/WatchRun": not_found(
            lambda: list(s.WatchRun(spb.WatchRunRequest(run_id=t.run_id)))
        ),
        "/wtm.v1.SchedulerService/CancelRun": not_found(
            lambda: s.CancelRun(spb.CancelRunRequest(run_id=t.run_id))
        ),
        "/wtm.v1.SchedulerService/CancelRuns": without(bulk_cancel, t.waiting_run_id),
        "/wtm.v1.SchedulerService/ResumeRuns": without(bulk_resume, t.cancelled_run_id),
        "/wtm.v1.SchedulerService/RerunRun": not_found(
            lambda: s.RerunRun(spb.RerunRunRequest(run_id=t.run_id))
        ),
        "/wtm.v1.SchedulerService/SignalRuns": without(bulk_signal, t.waiting_run_id),
        "/wtm.v1.SchedulerService/SignalRun": not_found(
            lambda: s.SignalRun(spb.SignalRunRequest(run_id=t.run_id, step_id="a"))
        ),
        "/wtm.v1.SchedulerService/ListRuns": without(
            lambda: [x.run_id for x in s.ListRuns(spb.ListRunsRequest(page_size=1000)).runs],
            t.run_id,
        ),
        "/wtm.v1.SchedulerService/ListExecutors": lambda: True,  # the fleet serving it
        "/wtm.v1.SchedulerService/ListQueues": without(
            lambda: [q.namespace for q in s.ListQueues(spb.ListQueuesRequest()).queues],
            "default",
        ),
        "/wtm.v1.SchedulerService/ListNamespaces": without(
            lambda: [n.namespace for n in s.ListNamespaces(spb.ListNamespacesRequest()).namespaces],
            "default",
        ),
        # It acts on the namespace the call acts in, never on one it names.
        "/wtm.v1.SchedulerService/UpdateNamespace": not_found(
            lambda: s.UpdateNamespace(spb.UpdateNamespaceRequest(weight=1000)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        # "default"'s task, by its id: not found in the namespace the call acts in.
        "/wtm.v1.SchedulerService/SetTaskLimits": not_found(
            lambda: s.SetTaskLimits(spb.SetTaskLimitsRequest(task_id=task, concurrency_limit=1))
        ),
        "/wtm.v1.SchedulerService/ListTaskLimits": without(
            lambda: [x.namespace for x in s.ListTaskLimits(spb.ListTaskLimitsRequest()).limits],
            "default",
        ),
        # "default"'s queue by its full name: not found, never paused (or resumed).
        "/wtm.v1.SchedulerService/PauseQueue": not_found(
            lambda: s.PauseQueue(spb.PauseQueueRequest(queue="default/default"))
        ),
        "/wtm.v1.SchedulerService/ResumeQueue": not_found(
            lambda: s.ResumeQueue(spb.ResumeQueueRequest(queue="default/default"))
        ),
        # No executor serves only "default" here; one that did would be NOT_FOUND as this.
        "/wtm.v1.SchedulerService/PauseExecutor": not_found(
            lambda: s.PauseExecutor(spb.PauseExecutorRequest(executor_id="default-only"))
        ),
        "/wtm.v1.SchedulerService/ResumeExecutor": not_found(
            lambda: s.ResumeExecutor(spb.ResumeExecutorRequest(executor_id="default-only"))
        ),
        # Whether the backing servers answer: nothing of any namespace.
        "/wtm.v1.SchedulerService/CheckDependencies": lambda: True,
        "/wtm.v1.ScheduleService/CreateSchedule": not_found(  # "default"'s task
            lambda: sch.CreateSchedule(schpb.CreateScheduleRequest(schedule=every_hour))
        ),
        "/wtm.v1.ScheduleService/GetSchedule": not_found(
            lambda: sch.GetSchedule(schpb.GetScheduleRequest(schedule_id=t.schedule_id))
        ),
        "/wtm.v1.ScheduleService/ListSchedules": without(
            lambda: [
                x.schedule_id for x in sch.ListSchedules(schpb.ListSchedulesRequest()).schedules
            ],
            t.schedule_id,
        ),
        "/wtm.v1.ScheduleService/PauseSchedule": not_found(
            lambda: sch.PauseSchedule(schpb.PauseScheduleRequest(schedule_id=t.schedule_id))
        ),
        "/wtm.v1.ScheduleService/ResumeSchedule": not_found(
            lambda: sch.ResumeSchedule(schpb.ResumeScheduleRequest(schedule_id=t.schedule_id))
        ),
        "/wtm.v1.ScheduleService/DeleteSchedule": not_found(
            lambda: sch.DeleteSchedule(schpb.DeleteScheduleRequest(schedule_id=t.schedule_id))
        ),
        "/wtm.v1.ScheduleService/TriggerSchedule": not_found(
            lambda: sch.TriggerSchedule(schpb.TriggerScheduleRequest(schedule_id=t.schedule_id))
        ),
        "/wtm.v1.ScheduleService/BackfillSchedule": not_found(
            lambda: sch.BackfillSchedule(
                schpb.BackfillScheduleRequest(
                    schedule_id=t.schedule_id, start_time=past, end_time=past
                )
            )
        ),
        "/wtm.v1.ScheduleService/CancelBackfill": not_found(
            lambda: sch.CancelBackfill(schpb.CancelBackfillRequest(schedule_id=t.schedule_id))
        ),
        "/wtm.v1.RegistryService/CheckDependencies": lambda: True,
        "/wtm.v1.ExecutorService/Connect": not_found(  # asking for another's queues
            lambda: list(e.Connect(stream(epb.ConnectRequest(hello=hello)))),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        "/wtm.v1.AuthService/CreateApiKey": not_found(
            lambda: a.CreateApiKey(
                apb.CreateApiKeyRequest(name="x", role="viewer", namespace="default")
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        "/wtm.v1.AuthService/ListApiKeys": without(
            lambda: [k.key_id for k in a.ListApiKeys(apb.ListApiKeysRequest()).keys], t.key_id
        ),
        "/wtm.v1.AuthService/RevokeApiKey": not_found(
            lambda: a.RevokeApiKey(apb.RevokeApiKeyRequest(key_id=t.key_id))
        ),
        "/wtm.v1.AuthService/ListAuditEvents": without(
            lambda: [
                ev.namespace
                for ev in a.ListAuditEvents(apb.ListAuditEventsRequest(page_size=1000)).events
            ],
            "default",
        ),
    }


def test_every_rpc_has_an_other_namespace_call(theirs: Theirs) -> None:
    with tls.channel("127.0.0.1:1") as ch:
        assert set(other_namespace_calls(ch, ch, theirs)) == set(METHOD_PERMISSIONS)


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_another_namespace_finds_nothing_of_this_one(
    cluster: Cluster, client: Client, theirs: Theirs, role: str
) -> None:
    """Keys bound to "team-x", and the same call made by a key of every namespace acting in
    "team-x", find nothing of "default"; a key bound to "team-x" cannot ask for "default"."""
    granted = ROLE_PERMISSIONS[Role(role)]
    bound = client.create_api_key(f"team-x {role}", role, "team-x")[1]
    everywhere = client.create_api_key(f"every-ns {role}", role, "*")[1]
    for key, namespace in ((bound, ""), (everywhere, "team-x")):
        with (
            keyed_channel(cluster.registry_address, key, namespace) as registry,
            keyed_channel(cluster.scheduler_address, key, namespace) as scheduler,
            keyed_channel(
                cluster.executor_address, key, namespace, cluster.executor_cert
            ) as executors,
        ):
            calls = other_namespace_calls(registry, scheduler, theirs, executors)
            if namespace:  # a key of every namespace may name any in the request itself
                calls.pop("/wtm.v1.AuthService/CreateApiKey")  # the key's namespace
                calls.pop("/wtm.v1.ExecutorService/Connect")  # the namespaces it serves
            leaked = [
                method
                for method, hidden in calls.items()
                if METHOD_PERMISSIONS[method] in granted and not hidden()
            ]
        assert not leaked, f"{role} in team-x ({'bound' if not namespace else '*'}): {leaked}"
    with keyed_channel(cluster.scheduler_address, bound, "default") as scheduler:
        code = outcome(
            lambda: spb_grpc.SchedulerServiceStub(scheduler).ListRuns(spb.ListRunsRequest())
        )
    assert code == grpc.StatusCode.PERMISSION_DENIED
