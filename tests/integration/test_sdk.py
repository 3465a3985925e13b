"""The SDK's public surface, sync and async, on the real stack: typed results, and every
exception type raised for its cause."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import (
    AlreadyExists,
    AsyncClient,
    Client,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RunCancelledError,
    RunFailedError,
    RunTimedOutError,
    State,
    Unauthenticated,
    Unavailable,
    WaitTimeoutError,
    WtmError,
)
from services.common.backends import s3_client
from services.localstack import Cluster
from services.localstack.processes import free_port
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def sdk(cluster: Cluster, client: Client) -> Iterator[Client]:
    """A client as users make it: ``run``/``wait`` raise for a run that did not complete."""
    for name in ("word_count", "sleeper", "fussy", "echo"):
        client.register_task(FIXTURES / "tasks" / name)
    client.register_pipelines(
        {
            "pipeline_id": "sdk_too_slow",
            "steps": [
                {
                    "task_id": "sleeper",
                    "timeout": 1,
                    "retry_count": 0,
                    "input_mapping": {"seconds": "$.seconds"},
                }
            ],
        }
    )
    client.register_pipelines(
        {"pipeline_id": "sdk_disabled", "enabled": False, "steps": [{"task_id": "echo"}]}
    )
    with Client(
        cluster.registry_address, cluster.scheduler_address, api_key=cluster.admin_key
    ) as c:
        yield c


def test_a_client_made_without_arguments_takes_the_stacks_exports(
    cluster: Cluster, sdk: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `wtm stack up` prints to export is all a client needs, as for the CLI."""
    monkeypatch.setenv("WTM_REGISTRY_ADDR", cluster.registry_address)
    monkeypatch.setenv("WTM_SCHEDULER_ADDR", cluster.scheduler_address)
    monkeypatch.setenv("WTM_API_KEY", cluster.admin_key)
    with Client() as plain:
        assert "word_count" in {t.task_id for t in plain.list_tasks()}
        assert plain.run(task="word_count", input={"text": "a b"}).output["count"] == 2


def test_results_are_typed_and_states_are_one_enum(sdk: Client) -> None:
    run = sdk.run(task="word_count", input={"text": "a b c"}, timeout=60)
    assert run.state is State.COMPLETED and run.state == "COMPLETED" and run.finished
    assert run.output == {"count": 3, "words": ["a", "b", "c"]}
    [step] = run.steps
    assert step.state is State.COMPLETED and step.state.is_terminal
    events = list(sdk.watch(run.run_id))
    assert all(isinstance(e.state, State) for e in events) and events[-1].ends_run
    assert State.from_proto(State.RUNNING.to_proto()) is State.RUNNING


def test_a_run_that_fails_raises_with_the_run(sdk: Client) -> None:
    with pytest.raises(RunFailedError) as err:
        sdk.run(task="fussy", input={"value": -1}, timeout=60)
    assert err.value.run.state is State.FAILED and "positive" in err.value.run.error
    assert err.value.code == "RUN_FAILED" and isinstance(err.value, WtmError)
    run_id = err.value.run.run_id
    with pytest.raises(RunFailedError):
        sdk.wait(run_id)
    assert sdk.wait(run_id, raise_on_failure=False).state is State.FAILED  # the opt-out


def test_a_cancelled_run_raises_run_cancelled(sdk: Client) -> None:
    run = sdk.submit(task="sleeper", input={"seconds": 30})
    sdk.cancel(run.run_id, reason="enough")
    with pytest.raises(RunCancelledError) as err:
        sdk.wait(run.run_id, timeout=30)
    assert err.value.run.state is State.CANCELLED


def test_a_step_out_of_time_raises_run_timed_out(sdk: Client) -> None:
    with pytest.raises(RunTimedOutError) as err:
        sdk.run(pipeline="sdk_too_slow", input={"seconds": 5}, timeout=60)
    assert err.value.run.state is State.TIMED_OUT


