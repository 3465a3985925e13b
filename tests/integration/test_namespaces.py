"""Namespaces on the real stack: the same names in two namespaces are two things, a task is
used across namespaces only once its admin shares it, request ids and artifacts are per
namespace, and an executor serving one namespace takes only that namespace's work. (What
another namespace cannot see, RPC by RPC and role by role, is in test_namespace_isolation.)"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from clients.sdk import ApiError, Client, NamespaceInfo, RunInfo
from services.localstack import Cluster
from tests.conftest import keyed_channel, run_cli
from tests.integration.executor_tasks import make_task, stop_executor
from tests.waiting import eventually
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc

ANSWER = """
from tasks.base.task_base import SimpleTask

class Task(SimpleTask):
    def process(self, input_data):
        return {{"from": "{who}"}}
"""


@pytest.fixture(scope="module")
def team(cluster: Cluster, client: Client) -> Iterator[dict[str, Client]]:
    """An admin client bound to each of team-a and team-b (keys of their own namespace)."""
    clients = {}
    for name in ("team-a", "team-b"):
        _, key = client.create_api_key(f"{name} admin", "admin", name)
        clients[name] = Client(
            cluster.registry_address,
            cluster.scheduler_address,
            api_key=key,
            raise_on_failure=False,
        )
    try:
        yield clients
    finally:
        for c in clients.values():
            c.close()


def _wait(c: Client, **submit: Any) -> RunInfo:
    return c.wait(c.submit(**submit).run_id, timeout=60)


def test_the_same_task_id_in_two_namespaces_is_two_tasks(
    team: dict[str, Client], tmp_path: Path, cluster: Cluster
) -> None:
    a, b = team["team-a"], team["team-b"]
    ta = a.register_task(make_task(tmp_path / "a", "answer", ANSWER.format(who="team-a")))
    tb = b.register_task(make_task(tmp_path / "b", "answer", ANSWER.format(who="team-b")))
    assert ta.digest != tb.digest and (ta.namespace, tb.namespace) == ("team-a", "team-b")
    ra, rb = _wait(a, task="answer"), _wait(b, task="answer")
    assert ra.output == {"from": "team-a"} and rb.output == {"from": "team-b"}
    assert ra.namespace == "team-a"
    assert [t.task_id for t in a.list_tasks()].count("answer") == 1
    # A run of another namespace is not found to be resumed from, as to be read.
    with keyed_channel(cluster.scheduler_address, cluster.admin_key, "team-b") as channel:
        asked = spb.SubmitRunRequest(task="answer", reuse_from=ra.run_id)
        with pytest.raises(grpc.RpcError) as err:
            spb_grpc.SchedulerServiceStub(channel).SubmitRun(asked)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == f"reuse_from: no run {ra.run_id}"


def test_a_shared_task_is_used_by_name_and_unsharing_stops_it(
    team: dict[str, Client], tmp_path: Path
) -> None:
    a, b = team["team-a"], team["team-b"]
    a.register_task(make_task(tmp_path, "resize_probe", ANSWER.format(who="shared")))
    pipeline = {"pipeline_id": "uses_shared", "steps": [{"task_id": "team-a/resize_probe"}]}
    with pytest.raises(ApiError) as err:  # not shared yet: as if it did not exist
        b.register_pipelines(pipeline)
    assert err.value.code == "INVALID_ARGUMENT" and "not registered" in err.value.message
    with pytest.raises(ApiError) as err:  # only an admin of team-a shares team-a's tasks
        b.share_task("resize_probe")
    assert err.value.code == "NOT_FOUND"

    shared = a.share_task("resize_probe")
    assert shared.shared and shared.namespace == "team-a"
    [p] = b.register_pipelines(pipeline)
    assert p.namespace == "team-b" and p.steps[0].task_id == "team-a/resize_probe"
    done = _wait(b, pipeline="uses_shared")
    assert done.state == "COMPLETED" and done.output == {"from": "shared"}
    assert _wait(b, task="team-a/resize_probe").state == "COMPLETED"
    with pytest.raises(ApiError) as err:  # sharing lets others use it, not change it
        b.deprecate_task("team-a/resize_probe@1.0.0")
    assert err.value.code == "NOT_FOUND"

    assert not a.share_task("resize_probe", shared=False).shared
    deadline = time.monotonic() + 10  # the scheduler looks sharing up again within 1 s
    while True:
        try:
            b.submit(pipeline="uses_shared")
        except ApiError as exc:
            assert exc.code == "NOT_FOUND" and "resize_probe" in exc.message
            break
        assert time.monotonic() < deadline, "still runs a task no longer shared"
        time.sleep(0.3)


def test_request_ids_and_artifacts_are_per_namespace(
    team: dict[str, Client], tmp_path: Path
) -> None:
    a, b = team["team-a"], team["team-b"]
    for c, who in ((a, "team-a"), (b, "team-b")):
        c.register_task(make_task(tmp_path / who, "echo_ns", ANSWER.format(who=who)))
    first = a.submit(task="echo_ns", request_id="nightly-42")
    again = a.submit(task="echo_ns", request_id="nightly-42")
    other = b.submit(task="echo_ns", request_id="nightly-42")
    assert first.run_id == again.run_id != other.run_id
    assert b.wait(other.run_id, timeout=60).output == {"from": "team-b"}

    image = tmp_path / "photo.txt"
    image.write_text("team-a's photo")
    uri = a.upload_artifact(image)
    assert a.download_artifact(uri) == b"team-a's photo"
    with pytest.raises(ApiError) as err:
        b.download_artifact(uri)
    assert err.value.code == "NOT_FOUND"


def test_an_executor_serving_one_namespace_takes_only_its_work(
    cluster: Cluster, team: dict[str, Client], tmp_path: Path
) -> None:
    a, b = team["team-a"], team["team-b"]
    for name, c in team.items():
        c.register_task(make_task(tmp_path / name, "nsq_task", queue="nsq"))
    a_run = a.submit(task="nsq_task", input={"seconds": 0})
    b_run = b.submit(task="nsq_task", input={"seconds": 0})
    child = cluster.add_executor("--queues", "nsq", "--namespaces", "team-a", slots=1)
    try:
        done = a.wait(a_run.run_id, timeout=60)
        assert done.state == "COMPLETED" and done.steps[0].executor_id == child.name
        deadline = time.monotonic() + 10  # the fleet's record is written every second
        while not (mine := [e for e in a.list_executors() if e.executor_id == child.name]):
            assert time.monotonic() < deadline, "the executor is not listed"
            time.sleep(0.2)
        assert mine[0].namespaces == ["team-a"]
        assert child.name not in {e.executor_id for e in b.list_executors()}
        time.sleep(1.5)  # the executor is idle and serves nsq: team-b's step is not for it
        assert b.get_run(b_run.run_id).state == "QUEUED"
    finally:
        b.cancel(b_run.run_id)
        stop_executor(cluster, child)


def test_the_cli_acts_in_the_namespace_it_is_given(
    cluster: Cluster, team: dict[str, Client], tmp_path: Path
) -> None:
    team["team-a"].register_task(make_task(tmp_path, "cli_ns_task", ANSWER.format(who="team-a")))
    assert "cli_ns_task" not in run_cli(cluster, "task", "list").stdout  # "default" has none
    listed = run_cli(cluster, "-n", "team-a", "--json", "task", "list").stdout
    assert '"cli_ns_task"' in listed and '"team-a"' in listed
    bad = run_cli(cluster, "-n", "Team_A", "task", "list", check=False)
    assert bad.returncode != 0 and "wtm-namespace" in bad.stdout + bad.stderr


MEMO = """
import os
from tasks.base.task_base import SimpleTask

