"""A task's concurrency limit (task.json "concurrency_limit", Hatchet's concurrency): at most
N of its steps leased at once in a namespace, over every executor — on the real stack."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.sdk import ApiError, Client
from services.localstack import Cluster
from tests.conftest import keyed_channel, run_cli
from tests.integration.executor_tasks import make_task
from wtm.v1 import scheduler_service_pb2 as spb
from wtm.v1 import scheduler_service_pb2_grpc as spb_grpc


def test_a_task_limited_to_one_at_once_runs_its_steps_one_after_another(
    client: Client, tmp_path: Path
) -> None:
    """Four runs of a 0.5 s task limited to one at once, submitted together to an executor
    with two slots: their steps run one after another (each starts once the one before has
    ended, from the runs' own records), while a task without a limit runs on the other slot
    meanwhile; the waiting runs' events say why they wait."""
    client.register_task(make_task(tmp_path, "one_gpu", concurrency_limit=1))
    client.register_task(make_task(tmp_path, "not_limited"))
    _, run_ids = client.submit_many([{"seconds": 0.5, "n": n} for n in range(4)], task="one_gpu")
    time.sleep(0.1)
    free = client.run(task="not_limited", input={"seconds": 0}, timeout=30)
    runs = [client.wait(r, timeout=30) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * 4 and free.state == "COMPLETED"
    spans = sorted((r.steps[0].started_at, r.steps[0].ended_at) for r in runs)  # type: ignore[type-var]
    for (_, ended), (started, _) in zip(spans, spans[1:], strict=False):
        assert started >= ended, spans  # type: ignore[operator]
    # not held behind the limited task's steps: it ran while they did (from the records, not a
    # stopwatch: the suite's other worker shares the cores)
    assert free.steps[0].ended_at < spans[-1][0], (free.steps[0].ended_at, spans)  # type: ignore[operator]
    said = [e.message for r in runs for e in client.watch(r.run_id, timeout=10) if e.step_id]
    assert said.count("waits for a place: its task runs at most 1 at once") >= 2, said


def test_a_limit_per_input_value_runs_one_per_document_and_others_beside_it(
    client: Client, tmp_path: Path
) -> None:
    """Hatchet's concurrency expression: "concurrency_key": "doc" limits the task to one at
    once per document. Two runs of one document and one of another, submitted together to an
    executor with two slots: the other document's runs beside the first, the same
    document's second waits for the first to end (its events name the document); a run
    whose input has no document is refused, naming the field, and nothing is kept of it."""
    client.register_task(
        make_task(tmp_path, "per_document", concurrency_limit=1, concurrency_key="doc")
    )
    _, (a1, a2, b1) = client.submit_many(
        [{"seconds": 0.3, "doc": d} for d in ("a", "a", "b")], task="per_document"
    )
    runs = {r: client.wait(r, timeout=30) for r in (a1, a2, b1)}
    assert [r.state for r in runs.values()] == ["COMPLETED"] * 3
    span = {r: (x.steps[0].started_at, x.steps[0].ended_at) for r, x in runs.items()}
    assert span[a2][0] >= span[a1][1], span  # type: ignore[operator]
    assert span[b1][0] < span[a1][1], span  # type: ignore[operator]
    said = [e.message for e in client.watch(a2, timeout=10) if e.step_id]
    assert 'waits for a place: its task runs at most 1 at once per doc="a"' in said, said
    before = len(list(client.list_runs(task_id="per_document")))
    with pytest.raises(ApiError) as err:
        client.submit(task="per_document", input={"seconds": 0})
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.message.startswith("input_json.doc: task per_document runs at most 1")
    assert len(list(client.list_runs(task_id="per_document"))) == before


def test_a_newer_run_of_a_document_supersedes_the_one_in_progress(
    client: Client, tmp_path: Path
) -> None:
    """Hatchet's CANCEL_IN_PROGRESS ("concurrency_strategy": "cancel_in_progress"), one at a
    time per document: a second run of the document, submitted while the first runs,
    cancels it — its step is stopped at once, its run says why — and runs; a run of
    another document is left alone."""
    client.register_task(
        make_task(
            tmp_path,
            "latest_edit",
            concurrency_limit=1,
            concurrency_key="doc",
            concurrency_strategy="cancel_in_progress",
        )
    )
    first = client.submit(task="latest_edit", input={"seconds": 10, "doc": "a"}).run_id
    other = client.submit(task="latest_edit", input={"seconds": 0.5, "doc": "b"}).run_id
    deadline = time.monotonic() + 10
    while client.get_run(first).state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    newer = client.run(task="latest_edit", input={"seconds": 0, "doc": "a"}, timeout=30)
    superseded = client.wait(first, timeout=30)
    assert newer.state == "COMPLETED" and client.wait(other, timeout=30).state == "COMPLETED"
    assert superseded.state == "CANCELLED" and time.monotonic() - started < 5
    assert superseded.error == (
        'superseded by a newer run: its task runs at most 1 at once per doc="a" '
        "(concurrency_strategy cancel_in_progress)"
    )


def test_a_bad_concurrency_limit_is_refused_naming_the_field(
    client: Client, tmp_path: Path
) -> None:
    for bad in (0, 1001, "2"):
        with pytest.raises(ApiError) as err:
            client.register_task(
                make_task(tmp_path / str(bad), "badly_limited", concurrency_limit=bad)
            )
        assert err.value.code == "INVALID_ARGUMENT"
        assert err.value.message.startswith(
            "task.json: concurrency_limit: must be an integer from 1 to 1000"
        )


def spans_of(client: Client, run_ids: list[str]) -> list[tuple[Any, Any]]:
    runs = [client.wait(r, timeout=30) for r in run_ids]
    assert [r.state for r in runs] == ["COMPLETED"] * len(runs)
    return sorted((r.steps[0].started_at, r.steps[0].ended_at) for r in runs)


def test_an_operator_limits_a_task_over_its_task_json_and_resets_it(
    client: Client, tmp_path: Path
) -> None:
    """Celery's `control rate_limit`, for concurrency: an operator limits a task that has no
    limit of its own to one at once — its runs then run one after another on an executor
    with two slots — and lists it; reset, the task's runs run side by side again."""
    client.register_task(make_task(tmp_path, "partner_api"))
    limits = client.set_task_limits("partner_api", concurrency_limit=1)
    assert limits is not None and (limits.rate_limit, limits.concurrency_limit) == (None, 1)
    assert [(t.task_id, t.concurrency_limit) for t in client.task_limits()] == [("partner_api", 1)]
    _, one_by_one = client.submit_many(
        [{"seconds": 0.3, "n": n} for n in range(3)], task="partner_api"
    )
    spans = spans_of(client, one_by_one)
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False)), spans

    assert client.set_task_limits("partner_api", reset=["concurrency_limit"]) is None
    assert client.task_limits() == []
    _, together = client.submit_many(
        [{"seconds": 0.3, "n": n} for n in range(2)], task="partner_api"
    )
    first, second = spans_of(client, together)
    assert second[0] < first[1], (first, second)  # side by side on the two slots


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"rate_limit": "10/d"}, "INVALID_ARGUMENT", "rate_limit: must be 'N/s', 'N/m' or 'N/h'"),
        ({"concurrency_limit": 1001}, "INVALID_ARGUMENT", "concurrency_limit: must be from 0"),
        ({"rate_burst": 0}, "INVALID_ARGUMENT", "rate_burst: must be a whole number from 1"),
        ({"rate_burst": 3, "reset": ["rate_burst"]}, "INVALID_ARGUMENT", "rate_burst: is both"),
        ({}, "INVALID_ARGUMENT", "rate_limit: nothing to change"),
        ({"reset": ["timeout"]}, "INVALID_ARGUMENT", "reset_fields: 'timeout' is not one of"),
        ({"task_id": "no_such_task", "concurrency_limit": 1}, "NOT_FOUND", "task_id: "),
    ],
)
def test_a_bad_task_limit_is_refused_naming_the_field(
    client: Client, tmp_path: Path, change: dict[str, Any], code: str, message: str
) -> None:
    client.register_task(make_task(tmp_path, "limited_badly"))
    with pytest.raises(ApiError) as err:
        client.set_task_limits(**{"task_id": "limited_badly", **change})
    assert err.value.code == code and err.value.message.startswith(message), err.value.message
    assert client.task_limits() == []  # nothing was kept