def test_a_wait_that_ends_first_raises_wait_timeout(sdk: Client) -> None:
    run = sdk.submit(task="sleeper", input={"seconds": 20})
    try:
        with pytest.raises(WaitTimeoutError) as err:
            sdk.wait(run.run_id, timeout=0.5)
        assert isinstance(err.value, TimeoutError) and err.value.run_id == run.run_id
        with pytest.raises(DeadlineExceeded) as deadline:
            list(sdk.watch(run.run_id, timeout=0.3))
        assert isinstance(deadline.value, TimeoutError)
        with pytest.raises(WaitTimeoutError):  # no time at all: one look
            sdk.wait(run.run_id, timeout=0)
    finally:
        sdk.cancel(run.run_id)
    assert sdk.wait(run.run_id, timeout=0, raise_on_failure=False).state is State.CANCELLED
    with pytest.raises(NotFound):  # looked, not timed out
        sdk.wait("no-such-run", timeout=0)


def test_each_refusal_is_its_own_class_naming_the_field(
    cluster: Cluster, sdk: Client, tmp_path: Path
) -> None:
    with pytest.raises(NotFound) as missing:
        sdk.get_run("no-such-run")
    assert missing.value.code == "NOT_FOUND" and missing.value.field == "run_id"
    with pytest.raises(NotFound):
        sdk.get_task("no_such_task")
    with pytest.raises(InvalidArgument) as bad:
        sdk.submit(task="word_count", input={"text": "x"}, priority=42)
    assert bad.value.field == "priority" and "42" in bad.value.message
    with pytest.raises(FailedPrecondition):
        sdk.submit(pipeline="sdk_disabled", input={})
    changed = shutil.copytree(FIXTURES / "tasks" / "echo", tmp_path / "echo")
    (changed / "task.py").write_text((changed / "task.py").read_text() + "\n# changed\n")
    with pytest.raises(AlreadyExists):
        sdk.register_task(changed)
    with (
        Client(cluster.registry_address, cluster.scheduler_address, api_key="wtm_bogus") as nobody,
        pytest.raises(Unauthenticated),
    ):
        nobody.get_task("echo")
    _, secret = sdk.create_api_key(f"viewer-{uuid.uuid4().hex[:6]}", "viewer", "default")
    with (
        Client(cluster.registry_address, cluster.scheduler_address, api_key=secret) as viewer,
        pytest.raises(PermissionDenied),
    ):
        viewer.submit(task="echo", input={})


def test_a_forged_package_is_data_loss_and_an_oversized_request_resource_exhausted(
    cluster: Cluster, sdk: Client, tmp_path: Path
) -> None:
    task_dir = shutil.copytree(FIXTURES / "tasks" / "echo", tmp_path / "forged")
    manifest = json.loads((task_dir / "task.json").read_text())
    (task_dir / "task.json").write_text(json.dumps({**manifest, "task_id": "sdk_forged"}))
    task = sdk.register_task(task_dir)
    assert cluster.endpoints is not None
    e = cluster.endpoints
    forged = b"not the package that was registered"
    s3_client(e.s3_endpoint, e.s3_access_key, e.s3_secret_key).put_object(
        "wtm-packages", f"sha256/{task.digest}.tar.gz", io.BytesIO(forged), len(forged)
    )
    with pytest.raises(DataLoss):
        sdk.download_package(task.digest)
    too_big = {"pipeline_id": "huge", "steps": [{"task_id": "echo"}], "x": "y" * (9 << 20)}
    with pytest.raises(ResourceExhausted):  # over the services' 8 MiB request limit
        sdk.register_pipelines(too_big)


def test_a_service_out_of_reach_is_unavailable_after_the_retries() -> None:
    closed = f"127.0.0.1:{free_port()}"
    with Client(closed, closed, retry_seconds=0.5, timeout=2) as lost:
        with pytest.raises(Unavailable):
            lost.get_task("echo")
        with pytest.raises(Unavailable):
            lost.get_run("x")


