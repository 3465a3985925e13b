"""A step that awaits a signal (its pipeline step's ``await_signal``), end to end through the
registry, the scheduler, an executor, MongoDB, the SDK, the CLI and the gateway: the run
waits at the step, the signal's document reaches the task as an input field, bad signals
are refused naming the field, and a wait that runs out ends the run TIMED_OUT."""

from __future__ import annotations

import json
import time
from typing import Any

import pymongo
import pytest

from clients.sdk import ApiError, Client, RunInfo
from services.localstack import Cluster
from tests.conftest import ROOT, gateway_http, run_cli
from tests.waiting import eventually

FIXTURES = ROOT / "tests" / "fixtures"
REVIEWED = [
    {"step_id": "draft", "task_id": "echo", "input_mapping": {"text": "$.text"}},
    {"step_id": "publish", "task_id": "echo", "depends_on": ["draft"],
     "input_mapping": {"text": "$.draft.echo.text"},
     "await_signal": {"field": "approval", "timeout_seconds": 600}},
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    client.register_task(FIXTURES / "tasks" / "echo")
    client.register_pipelines({"pipeline_id": "reviewed", "steps": REVIEWED})
    steps = [{**REVIEWED[0], "await_signal": {"field": "go"}}, REVIEWED[1]]
    client.register_pipelines({"pipeline_id": "reviewed_twice", "steps": steps})


def waiting_at(client: Client, run_id: str, step_id: str) -> RunInfo:
    """The run, once its step waits for a signal."""

    def found() -> RunInfo | None:
        r = client.get_run(run_id)
        step = next(s for s in r.steps if s.step_id == step_id)
        return r if step.awaiting_signal else None

    return eventually(found, timeout=30)


def refused(call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        call(*args)
    return err.value


def test_a_step_waits_for_its_signal_and_its_task_gets_the_document(
    client: Client, cluster: Cluster
) -> None:
    info = client.get_pipeline("reviewed")
    assert info.steps[1].await_signal == {"field": "approval", "timeout_seconds": 600}
    shown = run_cli(cluster, "pipeline", "info", "reviewed").stdout
    assert "approval <- a signal, awaited up to 600 s" in shown, shown
    run_id = client.submit(pipeline="reviewed", input={"text": "hello"}).run_id
    r = waiting_at(client, run_id, "publish")
    publish = r.steps[1]
    assert (r.state, publish.state, publish.awaiting_signal) == ("RUNNING", "PENDING", "approval")
    assert publish.signal_deadline is not None and not publish.continues_at_deadline
    assert 590 < publish.signal_deadline.timestamp() - time.time() <= 600
    got = run_cli(cluster, "run", "get", run_id).stdout
    assert "awaits a signal (approval) until" in got and f"run signal {run_id} publish" in got
    time.sleep(0.5)  # it stays waiting
    assert client.get_run(run_id).steps[1].state == "PENDING"

    # Bad signals are refused, naming the field; the run goes on waiting.
    for args, code, said in [
        ((run_id, "publish", ["not", "an object"]), "INVALID_ARGUMENT", "payload_json"),
        ((run_id, "nope", {}), "NOT_FOUND", "step_id"),
        ((run_id, "draft", {}), "FAILED_PRECONDITION", "awaits no signal"),
        (("0" * 32, "publish", {}), "NOT_FOUND", "run_id"),
        ((run_id, "", {}), "INVALID_ARGUMENT", "step_id"),
    ]:
        err = refused(client.signal, *args)
        assert err.code == code and said in str(err), (args, err)
    assert client.get_run(run_id).steps[1].awaiting_signal == "approval"

    # The signal, from the CLI, following the run to its end.
    out = run_cli(
        cluster, "run", "signal", run_id, "publish", "--json", '{"approved": true}', "--wait"
    )
    assert "step publish signalled in run" in out.stdout, out.stdout
    done = client.get_run(run_id)
    assert done.state == "COMPLETED", done.error
    publish = done.steps[1]
    assert publish.output == {"echo": {"text": "hello", "approval": {"approved": True}}}
    assert publish.signaled_by and not publish.awaiting_signal
    assert ("signal_002_object", "input_002_approval_object") in done.lineage
    summary = done.processing_summary or {}
    assert summary["signal_wait_seconds"] > 0.5  # left out of the speedup's span
    assert summary["parallel_speedup"] > 0.5, summary  # two steps one after the other: ~1
    err = refused(client.signal, run_id, "publish", {})
    assert err.code == "FAILED_PRECONDITION" and "has ended COMPLETED" in str(err)
    again = client.signal(run_id, "publish", {"approved": True})  # a retry of the CLI's (one key)
    assert again.state == "COMPLETED"
    with pymongo.MongoClient(cluster.endpoints.mongodb_uri) as mongo:
        kept = mongo.wtm.runs.find_one({"_id": run_id}) or {}
    assert json.loads(kept["signal:publish"])["document"] == '{"approved":true}'


def test_a_signal_sent_early_is_kept_and_a_second_is_refused(client: Client) -> None:
    """A first step that awaits a signal waits from the submit; so the signal is sent before
    publish is ready: kept, and taken when it is."""
    run_id = client.submit(pipeline="reviewed_twice", input={"text": "hi"}).run_id
    waiting_at(client, run_id, "draft")
    client.signal(run_id, "publish", {"approved": "early"})
    err = refused(client.signal, run_id, "publish", {})
    assert err.code == "ALREADY_EXISTS" and "has had another signal" in str(err)
    again = client.signal(run_id, "publish", {"approved": "early"})  # a retry: as the first
    assert again.steps[1].signaled_by
    client.signal(run_id, "draft", {})
    done = client.wait(run_id, timeout=60)
    assert done.state == "COMPLETED", done.error
    assert done.output == {"echo": {"text": "hi", "approval": {"approved": "early"}}}


def test_no_signal_in_time_ends_the_run_timed_out(client: Client) -> None:
    steps = [{**REVIEWED[0], "await_signal": {"field": "go", "timeout_seconds": 1}}]
    client.register_pipelines({"pipeline_id": "impatient", "steps": steps})
    done = client.wait(client.submit(pipeline="impatient", input={"text": "x"}).run_id, timeout=30)
    assert done.state == "TIMED_OUT"
    assert done.error == "step draft TIMED_OUT: no signal (go) came within 1 s"
    assert done.steps[0].state == "TIMED_OUT"


def test_a_wait_that_runs_out_may_let_its_step_run_without_the_signal(
    client: Client, cluster: Cluster
) -> None:
    """``"on_timeout": "continue"``: a wait a signal may cut short (Argo's suspend with a
    duration); when none came, the step runs without it and a late one is refused."""
    wait = {"field": "go", "timeout_seconds": 5, "on_timeout": "continue"}
    client.register_pipelines(
        {"pipeline_id": "patient", "steps": [{**REVIEWED[0], "await_signal": wait}]}
    )
    shown = run_cli(cluster, "pipeline", "info", "patient").stdout
    assert "go <- a signal, awaited up to 5 s, then runs without it" in shown, shown
    run_id = client.submit(pipeline="patient", input={"text": "x"}).run_id
    assert waiting_at(client, run_id, "draft").steps[0].continues_at_deadline
    got = run_cli(cluster, "run", "get", run_id).stdout
    assert "UTC (then it runs without one)" in got, got
    done = client.wait(run_id, timeout=30)
    assert done.state == "COMPLETED", done.error
    assert done.output == {"echo": {"text": "x"}}  # no "go"
    assert done.steps[0].ran_without_signal and not done.steps[0].signaled_by
    got = run_cli(cluster, "run", "get", run_id).stdout
    assert "ran without a signal: none came in time" in got, got
    err = refused(client.signal, run_id, "draft", {})
    assert err.code == "FAILED_PRECONDITION", err
    said = [e.message for e in client.watch(run_id)]
    assert "no signal (go) came within 5 s: it runs without one" in said, said


def test_the_gateway_sends_a_signal(client: Client, cluster: Cluster) -> None:
    run_id = client.submit(pipeline="reviewed_twice", input={"text": "via http"}).run_id
    waiting_at(client, run_id, "draft")
    with gateway_http(cluster) as http:
        url = f"/api/v1/runs/{run_id}/steps/publish/signal"
        reply = http.post(url, json={"payload": {"approved": False}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["steps"][1]["signaled_by"]  # kept until draft is done
        again = http.post(url, json={"payload": {}})
        assert again.status_code == 409, again.text
        go = http.post(f"/api/v1/runs/{run_id}/steps/draft/signal")
        assert go.status_code == 200, go.text
    done = client.wait(run_id, timeout=60)
    assert done.output == {"echo": {"text": "via http", "approval": {"approved": False}}}


def test_a_resumed_run_keeps_the_signals_the_old_run_got(client: Client) -> None:
    """An approval once given is not asked for again: the resumed run's steps start with the
    signals the run it resumes got (a step never signalled waits as before)."""
    old = client.submit(pipeline="reviewed_twice", input={"text": "again"}).run_id
    waiting_at(client, old, "draft")
    client.signal(old, "publish", {"approved": "before"})
    client.cancel(old, reason="paused for the night")
    resumed = client.rerun(old, from_failure=True).run_id
    r = waiting_at(client, resumed, "draft")  # never signalled: waits again
    assert r.steps[1].signaled_by  # carried over, kept until draft is done
    client.signal(resumed, "draft", {})
    done = client.wait(resumed, timeout=60)
    assert done.state == "COMPLETED", done.error
    assert done.output == {"echo": {"text": "again", "approval": {"approved": "before"}}}


def test_runs_waiting_for_a_signal_are_listed_apart(client: Client, cluster: Cluster) -> None:
    """``ListRuns`` with ``awaiting_signal``: the runs with a step waiting for a signal now
    (the SDK, the CLI's ``--awaiting-signal``, the gateway's query), not a run that had its
    signal or never awaited one."""
    waiting = client.submit(pipeline="reviewed_twice", input={"text": "list me"}).run_id
    plain = client.run(task="echo", input={"text": "no wait"}, timeout=30).run_id
    waiting_at(client, waiting, "draft")

    def listed() -> set[str]:
        return {r.run_id for r in client.list_runs(awaiting_signal=True, limit=1000)}

    assert waiting in listed() and plain not in listed()
    assert {r.run_id for r in client.list_runs(limit=10)} >= {waiting, plain}  # both are runs
    out = run_cli(cluster, "--json", "run", "list", "--awaiting-signal", "--limit", "1000")
    assert waiting in {r["run_id"] for r in json.loads(out.stdout)}, out.stdout
    with gateway_http(cluster) as http:
        page = http.get("/api/v1/runs", params={"awaiting_signal": "true", "page_size": 1000})
        assert page.status_code == 200, page.text
        assert waiting in {r["run_id"] for r in page.json()["runs"]}
    client.signal(waiting, "draft", {})
    waiting_at(client, waiting, "publish")  # waits again, at its second step
    assert waiting in listed()
    client.signal(waiting, "publish", {"approved": True})
    assert client.wait(waiting, timeout=60).state == "COMPLETED"
    assert waiting not in listed()


def test_a_batch_of_runs_is_signalled_at_once(client: Client, cluster: Cluster) -> None:
    """``SignalRuns`` (Temporal's batch signal): one signal to a step of every unfinished
    run of a batch — the SDK, the CLI without a RUN_ID, the gateway; a run that refuses it
    is named with why, and the others take it."""
    batch_id, run_ids = client.submit_many(
        [{"text": f"draft {i}"} for i in range(3)], pipeline="reviewed_twice"
    )
    for run_id in run_ids:
        waiting_at(client, run_id, "draft")
    err = refused(client.signal_runs, "draft", {})  # no filter: it would signal every run
    assert err.code == "INVALID_ARGUMENT" and "name a batch" in str(err), err
    nope = client.signal_runs("nope", {}, batch_id=batch_id)
    assert nope.signaled == [] and {r for r, _ in nope.refused} == set(run_ids)
    assert all("NOT_FOUND" in why and "'nope'" in why for _, why in nope.refused), nope
    out = run_cli(cluster, "run", "signal", "--batch", batch_id, "draft", "--json", "{}")
    assert "step draft signalled in 3 runs" in out.stdout, out.stdout
    with gateway_http(cluster) as http:
        body = {"step_id": "publish", "payload": {"approved": "all"}, "batch_id": batch_id}
        reply = http.post("/api/v1/runs:signal", json=body)
        assert reply.status_code == 200, reply.text
        assert sorted(reply.json()["signaled"]) == sorted(run_ids)
    for run_id in run_ids:
        done = client.wait(run_id, timeout=60)
        assert done.state == "COMPLETED", done.error
        assert done.output["echo"]["approval"] == {"approved": "all"}
