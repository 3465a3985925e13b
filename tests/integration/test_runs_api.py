"""SubmitRuns, CancelRun, ListRuns and ListExecutors on the session's stack, through the SDK
and the CLI."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import redis

from clients.sdk import ApiError, Client
from services.localstack import Cluster
from tests.conftest import ROOT, keyed_channel, run_cli
from tests.waiting import eventually
from wtm.v1 import run_pb2
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc

FIXTURES = ROOT / "tests" / "fixtures" / "tasks"


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    for name in ("sleeper", "word_count"):
        client.register_task(FIXTURES / name)


def test_a_batch_makes_one_run_per_input_in_order(client: Client) -> None:
    texts = [f"{'word ' * n}".strip() for n in range(1, 6)]
    batch_id, run_ids = client.submit_many([{"text": t} for t in texts], task="word_count")
    assert len(run_ids) == 5 and len(set(run_ids)) == 5
    runs = [client.wait(r, timeout=60) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * 5
    assert [r.input["text"] for r in runs] == texts  # run i is input i
    assert all(r.batch_id == batch_id for r in runs)


def test_a_repeated_batch_request_id_returns_the_same_runs(client: Client) -> None:
    inputs = [{"text": "a b"}, {"text": "c"}]
    first = client.submit_many(inputs, task="word_count", request_id="batch-key-1")
    again = client.submit_many(inputs, task="word_count", request_id="batch-key-1")
    assert again == first


def test_a_bad_document_in_a_batch_is_named_and_nothing_is_queued(client: Client) -> None:
    before = len(list(client.list_runs(task_id="word_count", limit=1000)))
    with pytest.raises(ApiError) as err:
        client.submit_many([{"text": "ok"}, []], task="word_count")  # type: ignore[list-item]
    assert (err.value.code, err.value.message) == (
        "INVALID_ARGUMENT",
        "inputs_json[1]: must be a JSON object",
    )
    assert len(list(client.list_runs(task_id="word_count", limit=1000))) == before


def test_cancel_stops_a_running_step_and_drops_the_queued_ones(client: Client) -> None:
    r = client.submit(task="sleeper", input={"seconds": 30})
    for event in client.watch(r.run_id, timeout=30):
        if event.kind == "PROGRESS" or (event.step_id and event.state == "RUNNING"):
            break
    cancelled = client.cancel(r.run_id, reason="changed my mind")
    assert cancelled.state == "CANCELLED"
    assert "changed my mind" in cancelled.error
    assert cancelled.steps[0].state == "CANCELLED"
    # The executor stopped it: its slot is free again, so a new run finishes promptly.
    t0 = time.monotonic()
    quick = client.wait(client.submit(task="sleeper", input={"seconds": 0.1}).run_id, 30)
    assert quick.state == "COMPLETED"
    assert time.monotonic() - t0 < 20
    assert client.cancel(r.run_id).state == "CANCELLED"  # cancelling again changes nothing


def test_a_run_past_its_run_timeout_ends_timed_out_and_its_step_is_stopped(
    client: Client, cluster: Cluster
) -> None:
    r = client.submit(task="sleeper", input={"seconds": 30}, run_timeout=1.5)
    assert r.deadline_at is not None and r.created_at is not None
    assert abs((r.deadline_at - r.created_at).total_seconds() - 1.5) < 0.01
    done = client.wait(r.run_id, timeout=15)
    assert done.state == "TIMED_OUT"
    assert done.error == "run_timeout: the run had not finished by its deadline"
    assert [(s.state, s.error) for s in done.steps] == [("CANCELLED", "run TIMED_OUT")]
    assert done.ended_at is not None
    assert 1.5 <= (done.ended_at - done.created_at).total_seconds() < 4  # a reaper second
    # The executor stopped it: its slot is free again, so a new run finishes promptly.
    t0 = time.monotonic()
    quick = client.wait(client.submit(task="sleeper", input={"seconds": 0.1}).run_id, 30)
    assert quick.state == "COMPLETED"
    assert time.monotonic() - t0 < 20
    # The history keeps it so; a run that ends in time is not touched.
    eventually(
        lambda: r.run_id in {x.run_id for x in client.list_runs(state="TIMED_OUT", limit=200)},
        10,
        "the timed-out run in the history",
    )
    in_time = client.run(task="sleeper", input={"seconds": 0.1}, run_timeout=60)
    assert in_time.state == "COMPLETED" and in_time.deadline_at is not None
    shown = run_cli(
        cluster, "run", "submit", "sleeper", '{"seconds": 30}', "--run-timeout", "1s", check=False
    )
    assert shown.returncode == 1 and "TIMED_OUT" in shown.stdout, shown.stdout + shown.stderr


@pytest.mark.parametrize("seconds", [0.5, -3, 31 * 86400])
def test_a_run_timeout_out_of_range_is_refused_naming_it(client: Client, seconds: float) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(task="word_count", input={"text": "x"}, run_timeout=seconds)
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.message.startswith("run_timeout: must be from 1 second to 30 days")
    with pytest.raises(ApiError) as err:
        client.submit_many([{"text": "x"}], task="word_count", run_timeout=seconds)
    assert err.value.message.startswith("run_timeout: must be from 1 second to 30 days")


def test_a_run_runs_again_as_it_ran_on_its_input(client: Client, cluster: Cluster) -> None:
    labels = {"team": "nlp", "wtm.schedule": "nightly", "wtm.schedule_time": "2026-12-05T02:30Z"}
    first = client.run(
        task="word_count", input={"text": "a b c"}, priority=7, labels=labels, run_timeout=600
    )
    again = client.wait(client.rerun(first.run_id).run_id, 30)
    assert again.run_id != first.run_id and again.state == "COMPLETED"
    assert (again.input, again.output, again.priority) == (first.input, first.output, 7)
    assert again.steps[0].task_version == first.steps[0].task_version  # the version it ran
    # Its labels, but not the schedule's (a schedule did not start it), and where it came from.
    assert again.labels == {"team": "nlp", "wtm.rerun_of": first.run_id}
    assert again.deadline_at is not None and again.created_at is not None
    assert abs((again.deadline_at - again.created_at).total_seconds() - 600) < 0.01
    assert [r.run_id for r in client.list_runs(labels={"wtm.rerun_of": first.run_id})] == [
        again.run_id
    ]
    # A repeated request id makes one rerun; an unknown run is NOT_FOUND naming run_id.
    keyed = client.rerun(first.run_id, request_id=f"rerun-{first.run_id}")
    assert client.rerun(first.run_id, request_id=f"rerun-{first.run_id}").run_id == keyed.run_id
    with pytest.raises(ApiError) as err:
        client.rerun("no-such-run")
    assert err.value.code == "NOT_FOUND" and err.value.message.startswith("run_id: ")
    shown = run_cli(cluster, "--json", "run", "rerun", first.run_id)
    rerun = json.loads(shown.stdout)
    assert rerun["state"] == "COMPLETED" and rerun["labels"]["wtm.rerun_of"] == first.run_id


def test_every_unfinished_run_of_a_batch_or_a_label_is_cancelled_at_once(
    client: Client, cluster: Cluster
) -> None:
    done = client.run(task="sleeper", input={"seconds": 0.1}, labels={"wave": "w1"})
    done_too = client.submit(task="sleeper", input={"seconds": 30}, labels={"wave": "w1"})
    batch_id, run_ids = client.submit_many([{"seconds": 30}] * 4, task="sleeper")
    other = client.cancel_runs("not these", batch_id=batch_id, task_id="sleeper@0.0.0-none")
    assert other.cancelled == []  # all of what is given: this version ran none of them
    version = client.get_task("sleeper").version
    cancelled = client.cancel_runs("too many", batch_id=batch_id, task_id=f"sleeper@{version}")
    assert sorted(r.run_id for r in cancelled.cancelled) == sorted(run_ids)
    assert all(r.state == "CANCELLED" and "too many" in r.error for r in cancelled.cancelled)
    assert cancelled.ended == [] and cancelled.not_theirs == []
    # By label, from the CLI: the unfinished one only (the other had ended).
    shown = run_cli(cluster, "--json", "run", "cancel", "--label", "wave=w1")
    listed = json.loads(shown.stdout)
    assert [r["run_id"] for r in listed["cancelled"]] == [done_too.run_id]
    again = client.cancel_runs(labels={"wave": "w1"})  # what the history still shows unfinished
    assert again.cancelled == [] and done.run_id not in {r.run_id for r in again.ended}
    with pytest.raises(ApiError) as err:
        client.cancel_runs("everything?")
    assert err.value.code == "INVALID_ARGUMENT" and err.value.message.startswith("filter: ")
    both = run_cli(cluster, "run", "cancel", done.run_id, "--batch", batch_id, check=False)
    assert both.returncode == 2 and "not both" in both.stderr
    neither = run_cli(cluster, "run", "cancel", check=False)
    assert neither.returncode == 2 and "or filters (--batch, --label" in neither.stderr


def test_a_bulk_cancel_is_one_call_a_page_made_by_the_scheduler(
    client: Client, cluster: Cluster
) -> None:
    """CancelRuns cancels a page of the matching runs per call and hands back the next
    page's token; the SDK follows it. Bad pages and no filter are refused, naming the
    field."""
    batch_id, run_ids = client.submit_many([{"seconds": 1}] * 5, task="sleeper", start_delay=3600)
    with keyed_channel(cluster.scheduler_address, cluster.admin_key) as channel:
        stub = spb_grpc.SchedulerServiceStub(channel)
        pages = []
        request = spb.CancelRunsRequest(batch_id=batch_id, reason="paged", page_size=2)
        while True:
            page = stub.CancelRuns(request)
            pages.append([r.run_id for r in page.cancelled])
            assert all(r.state == run_pb2.STATE_CANCELLED and "paged" in r.error
                       for r in page.cancelled)  # fmt: skip
            assert not page.ended and not page.not_theirs
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        assert [len(p) for p in pages] == [2, 2, 1]
        assert sorted(sum(pages, [])) == sorted(run_ids)  # newest first, each once
        for bad, field in (
            (spb.CancelRunsRequest(batch_id=batch_id, page_size=-1), "page_size"),
            (spb.CancelRunsRequest(batch_id=batch_id, page_token="garbage"), "page_token"),
            (spb.CancelRunsRequest(reason="all of it"), "filter"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                stub.CancelRuns(bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(f"{field}: "), err.value.details()
    assert {client.get_run(r).state for r in run_ids} == {"CANCELLED"}
    # Again: the history may still show some unfinished for a moment; none is cancelled twice.
    assert client.cancel_runs(batch_id=batch_id).cancelled == []


def test_a_delayed_run_is_recorded_at_once_and_starts_at_its_time(
    client: Client, cluster: Cluster
) -> None:
    r = client.submit(task="word_count", input={"text": "a b"}, start_delay=2, run_timeout=30)
    assert r.scheduled_at is not None and r.created_at is not None and r.deadline_at is not None
    assert abs((r.scheduled_at - r.created_at).total_seconds() - 2) < 0.01
    assert abs((r.deadline_at - r.scheduled_at).total_seconds() - 30) < 0.01  # from its start
    time.sleep(1)
    early = client.get_run(r.run_id)
    assert (early.state, early.started_at, early.steps[0].state) == ("QUEUED", None, "QUEUED")
    done = client.wait(r.run_id, 30)
    assert done.state == "COMPLETED" and done.output["count"] == 2
    began = done.steps[0].started_at
    assert began is not None and 0 <= (began - r.scheduled_at).total_seconds() < 3
    messages = [e.message for e in client.watch(r.run_id, timeout=10)]
    assert "waits for the run's start time" in messages
    # One cancelled before its time never runs.
    later = client.submit(task="word_count", input={"text": "never"}, start_delay=60)
    cancelled = client.cancel(later.run_id)
    assert cancelled.state == "CANCELLED" and cancelled.steps[0].started_at is None
    for seconds in (-1, 31 * 86400):
        with pytest.raises(ApiError) as err:
            client.submit(task="word_count", input={"text": "x"}, start_delay=seconds)
        assert err.value.message.startswith("start_delay: must be from 0 to 30 days")
        assert err.value.message.endswith("got -1s" if seconds < 0 else "got 31 days")
    shown = run_cli(cluster, "run", "submit", "word_count", '{"text": "x"}', "--delay", "1s")
    assert "COMPLETED" in shown.stdout


def test_cancelling_a_finished_run_keeps_its_state(client: Client) -> None:
    done = client.wait(client.submit(task="word_count", input={"text": "x"}).run_id, 30)
    assert client.cancel(done.run_id).state == "COMPLETED"


def test_cancelling_an_unknown_run_is_not_found(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.cancel("no-such-run")
    assert err.value.code == "NOT_FOUND"
    assert "run_id" in err.value.message


def test_list_runs_pages_newest_first_and_filters(client: Client) -> None:
    batch_id, run_ids = client.submit_many([{"text": str(i)} for i in range(7)], task="word_count")
    for r in run_ids:
        client.wait(r, 30)

    def all_ended() -> list | None:  # history is written behind
        runs = list(client.list_runs(batch_id=batch_id, page_size=3))
        ended = len(runs) == len(run_ids) and all(r.state == "COMPLETED" for r in runs)
        return runs if ended else None

    listed = eventually(all_ended, 10, "the batch's history")
    assert sorted(r.run_id for r in listed) == sorted(run_ids)  # three pages, no overlap
    created = [r.created_at for r in listed]
    assert created == sorted(created, reverse=True)
    assert {r.state for r in listed} == {"COMPLETED"}
    completed = list(client.list_runs(state="COMPLETED", task_id="word_count", limit=1000))
    assert set(run_ids) <= {r.run_id for r in completed}
    assert not list(client.list_runs(state="FAILED", batch_id=batch_id))
    # a task run's version is listed with it, as the pipeline's is for a pipeline run
    version = client.get_task("word_count").version
    assert {r.what for r in listed} == {f"word_count@{version}"}
    assert client.get_run(run_ids[0]).task_version == version  # and GetRun names it
    # ... and a listing can ask for one version's runs
    pinned = {r.run_id for r in client.list_runs(task_id=f"word_count@{version}", limit=1000)}
    assert set(run_ids) <= pinned
    assert not list(client.list_runs(task_id="word_count@0.0.0-none", batch_id=batch_id))
    with pytest.raises(ApiError) as err:
        list(client.list_runs(task_id="word_count@"))
    assert err.value.code == "INVALID_ARGUMENT" and err.value.field == "task_id"


def test_list_runs_refuses_a_negative_page_size_and_caps_a_large_one(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        list(client.list_runs(page_size=-1))
    assert err.value.code == "INVALID_ARGUMENT" and "page_size" in err.value.message
    assert list(client.list_runs(page_size=5000, limit=3))  # more than 1,000 means 1,000


def test_the_summary_separates_task_time_from_system_time(client: Client) -> None:
    r = client.wait(client.submit(task="sleeper", input={"seconds": 0.2}).run_id, 30)
    [timing] = r.processing_summary["steps"]  # type: ignore[index]
    assert 0.2 <= timing["process_seconds"] < timing["run_seconds"]
    assert 0 <= timing["pickup_seconds"] < 5
    assert 0 <= timing["report_seconds"] < 5


def test_the_cli_lists_runs_and_executors_and_cancels(cluster: Cluster, client: Client) -> None:
    r = client.submit(task="sleeper", input={"seconds": 30})
    out = run_cli(cluster, "run", "cancel", r.run_id, "--reason", "from the cli").stdout
    assert "CANCELLED" in out

    def listed_cancelled() -> bool:
        out = run_cli(cluster, "--json", "run", "list", "--task", "sleeper").stdout
        return any(x["run_id"] == r.run_id and x["state"] == "CANCELLED" for x in json.loads(out))

    eventually(listed_cancelled, 10, "the cancelled run in `wtm run list`")
    executors = json.loads(run_cli(cluster, "--json", "executor", "list").stdout)
    assert "executor-1" in {e["executor_id"] for e in executors}
    table = run_cli(cluster, "executor", "list").stdout
    assert "executor-1" in table and "CONNECTED" in table


def test_run_submits_and_answers_when_the_run_has_finished(client: Client) -> None:
    done = client.run(task="word_count", input={"text": "one two three"}, timeout=60)
    assert done.state == "COMPLETED", done.error
    assert done.output == {"words": ["one", "two", "three"], "count": 3}
    assert done.ended_at is not None and done.processing_summary is not None


def test_run_returns_a_failed_run_as_it_is(client: Client) -> None:
    done = client.run(task="sleeper", input={"seconds": "not a number"}, timeout=60)
    assert done.state == "FAILED"
    assert done.error


def test_a_wait_shorter_than_the_run_times_out_and_the_run_carries_on(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        client.run(task="sleeper", input={"seconds": 1.5}, timeout=0.3)
    assert time.monotonic() - started < 1.2  # answered at the end of the wait, not the run
    run_id = str(caught.value).split()[1]
    assert client.wait(run_id, timeout=30).state == "COMPLETED"


def test_a_priority_out_of_range_is_refused_saying_what_the_range_means(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(task="word_count", input={"text": "a"}, priority=11)
    assert (err.value.code, err.value.message) == (
        "INVALID_ARGUMENT",
        "priority: must be from 1 (lowest) to 10 (highest), or 0 for the task's own; got 11",
    )


@pytest.mark.parametrize("seconds", [-1, 3601])
def test_a_wait_out_of_range_is_refused_naming_the_field(cluster: Cluster, seconds: int) -> None:
    request = spb.SubmitRunRequest(task="word_count", input_json='{"text": "a"}')
    request.wait.FromSeconds(seconds)
    with (
        keyed_channel(cluster.scheduler_address, cluster.admin_key) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        spb_grpc.SchedulerServiceStub(channel).SubmitRun(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("wait:")


def test_two_calls_waiting_on_one_run_both_get_it_finished(client: Client) -> None:
    """The same idempotency key from two callers at once: one run, and both waits end with
    it finished."""
    key = f"shared-wait-{time.time_ns()}"
    with ThreadPoolExecutor(2) as pool:
        calls = [
            pool.submit(
                client.run, task="sleeper", input={"seconds": 0.5}, request_id=key, timeout=30
            )
            for _ in range(2)
        ]
        first, second = (c.result() for c in calls)
    assert first.run_id == second.run_id
    assert (first.state, second.state) == ("COMPLETED", "COMPLETED")


def test_the_scheduler_answers_after_redis_drops_its_connections(
    cluster: Cluster, client: Client
) -> None:
    """A Redis restart, a proxy or the server's idle timeout closes the scheduler's
    connections; no call fails for it: the next ones go on fresh connections."""
    assert cluster.endpoints is not None
    first = client.run(task="word_count", input={"text": "a b"}, timeout=30)
    admin = redis.Redis.from_url(cluster.endpoints.redis_admin_url)
    try:
        for _ in range(3):
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
            time.sleep(0.2)
            assert client.get_run(first.run_id).state == "COMPLETED"
            done = client.run(task="word_count", input={"text": "c"}, timeout=30)
            assert done.output == {"words": ["c"], "count": 1}
            _, run_ids = client.submit_many([{"text": "d e f"}], task="word_count")
            assert client.wait(run_ids[0], timeout=30).output["count"] == 3
            assert client.list_executors()
    finally:
        admin.close()