SEEN = []  # what this process has been given, across steps


class Task(SimpleTask):
    def process(self, input_data):
        SEEN.append(input_data["who"])
        out = {"seen": list(SEEN), "pid": os.getpid()}
        if "photo" in input_data:
            out["path"] = str(self.context.local_path(input_data["photo"], "photo"))
        if "peek" in input_data:
            try:
                with open(input_data["peek"]) as f:
                    out["peek"] = "read: " + f.read()
            except OSError as exc:
                out["peek"] = "refused: " + type(exc).__name__
        return out
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the artifact view needs the sandbox (root)")
def test_a_shared_task_keeps_no_warm_worker_across_namespaces(
    team: dict[str, Client], tmp_path: Path
) -> None:
    """A warm worker served every namespace that used a shared task: what a step of one
    left in the process (here a list of its inputs) was there for the next step of
    another, and the other's artifacts were in the sandbox's view. A worker now serves one
    namespace and sees only that namespace's artifacts."""
    a, b = team["team-a"], team["team-b"]
    a.register_task(make_task(tmp_path / "memo", "memo", MEMO))
    a.share_task("memo")
    photo = tmp_path / "photo.txt"
    photo.write_text("team-a's photo")
    mine = _wait(a, task="memo", input={"who": "a-secret", "photo": a.upload_artifact(photo)})
    assert mine.state == "COMPLETED", mine.steps[0].error
    theirs = _wait(b, task="team-a/memo", input={"who": "b", "peek": mine.output["path"]})
    assert theirs.state == "COMPLETED", theirs.steps[0].error
    assert theirs.output["seen"] == ["b"], theirs.output  # a fresh process: nothing of a's
    assert theirs.output["pid"] != mine.output["pid"]
    assert theirs.output["peek"] == "refused: FileNotFoundError", theirs.output
    again = _wait(a, task="memo", input={"who": "a-again"})  # a's own worker stays warm
    assert again.output["seen"] == ["a-secret", "a-again"]
    assert again.output["pid"] == mine.output["pid"]