def test_the_async_client_has_the_same_surface(cluster: Cluster, sdk: Client) -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(Client) == public(AsyncClient)  # the twins (house rule 19)

    async def main() -> None:
        async with AsyncClient(
            cluster.registry_address, cluster.scheduler_address, api_key=cluster.admin_key
        ) as ac:
            task = await ac.register_task(FIXTURES / "tasks" / "word_count")
            assert task.task_id == "word_count"
            run = await ac.run(task="word_count", input={"text": "x y"}, timeout=60)
            assert run.state is State.COMPLETED and run.output["count"] == 2
            states = [e.state async for e in ac.watch(run.run_id)]
            assert states[-1] is State.COMPLETED
            batch_id, run_ids = await ac.submit_many(
                [{"text": "one"}, {"text": "one two"}], task="word_count"
            )
            done = [await ac.wait(r, timeout=60) for r in run_ids]
            assert [d.output["count"] for d in done] == [1, 2]
            assert (await ac.get_pipeline("sdk_too_slow")).pipeline_id == "sdk_too_slow"
            assert [t.task_id async for t in ac.list_tasks(task_id="echo")] == ["echo"]
            with pytest.raises(RunFailedError):
                await ac.run(task="fussy", input={"value": -1}, timeout=60)
            with pytest.raises(NotFound):
                await ac.get_run("no-such-run")
            sleeper = await ac.submit(task="sleeper", input={"seconds": 20})
            with pytest.raises(WaitTimeoutError):
                await ac.wait(sleeper.run_id, timeout=0.5)
            cancelled = await ac.cancel(sleeper.run_id)
            assert cancelled.state is State.CANCELLED
            assert json.dumps(await ac.list_audit_events(limit=1), default=str)

    asyncio.run(main())


def test_a_client_acting_as_another_key_is_that_key_on_the_same_channels(sdk: Client) -> None:
    """What a gateway does for each caller: the copy presents the other key (a viewer's here,
    so a submit is refused and a read is not); the original keeps its own."""
    _, viewer_key = sdk.create_api_key("acting-as viewer", "viewer", "default")
    viewer = sdk.acting_as(viewer_key, "default")
    assert viewer._s.channel is sdk._s.channel  # no connection of its own
    with pytest.raises(PermissionDenied):
        viewer.submit(task="word_count", input={"text": "x"})
    viewer.list_runs_page(page_size=1)
    assert sdk.run(task="word_count", input={"text": "x"}, timeout=60).state is State.COMPLETED


def test_a_batch_whose_reply_is_lost_is_retried_and_made_once(
    cluster: Cluster, sdk: Client
) -> None:
    """The reply to SubmitRuns is lost after the scheduler made the batch (a relay drops it
    and closes the connection). The call has a request id, so the SDK retries it, and the
    retry finds that batch: one batch of four runs, not two."""
    from tests.lost_reply import LostReplyRelay

    target = int(cluster.scheduler_address.rsplit(":", 1)[1])
    inputs = [{"text": f"{i} " + "x" * 60_000} for i in range(4)]  # ~240 KB: the request
    relay = LostReplyRelay(free_port(), target, after_bytes=230_000)
    label = {"lost_reply": uuid.uuid4().hex[:12]}
    try:
        with Client(
            cluster.registry_address, f"127.0.0.1:{relay.port}", api_key=cluster.admin_key
        ) as through_relay:
            batch_id, run_ids = through_relay.submit_many(
                inputs, task="echo", labels=label, request_id=label["lost_reply"]
            )
        assert relay.lost.is_set() and relay.connections >= 2  # it was lost, and retried
    finally:
        relay.close()
    assert len(run_ids) == 4
    listed = list(sdk.list_runs(labels=label))
    assert sorted(r.run_id for r in listed) == sorted(run_ids)
    assert {r.batch_id for r in listed} == {batch_id}
