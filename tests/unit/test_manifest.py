"""task.json validation: defaults, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from common.errors import InvalidArgument
from common.rate_limits import interval_ms
from services.registry.manifest import parse_manifest, version_sort_key
from services.scheduler.queue_names import queue_variant, serves


def manifest(**fields: object) -> str:
    return json.dumps({"task_id": "face_detection", "version": "1.2.3", **fields})


def test_defaults_fill_what_task_json_leaves_out() -> None:
    m = parse_manifest(manifest())
    assert (m.entry_point, m.queue, m.priority, m.timeout, m.max_retries) == (
        "task.Task",
        "default",
        5,
        300,
        0,
    )
    assert m.module_path == "task.py"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"priority": 11}, "priority"),
        ({"priority": True}, "priority"),
        ({"timeout": 0}, "timeout"),
        ({"version": "1.0"}, "version"),
        ({"task_id": "Face-Detection"}, "task_id"),
        ({"entry_point": "task"}, "entry_point"),
        ({"tags": "vision"}, "tags"),
        ({"executor_labels": ["gpu"]}, "executor_labels"),
        ({"executor_labels": {"gpu": True}}, "executor_labels.gpu"),
        ({"input_schema": {"type": "picture"}}, "input_schema.type"),
        ({"input_schema": {"required": "image"}}, "input_schema.required"),
        ({"batching": 8}, "batching"),
        ({"batching": {"max_batch_size": 0}}, "batching.max_batch_size"),
        ({"batching": {"max_batch_size": 1000}}, "batching.max_batch_size"),
        ({"batching": {"max_wait_ms": -1}}, "batching.max_wait_ms"),
        ({"batching": {"max_batch": 8}}, "batching.max_batch"),
        ({"rate_limit": 10}, "rate_limit"),
        ({"rate_limit": "10/d"}, "rate_limit"),
        ({"rate_limit": "0/s"}, "rate_limit"),
        ({"rate_limit": "1.5/s"}, "rate_limit"),
        ({"rate_limit": "\uff11/s"}, "rate_limit"),
        ({"rate_limit": "20000/s"}, "rate_limit"),
        ({"rate_limit": "5/s", "batching": {"max_batch_size": 4}}, "rate_limit"),
        ({"rate_burst": 5}, "rate_burst"),
        ({"rate_limit": "5/s", "rate_burst": 0}, "rate_burst"),
        ({"rate_limit": "5/s", "rate_burst": 10_001}, "rate_burst"),
        ({"rate_limit": "5/s", "rate_burst": "5"}, "rate_burst"),
        ({"rate_limit": "5/s", "rate_burst": 2.5}, "rate_burst"),
        ({"rate_limit": "5/s", "rate_burst": True}, "rate_burst"),
        ({"concurrency_limit": 0}, "concurrency_limit"),
        ({"concurrency_limit": 1001}, "concurrency_limit"),
        ({"concurrency_limit": "2"}, "concurrency_limit"),
        ({"concurrency_limit": True}, "concurrency_limit"),
        ({"concurrency_limit": 2, "batching": {"max_batch_size": 4}}, "concurrency_limit"),
        ({"concurrency_key": "user_id"}, "concurrency_key"),
        ({"concurrency_limit": 1, "concurrency_key": 7}, "concurrency_key"),
        ({"concurrency_limit": 1, "concurrency_key": "input.user_id"}, "concurrency_key"),
        ({"concurrency_limit": 1, "concurrency_key": ""}, "concurrency_key"),
        ({"concurrency_strategy": "cancel_newest"}, "concurrency_strategy"),
        ({"concurrency_limit": 1, "concurrency_strategy": "drop"}, "concurrency_strategy"),
        ({"concurrency_limit": 1, "concurrency_strategy": ["wait"]}, "concurrency_strategy"),
        (
            {
                "concurrency_limit": 1,
                "concurrency_key": "user",
                "input_schema": {"properties": {"user_id": {"type": "string"}}},
            },
            "concurrency_key",
        ),
        ({"requirements": ["numpy", "numpy >= >= 1"]}, "requirements[1]"),
        ({"requirements": ["--index-url=https://example.invalid"]}, "requirements[0]"),
        (
            {"requirements": ["x @ https://example.invalid/x-1.0-py3-none-any.whl"]},
            "requirements[0]",
        ),
    ],
)
def test_each_bad_field_is_named(fields: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_manifest(manifest(**fields))
    assert f"task.json: {named}:" in str(err.value)


def test_a_concurrency_limit_is_a_whole_number_of_steps_running_at_once() -> None:
    assert parse_manifest(manifest(concurrency_limit=2)).concurrency_limit == 2
    assert parse_manifest(manifest()).concurrency_limit == 0


def test_a_concurrency_key_names_the_input_field_the_limit_holds_per_value_of() -> None:
    found = parse_manifest(
        manifest(
            concurrency_limit=1,
            concurrency_key="user_id",
            input_schema={"properties": {"user_id": {"type": "string"}}},
        )
    )
    assert (found.concurrency_limit, found.concurrency_key) == (1, "user_id")
    assert parse_manifest(manifest(concurrency_limit=1)).concurrency_key == ""


def test_a_concurrency_strategy_says_which_run_gives_up_a_place() -> None:
    for strategy in ("wait", "cancel_in_progress", "cancel_newest"):
        found = parse_manifest(manifest(concurrency_limit=1, concurrency_strategy=strategy))
        assert found.concurrency_strategy == strategy
    assert parse_manifest(manifest(concurrency_limit=1)).concurrency_strategy == "wait"


def test_a_rate_limit_is_a_count_per_second_minute_or_hour() -> None:
    assert parse_manifest(manifest(rate_limit="10/s")).rate_limit == "10/s"
    assert parse_manifest(manifest(rate_limit="0100/m")).rate_limit == "100/m"
    assert parse_manifest(manifest()).rate_limit == ""
    assert [interval_ms(r) for r in ("10/s", "3/m", "1/h")] == [100.0, 20_000.0, 3_600_000.0]


def test_a_rate_limit_may_have_a_burst() -> None:
    assert parse_manifest(manifest(rate_limit="60/m", rate_burst=10)).rate_burst == 10
    assert parse_manifest(manifest(rate_limit="60/m")).rate_burst == 1


def test_missing_task_id_is_named() -> None:
    with pytest.raises(InvalidArgument, match="task.json: task_id: is required"):
        parse_manifest('{"version": "1.0.0"}')


def test_not_json_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="task.json: is not valid JSON"):
        parse_manifest("{nope")


def test_versions_sort_by_semver_with_prereleases_first() -> None:
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "0.9.9", "2.0.0-alpha"]
    ordered = sorted(versions, key=version_sort_key)
    assert ordered == ["0.9.9", "1.2.0-rc.1", "1.2.0", "1.10.0", "2.0.0-alpha"]


def test_executor_labels_are_kept_and_become_a_queue_variant() -> None:
    m = parse_manifest(manifest(executor_labels={"zone": "eu", "gpu": "true"}))
    assert m.executor_labels == {"gpu": "true", "zone": "eu"}
    variant = queue_variant("vision", m.executor_labels)
    assert variant == "vision|gpu=true,zone=eu"
    assert serves(variant, ["vision"], {"gpu": "true", "zone": "eu", "disk": "ssd"})
    assert not serves(variant, ["vision"], {"gpu": "true"})
    assert not serves(variant, ["default"], {"gpu": "true", "zone": "eu"})


def test_batching_is_kept_with_its_defaults() -> None:
    assert parse_manifest(manifest()).batching == {}
    assert parse_manifest(manifest(batching={})).batching == {"max_batch_size": 8, "max_wait_ms": 0}
    m = parse_manifest(manifest(batching={"max_batch_size": 32, "max_wait_ms": 20}))
    assert m.batching == {"max_batch_size": 32, "max_wait_ms": 20}