def test_a_teams_backlog_does_not_hold_back_another_teams_new_run(
    cluster: Cluster, team: dict[str, Client], tmp_path: Path
) -> None:
    """Namespaces share the fleet fairly: team-b's run, submitted after a batch of twelve
    of team-a's on a queue with one slot, is among the first leased, not the thirteenth."""
    a, b = team["team-a"], team["team-b"]
    for name, c in team.items():
        c.register_task(make_task(tmp_path / name, "fair_probe", queue="fairq"))
    _, backlog = a.submit_many(task="fair_probe", inputs=[{"seconds": 0.1}] * 12)
    late = b.submit(task="fair_probe", input={"seconds": 0.1})
    child = cluster.add_executor("--queues", "fairq", slots=1)
    try:
        done = b.wait(late.run_id, timeout=60)
        assert done.state == "COMPLETED", done.steps[0].error
        runs = [a.wait(run_id, timeout=60) for run_id in backlog]
        assert all(r.state == "COMPLETED" for r in runs)
        started = done.steps[0].started_at
        before = [r.run_id for r in runs if r.steps[0].started_at < started]
        assert len(before) <= 2, f"team-b's run started after {len(before)} of team-a's"
    finally:
        stop_executor(cluster, child)


def test_a_namespace_past_its_run_limit_is_refused_until_its_runs_finish(
    cluster: Cluster, client: Client, team: dict[str, Client], tmp_path: Path
) -> None:
    """The session's scheduler lets capped-team have 3 runs queued or running
    (WTM_NAMESPACE_RUN_LIMITS): the fourth is RESOURCE_EXHAUSTED, naming the limit, while
    other namespaces go on; once one of its runs ends it may submit again."""
    _, key = client.create_api_key("capped admin", "admin", "capped-team")
    capped = Client(
        cluster.registry_address, cluster.scheduler_address, api_key=key, raise_on_failure=False
    )
    try:
        capped.register_task(make_task(tmp_path / "c", "capped_probe", queue="nobody-takes"))
        held = [capped.submit(task="capped_probe", input={}).run_id for _ in range(3)]
        for submit in (
            lambda: capped.submit(task="capped_probe", input={}),
            lambda: capped.submit_many(task="capped_probe", inputs=[{}, {}]),
        ):
            with pytest.raises(ApiError) as err:
                submit()
            assert err.value.code == "RESOURCE_EXHAUSTED", err.value
            assert "namespace: 'capped-team' has 3 runs queued or running" in str(err.value)
            assert "its limit of 3" in err.value.message
        # What the team sees of itself, and an operator (a key of every namespace) of all.
        [mine] = capped.list_namespaces()
        assert mine == NamespaceInfo("capped-team", 3, 3, 1.0, 3, 30.0) and mine.at_limit
        listed = json.loads(run_cli(cluster, "--json", "-n", "*", "namespace", "list").stdout)
        every = {n["namespace"]: n for n in listed["namespaces"]}
        assert every["capped-team"] == {
            "namespace": "capped-team",
            "unfinished_runs": 3,
            "run_limit": 3,
            "weight": 1.0,
            "waiting_steps": 3,
            "history_retention_days": 30.0,  # WTM_HISTORY_RETENTION_DAYS's default
            "calls_per_second": 0.0,  # WTM_CALLS_PER_SECOND unset, none of its own
        }
        assert every["weighty-team"]["weight"] == 4.0  # WTM_NAMESPACE_WEIGHTS, no runs
        table = run_cli(cluster, "-n", "capped-team", "namespace", "list").stdout
        assert "at its limit: submits are refused until runs end" in table
        a = team["team-a"]
        a.register_task(make_task(tmp_path / "a", "uncapped_probe", queue="nobody-takes"))
        other = a.submit(task="uncapped_probe", input={})  # another namespace: no limit
        a.cancel(other.run_id)
        capped.cancel(held.pop())

        def passes() -> bool:
            try:
                held.append(capped.submit(task="capped_probe", input={}).run_id)
            except ApiError as exc:
                assert exc.code == "RESOURCE_EXHAUSTED", exc
                return False
            return True

        eventually(passes, timeout=10, what="a submit once a run ended")
    finally:
        for run_id in held:
            capped.cancel(run_id)
        capped.close()


