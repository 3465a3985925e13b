"""The HTTP gateway against the session's real stack: the JSON API, the run-event WebSocket
(the same semantics as WatchRun: from the start or after an event id), errors that name the
field, keys required, cross-site cookie calls refused, and the OpenAPI description and docs."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from clients.sdk import Client
from services.localstack import Cluster
from tests.conftest import gateway_http
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "tasks"
IMAGE = ROOT / "tasks" / "data" / "astronaut.jpg"


@pytest.fixture(scope="module")
def http(cluster: Cluster, client: Client) -> Iterator[httpx.Client]:
    """An HTTPS client of the gateway, presenting the admin key."""
    client.register_task(FIXTURES / "word_count")
    client.register_task(FIXTURES / "sleeper")
    with gateway_http(cluster) as h:
        yield h


def watch(cluster: Cluster, run_id: str, after: str = "", key: str = "") -> list[dict[str, Any]]:
    """Every message of the run's event socket until it closes, and the close code last."""

    async def main() -> list[dict[str, Any]]:
        url = cluster.gateway_url.replace("https://", "wss://")
        context = ssl.create_default_context(cafile=str(cluster.ca_file))
        headers = {"Authorization": f"Bearer {key or cluster.admin_key}"}
        found: list[dict[str, Any]] = []
        async with websockets.connect(
            f"{url}/api/v1/runs/{run_id}/events?after={after}",
            ssl=context,
            additional_headers=headers,
        ) as socket:
            try:
                async for message in socket:
                    found.append(json.loads(message))
            except websockets.ConnectionClosed:
                pass
            found.append({"close": socket.close_code})
        return found

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_a_run_submitted_over_http_is_watched_to_its_end_and_resumed(
    http: httpx.Client, cluster: Cluster
) -> None:
    reply = http.post("/api/v1/runs", json={"task": "sleeper", "input": {"seconds": 0.4}})
    assert reply.status_code == 201, reply.text
    run_id = reply.json()["run_id"]
    events = watch(cluster, run_id)
    assert events[-1] == {"close": 1000}
    events = events[:-1]
    kinds = [(e["step_id"], e["kind"], e["state"]) for e in events]
    assert kinds[-1] == ("", "STATE", "COMPLETED")
    progress = [e["progress"] for e in events if e["kind"] == "PROGRESS"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    # Resumed after an event: exactly the events after it.
    middle = events[len(events) // 2]["event_id"]
    again = watch(cluster, run_id, after=middle)[:-1]
    assert [e["event_id"] for e in again] == [e["event_id"] for e in events[len(events) // 2 + 1 :]]
    got = http.get(f"/api/v1/runs/{run_id}").json()
    assert got["state"] == "COMPLETED" and got["output"] == {"slept": 0.4}
    assert got["created_at"].endswith("Z") or got["created_at"].endswith("+00:00")
    listed = http.get("/api/v1/runs", params={"task_id": "sleeper", "page_size": 100}).json()
    assert run_id in [r["run_id"] for r in listed["runs"]]
    assert all(r["task_id"] == "sleeper" for r in listed["runs"])


def test_listing_pages_with_a_token(http: httpx.Client) -> None:
    for n in range(3):
        http.post("/api/v1/runs", json={"task": "word_count", "input": {"text": f"w{n}"}})
    first = http.get("/api/v1/runs", params={"task_id": "word_count", "page_size": 2}).json()
    assert len(first["runs"]) == 2 and first["next_page_token"]
    second = http.get(
        "/api/v1/runs",
        params={"task_id": "word_count", "page_size": 2, "page_token": first["next_page_token"]},
    ).json()
    ids = [r["run_id"] for r in first["runs"]]
    assert not {r["run_id"] for r in second["runs"]} & set(ids)


def test_cancel_over_http(http: httpx.Client, cluster: Cluster) -> None:
    run_id = http.post("/api/v1/runs", json={"task": "sleeper", "input": {"seconds": 20}}).json()[
        "run_id"
    ]
    reply = http.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "not needed"})
    assert reply.status_code == 200 and reply.json()["state"] == "CANCELLED"
    assert "not needed" in reply.json()["error"]
    assert watch(cluster, run_id)[-1] == {"close": 1000}


def test_a_run_timeout_over_http(http: httpx.Client, cluster: Cluster) -> None:
    body = {"task": "sleeper", "input": {"seconds": 20}, "run_timeout_seconds": 1}
    reply = http.post("/api/v1/runs", json=body)
    assert reply.status_code == 201, reply.text
    run = reply.json()
    assert run["deadline_at"] is not None
    assert watch(cluster, run["run_id"])[-1] == {"close": 1000}
    ended = http.get(f"/api/v1/runs/{run['run_id']}").json()
    assert (ended["state"], ended["deadline_at"]) == ("TIMED_OUT", run["deadline_at"])
    refused = http.post("/api/v1/runs", json={**body, "run_timeout_seconds": 0.2})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "run_timeout"


def test_a_run_runs_again_over_http(http: httpx.Client) -> None:
    body = {"task": "word_count", "input": {"text": "a b"}}
    first = http.post("/api/v1/runs", json=body).json()
    again = http.post(f"/api/v1/runs/{first['run_id']}/rerun")
    assert again.status_code == 201, again.text
    assert again.json()["input"] == body["input"]
    assert again.json()["labels"] == {"wtm.rerun_of": first["run_id"]}
    missing = http.post("/api/v1/runs/no-such-run/rerun", json={"latest": True})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "run_id"
    # Resuming needs a run that did not complete (test_pipeline_runs resumes one).
    eventually(
        lambda: http.get(f"/api/v1/runs/{first['run_id']}").json()["state"] == "COMPLETED",
        timeout=30,
        what="the first run's end",
    )
    resumed = http.post(f"/api/v1/runs/{first['run_id']}/rerun", json={"from_failure": True})
    assert resumed.json()["error"]["code"] == "FAILED_PRECONDITION"
    assert resumed.json()["error"]["field"] == "from_failure"  # the body's field


def test_the_unfinished_runs_of_a_batch_are_cancelled_over_http(
    http: httpx.Client, client: Client
) -> None:
    batch_id, run_ids = client.submit_many([{"seconds": 1}] * 3, task="sleeper", start_delay=60)
    reply = http.post("/api/v1/runs:cancel", json={"batch_id": batch_id, "reason": "no"})
    assert reply.status_code == 200, reply.text
    assert sorted(reply.json()["cancelled"]) == sorted(run_ids)
    assert {client.get_run(r).state for r in run_ids} == {"CANCELLED"}
    refused = http.post("/api/v1/runs:cancel", json={"reason": "everything"})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "filter"
    # Resumed: each cancelled run once, as a new run (none of their steps had completed),
    # once the history (which the resume reads, written behind) has their ends.
    eventually(
        lambda: {r.state for r in client.list_runs(batch_id=batch_id)} == {"CANCELLED"},
        timeout=10,
        what="the batch's ends in the history",
    )
    resumed = http.post("/api/v1/runs:resume", json={"batch_id": batch_id})
    assert resumed.status_code == 200, resumed.text
    assert sorted(r["run_id"] for r in resumed.json()["resumed"]) == sorted(run_ids)
    assert resumed.json()["refused"] == []
    for r in resumed.json()["resumed"]:
        assert client.get_run(r["resumed_as"]).labels["wtm.rerun_of"] == r["run_id"]
    nothing = http.post("/api/v1/runs:resume", json={})
    assert nothing.status_code == 400 and nothing.json()["error"]["field"] == "filter"


def test_a_queue_is_paused_and_resumed_over_http(http: httpx.Client) -> None:
    try:
        paused = http.post("/api/v1/queues:pause", json={"queue": "http-probe", "reason": "why"})
        assert paused.status_code == 200, paused.text
        assert {k: paused.json()[k] for k in ("queue", "reason")} == {
            "queue": "http-probe",
            "reason": "why",
        }
        listed = {q["queue"]: q for q in http.get("/api/v1/queues").json()["queues"]}
        assert listed["http-probe"]["pause"]["paused_at"] == paused.json()["paused_at"]
    finally:
        resumed = http.post("/api/v1/queues:resume", json={"queue": "http-probe"})
    assert resumed.json() == {"queue": "http-probe", "resumed": True}
    refused = http.post("/api/v1/queues:pause", json={"queue": "No Such Name"})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "queue"
    # An executor's pause and resume (test_operator_reports pauses a live one).
    missing = http.post("/api/v1/executors:pause", json={"executor_id": "no-such-executor"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "executor_id"
    missing = http.post("/api/v1/executors:resume", json={"executor_id": "no-such-executor"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "executor_id"


def test_bad_input_is_refused_with_the_field_named(http: httpx.Client, cluster: Cluster) -> None:
    missing = http.get("/api/v1/runs/no-such-run")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "NOT_FOUND",
        "message": "run_id: no run no-such-run",
        "field": "run_id",
    }
    bad_state = http.get("/api/v1/runs", params={"state": "finished"})
    assert bad_state.status_code == 400, bad_state.text
    assert bad_state.json()["error"]["field"] == "state"
    assert "'FINISHED' is not a state; one of PENDING" in bad_state.json()["error"]["message"]
    assert http.get("/api/v1/runs", params={"state": "completed"}).status_code == 200
    both = http.post("/api/v1/runs", json={"task": "word_count", "pipeline": "x"})
    assert both.status_code == 400 and both.json()["error"]["field"] == "task"
    unknown = http.post("/api/v1/runs", json={"task": "no_such_task_here"})
    assert unknown.status_code in (400, 404), unknown.text
    assert unknown.json()["error"]["field"]
    for priority in (11, 2**70):  # the scheduler's range; past int32, the SDK's own check
        big = http.post("/api/v1/runs", json={"task": "word_count", "priority": priority})
        assert big.status_code == 400 and big.json()["error"]["field"] == "priority", big.text
    # What FastAPI cannot read is refused as the rest is (it answered a 422 of its own shape).
    not_json = http.post("/api/v1/runs", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400, not_json.text
    assert not_json.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert not_json.json()["error"]["message"].startswith("body: is not JSON")
    for wrong, field, said in (
        (http.post("/api/v1/runs", json={"task": "word_count", "input": "x"}), "input", "dict"),
        (http.get("/api/v1/runs", params={"page_size": -1}), "page_size", "greater than"),
        (http.get("/api/v1/runs", params={"created_after": "yesterday"}), "created_after", ""),
    ):
        assert wrong.status_code == 400, wrong.text
        error = wrong.json()["error"]
        assert error["field"] == field and error["message"].startswith(f"{field}: should be")
        assert said in error["message"]
    documented = http.get("/openapi.json").json()["paths"]["/api/v1/runs"]["post"]["responses"]
    assert "422" not in documented and "400" in documented
    closed = watch(cluster, "no-such-run")
    assert closed[0]["error"]["code"] == "NOT_FOUND" and closed[-1] == {"close": 4404}
    # The gateway is still serving.
    assert http.get("/healthz").json() == {"status": "ok"}


def test_a_key_is_required_and_a_bad_one_refused(cluster: Cluster) -> None:
    verify = ssl.create_default_context(cafile=str(cluster.ca_file))
    with httpx.Client(base_url=cluster.gateway_url, verify=verify) as anonymous:
        reply = anonymous.get("/api/v1/runs")
        assert reply.status_code == 401 and reply.json()["error"]["field"] == "authorization"
        bad = anonymous.get("/api/v1/runs", headers={"Authorization": "Bearer wtm_0.nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "UNAUTHENTICATED"
        assert anonymous.get("/api/v1/session").json() == {
            "authenticated": False,
            "namespace": "",
        }
        login = anonymous.post("/api/v1/session", json={"api_key": "wtm_0.nope"})
        assert login.status_code == 401
        # Text a gRPC header cannot carry is named, not a 500 from inside grpc.
        login = anonymous.post("/api/v1/session", json={"api_key": "wtm_ü"})
        assert login.status_code == 401 and login.json()["error"]["field"] == "api_key"
        login = anonymous.post(
            "/api/v1/session", json={"api_key": cluster.admin_key, "namespace": "équipe"}
        )
        assert login.status_code == 400 and login.json()["error"]["field"] == "namespace"
        latin1 = anonymous.get("/api/v1/runs", headers={"Authorization": b"Bearer wtm_\xfc"})
        assert latin1.status_code == 401, latin1.text
        assert anonymous.get("/healthz").status_code == 200  # liveness needs no key
    refused = watch(cluster, "x", key="wtm_0.nope")
    assert refused[0]["error"]["code"] == "UNAUTHENTICATED" and refused[-1] == {"close": 4401}


def test_the_session_cookie_signs_in_and_cross_site_calls_are_refused(
    cluster: Cluster, http: httpx.Client
) -> None:
    verify = ssl.create_default_context(cafile=str(cluster.ca_file))
    with httpx.Client(base_url=cluster.gateway_url, verify=verify) as browser:
        login = browser.post("/api/v1/session", json={"api_key": cluster.admin_key})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
        assert browser.get("/api/v1/session").json()["authenticated"] is True
        assert browser.get("/api/v1/executors").status_code == 200
        forged = browser.post(
            "/api/v1/runs",
            json={"task": "word_count", "input": {"text": "x"}},
            headers={"Origin": "https://evil.example"},
        )
        assert forged.status_code == 403 and forged.json()["error"]["field"] == "origin"
        same = browser.post(
            "/api/v1/runs",
            json={"task": "word_count", "input": {"text": "x"}},
            headers={"Origin": cluster.gateway_url},
        )
        assert same.status_code == 201
        browser.delete("/api/v1/session")
        assert browser.get("/api/v1/runs").status_code == 401


def test_artifacts_round_trip_and_images_are_served_inline(http: httpx.Client) -> None:
    data = IMAGE.read_bytes()
    reply = http.post(
        "/api/v1/artifacts",
        params={"filename": "astronaut.jpg"},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.status_code == 201, reply.text
    uri = reply.json()["uri"]
    assert uri.startswith("artifact://")
    back = http.get("/api/v1/artifacts", params={"uri": uri})
    assert back.content == data and back.headers["content-type"] == "image/jpeg"
    assert back.headers["x-content-type-options"] == "nosniff"
    text = http.post("/api/v1/artifacts", params={"filename": "a.html"}, content=b"<script>")
    served = http.get("/api/v1/artifacts", params={"uri": text.json()["uri"]})
    assert served.headers["content-disposition"].startswith("attachment")


def test_catalog_fleet_queues_and_health(http: httpx.Client) -> None:
    tasks = http.get("/api/v1/tasks").json()
    assert "word_count" in {t["task_id"] for t in tasks}
    assert http.get("/api/v1/tasks/word_count").json()["task_id"] == "word_count"
    assert http.get("/api/v1/pipelines").status_code == 200
    eventually(  # its vitals come with its heartbeats (a fresh session's may not have yet)
        lambda: any(
            e["state"] == "CONNECTED" and e["memory_bytes"] > 0
            for e in http.get("/api/v1/executors").json()
        ),
        10,
        "a connected executor's memory",
    )
    assert "queues" in http.get("/api/v1/queues").json()
    [default] = http.get("/api/v1/namespaces").json()
    assert default["namespace"] == "default" and default["at_limit"] is False
    assert default["history_retention_days"] == 30.0  # WTM_HISTORY_RETENTION_DAYS
    health = http.get("/api/v1/health")
    assert health.status_code == 200, health.text
    parts = {c["component"]: c["status"] for c in health.json()["checks"]}
    assert parts["gateway"] == parts["registry"] == parts["scheduler/redis"] == "ok"


def test_the_namespaces_schedules_are_listed(http: httpx.Client, client: Client) -> None:
    made = http.post(
        "/api/v1/schedules",
        json={"schedule_id": "gw-hourly", "task": "word_count", "input": {"text": "a b"},
              "every_seconds": 3600},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    bad = http.post("/api/v1/schedules", json={"schedule_id": "gw-bad", "task": "word_count"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "schedule.cron"
    try:
        [hourly] = [
            s for s in http.get("/api/v1/schedules").json() if s["schedule_id"] == "gw-hourly"
        ]
        assert hourly["description"] == "every hour" and hourly["input"] == {"text": "a b"}
        assert hourly["paused"] is False and hourly["next_run_at"] and hourly["runs_started"] == 0
        paused = http.post("/api/v1/schedules/gw-hourly/pause").json()
        assert paused["paused"] is True and paused["next_run_at"] is None
        assert http.post("/api/v1/schedules/gw-hourly/resume").json()["paused"] is False
        missing = http.post("/api/v1/schedules/nope/pause")
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "schedule_id"
        since = datetime.now(UTC) - timedelta(hours=2, minutes=-1)
        filled = http.post(  # the hour's series back from its creation: creation, and -1 h
            "/api/v1/schedules/gw-hourly/backfill",
            json={"start_time": since.isoformat(), "end_time": datetime.now(UTC).isoformat()},
        )
        assert filled.status_code == 200, filled.text
        assert [r["started"] for r in filled.json()] == [True, True]
        future = http.post(
            "/api/v1/schedules/gw-hourly/backfill",
            json={"start_time": since.isoformat(), "end_time": "2999-01-01T00:00:00Z"},
        )
        assert future.status_code == 400 and future.json()["error"]["field"] == "end_time"
        dropped = http.post("/api/v1/schedules/gw-hourly/backfill:cancel")  # none waits
        assert dropped.status_code == 200 and dropped.json() == {"dropped": 0}, dropped.text
        missing = http.post("/api/v1/schedules/nope/backfill:cancel")
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "schedule_id"
        now = http.post("/api/v1/schedules/gw-hourly/trigger")
        assert now.status_code == 201, now.text
        assert now.json()["schedule"]["runs_started"] == 3  # two backfilled, one now
        ran = client.wait(now.json()["run_id"], timeout=60)
        assert ran.output["count"] == 2 and ran.labels["wtm.schedule"] == "gw-hourly"
    finally:
        gone = http.delete("/api/v1/schedules/gw-hourly")
    assert gone.status_code == 204, gone.text
    assert "gw-hourly" not in {s["schedule_id"] for s in http.get("/api/v1/schedules").json()}
    again = http.delete("/api/v1/schedules/gw-hourly")
    assert again.status_code == 404 and again.json()["error"]["field"] == "schedule_id"


def test_runs_are_listed_by_label(http: httpx.Client, client: Client) -> None:
    run = client.submit(task="word_count", input={"text": "a"}, labels={"gw.probe": "1"})
    page = http.get("/api/v1/runs", params={"label": "gw.probe=1"}).json()
    assert [r["run_id"] for r in page["runs"]] == [run.run_id]
    assert http.get("/api/v1/runs", params={"label": "gw.probe=2"}).json()["runs"] == []
    bad = http.get("/api/v1/runs", params={"label": "gw.probe"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "label"


def test_openapi_and_its_docs_page_are_served_without_a_cdn(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert "/api/v1/runs" in spec["paths"] and "/api/v1/health" in spec["paths"]
    docs = http.get("/docs").text
    assert "swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    bundle = http.get("/docs-static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    page = http.get("/")
    assert page.status_code == 200 and "/ui/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_container_health_check_reaches_the_gateway(cluster: Cluster) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.common.healthcheck",
            "--http",
            f"{cluster.gateway_url}/healthz",
            "--tls-ca",
            str(cluster.ca_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def test_the_gateway_process_holds_no_key_and_no_backing_service_credential(
    cluster: Cluster,
) -> None:
    raw = Path(f"/proc/{cluster.gateway.pid}/environ").read_bytes()
    names = {entry.split(b"=", 1)[0].decode() for entry in raw.split(b"\0") if entry}
    held = names & {
        "WTM_API_KEY",
        "WTM_API_KEY_FILE",
        "WTM_REDIS_URL",
        "WTM_MONGODB_URI",
        "WTM_S3_ACCESS_KEY",
        "WTM_S3_SECRET_KEY",
        "WTM_BOOTSTRAP_ADMIN_KEY_FILE",
    }
    assert not held, held


def test_an_operator_sets_and_resets_a_task_limit_over_http(
    http: httpx.Client, client: Client
) -> None:
    client.register_task(FIXTURES / "echo")
    set_ = http.post("/api/v1/task-limits", json={"task_id": "echo", "concurrency_limit": 3})
    assert set_.status_code == 200, set_.text
    assert {k: set_.json()[k] for k in ("task_id", "rate_limit", "concurrency_limit")} == {
        "task_id": "echo",
        "rate_limit": None,
        "concurrency_limit": 3,
    }
    listed = http.get("/api/v1/task-limits").json()
    assert [(t["task_id"], t["concurrency_limit"]) for t in listed] == [("echo", 3)]
    reset = http.post(
        "/api/v1/task-limits", json={"task_id": "echo", "reset_fields": ["concurrency_limit"]}
    )
    assert reset.status_code == 200 and reset.json() is None
    assert http.get("/api/v1/task-limits").json() == []
    bad = http.post("/api/v1/task-limits", json={"task_id": "echo", "rate_limit": "lots"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "rate_limit"
    big = http.post("/api/v1/task-limits", json={"task_id": "echo", "concurrency_limit": 5000})
    assert big.status_code == 400 and big.json()["error"]["field"] == "concurrency_limit"
    burst = http.post("/api/v1/task-limits", json={"task_id": "echo", "rate_burst": 4})
    assert burst.status_code == 200 and burst.json()["rate_burst"] == 4, burst.text
    assert http.get("/api/v1/task-limits").json()[0]["rate_burst"] == 4
    back = http.post(
        "/api/v1/task-limits", json={"task_id": "echo", "reset_fields": ["rate_burst"]}
    )
    assert back.status_code == 200 and back.json() is None  # the stack's other tests see none
    none = http.post("/api/v1/task-limits", json={"task_id": "echo", "rate_burst": 0})
    assert none.status_code == 400 and none.json()["error"]["field"] == "rate_burst"