def test_an_operator_sets_lists_and_resets_a_task_limit_from_the_cli(
    client: Client, cluster: Cluster, tmp_path: Path
) -> None:
    client.register_task(make_task(tmp_path, "geocoder"))
    shown = run_cli(
        cluster,
        "task",
        "limit",
        "geocoder",
        "--rate-limit",
        "5/s",
        "--rate-burst",
        "4",
        "--concurrency-limit",
        "0",
    )
    assert "geocoder: rate 5/s · bursts of 4 · no concurrency limit" in shown.stdout
    listed = json.loads(run_cli(cluster, "--json", "task", "limits").stdout)
    assert [(x["task_id"], x["rate_limit"], x["concurrency_limit"]) for x in listed] == [
        ("geocoder", "5/s", 0)
    ]
    assert "rate 5/s" in run_cli(cluster, "task", "limits").stdout
    info = run_cli(cluster, "task", "info", "geocoder").stdout
    assert "set by an operator here: rate 5/s · bursts of 4 · no concurrency limit" in info
    as_json = json.loads(run_cli(cluster, "--json", "task", "info", "geocoder").stdout)
    assert as_json["task_id"] == "geocoder"
    assert as_json["operator_limits"]["rate_limit"] == "5/s"
    assert as_json["operator_limits"]["rate_burst"] == 4
    reset = run_cli(
        cluster,
        "task",
        "limit",
        "geocoder",
        "--reset",
        "rate_limit",
        "--reset",
        "rate_burst",
        "--reset",
        "concurrency_limit",
    )
    assert "geocoder: its task.json's limits" in reset.stdout
    assert client.task_limits() == []
    bad = run_cli(cluster, "task", "limit", "geocoder", "--rate-limit", "fast", check=False)
    assert bad.returncode != 0 and "rate_limit: must be" in bad.stderr