def test_a_namespaces_weight_is_written_for_the_scripts_and_again_after_a_flush(
    cluster: Cluster,
) -> None:
    """The session's scheduler runs with WTM_NAMESPACE_WEIGHTS=weighty-team=4: each of that
    namespace's new runs costs a quarter of a turn (lib.lua reads ``c:<namespace>``), and a
    Redis that lost it has it again within the reaper's second."""
    assert cluster.endpoints is not None
    admin = redis.Redis.from_url(cluster.endpoints.redis_admin_url)
    try:
        assert admin.hget("wtm:fair", "c:weighty-team") == b"0.25"
        admin.hdel("wtm:fair", "c:weighty-team")
        eventually(lambda: admin.hget("wtm:fair", "c:weighty-team") == b"0.25", 5, "the cost")
    finally:
        admin.close()


def test_an_operator_changes_a_namespaces_settings_on_every_replica_without_a_restart(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    """UpdateNamespace (``wtm namespace set``): a key of every namespace gives a namespace
    a run limit, a weight and a retention over the installation's; submits past the limit
    are refused at once, the weight's cost reaches the scripts within the reaper's second,
    ListNamespaces shows them, and a reset returns one to the installation's. A key bound to
    one namespace may not (an admin must not raise its own limit); bad values name the
    field."""
    assert cluster.endpoints is not None
    ns = f"settable-{os.getpid()}-{int(time.monotonic() * 1000) % 100_000}"
    ops = Client(
        cluster.registry_address,
        cluster.scheduler_address,
        api_key=cluster.admin_key,
        namespace=ns,
        raise_on_failure=False,
    )
    admin = redis.Redis.from_url(cluster.endpoints.redis_admin_url)
    held: list[str] = []
    try:
        ops.register_task(make_task(tmp_path, "settable_probe", queue="nobody-takes"))
        info = ops.update_namespace(run_limit=2, weight=3, history_retention_days=7)
        assert info == NamespaceInfo(ns, 0, 2, 3.0, 0, 7.0, 0.0)
        held += [ops.submit(task="settable_probe", input={}).run_id for _ in range(2)]
        with pytest.raises(ApiError) as err:
            ops.submit(task="settable_probe", input={})
        assert err.value.code == "RESOURCE_EXHAUSTED" and "its limit of 2" in err.value.message
        eventually(  # round(32/3)/32 = 11/32
            lambda: admin.hget("wtm:fair", f"c:{ns}") == b"0.34375", 5, "the weight's cost"
        )
        listed = json.loads(run_cli(cluster, "--json", "-n", "*", "namespace", "list").stdout)
        mine = {n["namespace"]: n for n in listed["namespaces"]}[ns]
        assert (mine["run_limit"], mine["weight"], mine["history_retention_days"]) == (2, 3, 7)

        out = run_cli(cluster, "--json", "-n", ns, "namespace", "set", "--reset", "weight")
        assert json.loads(out.stdout)["namespace"]["weight"] == 1.0
        eventually(lambda: admin.hget("wtm:fair", f"c:{ns}") is None, 5, "the cost dropped")
        assert ops.update_namespace(run_limit=0).run_limit == 0  # none
        held.append(ops.submit(task="settable_probe", input={}).run_id)

        _, key = client.create_api_key("settable admin", "admin", ns)
        with Client(cluster.registry_address, cluster.scheduler_address, api_key=key) as own_admin:
            with pytest.raises(ApiError) as err:
                own_admin.update_namespace(run_limit=1000)
            assert err.value.code == "PERMISSION_DENIED", err.value
        for bad, field in (
            (dict(weight=100.0), "weight"),
            (dict(history_retention_days=-1.0), "history_retention_days"),
            (dict(calls_per_second=-1.0), "calls_per_second"),
            (dict(reset=["colour"]), "reset_fields[0]"),
            (dict(run_limit=5, reset=["run_limit"]), "reset_fields[0]"),
            ({}, "reset_fields"),
        ):
            with pytest.raises(ApiError) as err:
                ops.update_namespace(**bad)  # type: ignore[arg-type]
            assert err.value.code == "INVALID_ARGUMENT" and err.value.field == field, bad
    finally:
        for run_id in held:
            ops.cancel(run_id)
        ops.update_namespace(reset=["run_limit", "weight", "history_retention_days"])
        ops.close()
        admin.close()


def test_a_namespaces_own_calls_a_second_hold_on_the_registry_and_the_scheduler(
    cluster: Cluster, client: Client
) -> None:
    """UpdateNamespace's calls_per_second: within about a second both services hold the
    namespace to it (the session's installation sets none), refusing past its burst and
    naming where the figure comes from; other namespaces are not held; a reset lifts it."""
    ns = f"callers-{os.getpid()}-{int(time.monotonic() * 1000) % 100_000}"

    def acting(retry_seconds: float) -> Client:
        return Client(
            cluster.registry_address,
            cluster.scheduler_address,
            api_key=cluster.admin_key,
            namespace=ns,
            retry_seconds=retry_seconds,
        )

    def passed(call: Any, n: int = 20) -> tuple[int, list[ApiError]]:
        refused = []
        for _ in range(n):
            try:
                call()
            except ApiError as exc:
                refused.append(exc)
        return n - len(refused), refused

    with acting(10) as ops, acting(0) as hasty:
        try:
            assert ops.update_namespace(calls_per_second=3).calls_per_second == 3
            time.sleep(1.5)  # the scheduler's reaper and the registry read it each second
            for service, call in (
                ("registry", lambda: list(hasty.list_tasks())),
                ("scheduler", hasty.list_queues),
            ):
                started = time.monotonic()
                n, refused = passed(call)
                assert 6 <= n <= 6 + 3 * (time.monotonic() - started) + 1, (service, n)
                assert refused[0].code == "RESOURCE_EXHAUSTED", refused[0]
                assert f"more than 3 calls a second to this {service} (its own" in (
                    refused[0].message
                )
            assert passed(lambda: list(client.list_tasks()))[0] == 20  # "default": no limit
            ops.update_namespace(reset=["calls_per_second"])
            time.sleep(1.5)
            assert passed(lambda: list(hasty.list_tasks()))[0] == 20
            assert passed(hasty.list_queues)[0] == 20
        finally:
            ops.update_namespace(reset=["calls_per_second"])