def test_task_limits_are_listed_a_page_at_a_time(
    client: Client, cluster: Cluster, tmp_path: Path
) -> None:
    """ListTaskLimits as any generated client calls it: pages of page_size, by task id,
    followed by their tokens; a negative size refused naming it. The SDK follows them all."""
    names = ["paged_a", "paged_b", "paged_c"]
    for name in names:
        client.register_task(make_task(tmp_path, name))
        client.set_task_limits(name, rate_limit="100/s")
    try:
        with keyed_channel(cluster.scheduler_address, cluster.admin_key) as channel:
            stub = spb_grpc.SchedulerServiceStub(channel)
            first = stub.ListTaskLimits(spb.ListTaskLimitsRequest(page_size=2))
            rest = stub.ListTaskLimits(
                spb.ListTaskLimitsRequest(page_size=2, page_token=first.next_page_token)
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.ListTaskLimits(spb.ListTaskLimitsRequest(page_size=-1))
        assert [t.task_id for t in first.limits] == names[:2] and first.next_page_token
        assert [t.task_id for t in rest.limits] == names[2:] and not rest.next_page_token
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_size" in str(err.value.details())
        assert [t.task_id for t in client.task_limits()] == names
    finally:
        for name in names:
            client.set_task_limits(name, reset=["rate_limit"])
