"""task.json validation: defaults, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from common.errors import InvalidArgument
from common.rate_limits import MAX_CONCURRENCY, interval_ms
from services.registry.manifest import (
    MAX_BATCH_SIZE,
    MAX_BATCH_WAIT_MS,
    MAX_MANIFEST_BYTES,
    MAX_RETRIES,
    MAX_TIMEOUT_SECONDS,
    RESOURCE_KEYS,
    check_entry_point,
    parse_manifest,
    version_sort_key,
)
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
        ({"retry_backoff": 0}, "retry_backoff"),
        ({"retry_backoff": "5s"}, "retry_backoff"),
        ({"retry_backoff": True}, "retry_backoff"),
        ({"retry_backoff": 86_401}, "retry_backoff"),
        ({"retry_backoff_max": 60}, "retry_backoff_max"),
        ({"retry_backoff": 10, "retry_backoff_max": 5}, "retry_backoff_max"),
        ({"retry_backoff": 10, "retry_backoff_max": "1m"}, "retry_backoff_max"),
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


def test_a_task_may_have_its_own_retry_backoff() -> None:
    """Celery's names: the first retry's delay, doubling to a longest (600 s by default)."""
    assert parse_manifest(manifest()).retry_backoff is None  # the scheduler's own policy
    assert parse_manifest(manifest(retry_backoff=5)).retry_backoff == (5.0, 600.0)
    assert parse_manifest(manifest(retry_backoff=900)).retry_backoff == (900.0, 900.0)
    both = parse_manifest(manifest(retry_backoff=0.5, retry_backoff_max=30))
    assert both.retry_backoff == (0.5, 30.0)


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


@pytest.mark.parametrize(
    ("resources", "named"),
    [
        ([1], "resources"),
        ({"gpus": 1}, "resources.gpus"),
        ({"memory_mb": 0}, "resources.memory_mb"),
        ({"memory_mb": 2**40 + 1}, "resources.memory_mb"),
        ({"processes": True}, "resources.processes"),
        ({"open_files": "64"}, "resources.open_files"),
        ({"disk_mb": 1.5}, "resources.disk_mb"),
    ],
)
def test_a_bad_resource_request_is_named(resources: object, named: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_manifest(manifest(resources=resources))
    assert err.value.field == f"task.json: {named}"


def test_resource_requests_at_their_limits_are_kept() -> None:
    asked = {key: 1 for key in RESOURCE_KEYS} | {"memory_mb": 2**40}
    assert parse_manifest(manifest(resources=asked)).resources == asked
    assert parse_manifest(manifest()).resources == {}


def test_batching_and_concurrency_at_their_limits_are_kept_and_one_past_refused() -> None:
    for size, wait in ((1, 0), (MAX_BATCH_SIZE, MAX_BATCH_WAIT_MS)):
        batching = {"max_batch_size": size, "max_wait_ms": wait}
        assert parse_manifest(manifest(batching=batching)).batching == batching
    for batching, named in (
        ({"max_batch_size": MAX_BATCH_SIZE + 1}, "batching.max_batch_size"),
        ({"max_wait_ms": MAX_BATCH_WAIT_MS + 1}, "batching.max_wait_ms"),
    ):
        with pytest.raises(InvalidArgument) as err:
            parse_manifest(manifest(batching=batching))
        assert err.value.field == f"task.json: {named}"
    for limit in (1, MAX_CONCURRENCY):
        assert parse_manifest(manifest(concurrency_limit=limit)).concurrency_limit == limit


def test_a_task_json_of_the_largest_size_allowed_parses_and_one_byte_more_does_not() -> None:
    short = manifest(description="")
    largest = manifest(description="x" * (MAX_MANIFEST_BYTES - len(short.encode())))
    assert len(largest.encode()) == MAX_MANIFEST_BYTES
    assert parse_manifest(largest).task_id == "face_detection"
    with pytest.raises(InvalidArgument) as err:
        parse_manifest(largest.replace('"x', '"xx', 1))
    assert err.value.field == "task.json" and f"over {MAX_MANIFEST_BYTES} bytes" in str(err.value)


@pytest.mark.parametrize(
    "source",
    [
        b"class Task:\n    pass\n",
        b"from tasks.base.task_base import SimpleTask as Task\n",
        b"import base\nTask = base.Made\n",
        b"Task: type = object\n",
        b"def Task():\n    return None\n",
    ],
)
def test_an_entry_point_bound_at_the_modules_top_level_is_accepted(source: bytes) -> None:
    check_entry_point(parse_manifest(manifest()), source)


def test_an_entry_point_the_module_does_not_bind_is_refused_with_a_hint_for_a_file_name() -> None:
    nested = b"if True:\n    class Task:\n        pass\n"
    with pytest.raises(InvalidArgument) as err:
        check_entry_point(parse_manifest(manifest()), nested)
    assert err.value.field == "task.json: entry_point"
    assert "task.py defines no 'Task' at its top level" in err.value.message
    assert "write 'module.Class'" not in err.value.message
    as_file = parse_manifest(manifest(entry_point="task.py"))
    with pytest.raises(InvalidArgument) as err:
        check_entry_point(as_file, b"class Task:\n    pass\n")
    assert "reads as module 'task', class 'py': write 'module.Class'" in err.value.message
    with pytest.raises(InvalidArgument) as err:
        check_entry_point(parse_manifest(manifest()), b"class Task(:\n")
    assert err.value.field == "task.json: entry_point"
    assert "entry_point: task.py, line 1 does not parse" in err.value.message


def test_a_key_task_json_does_not_know_is_refused_naming_it() -> None:
    parse_manifest(manifest(queue="vision"), strict=True)
    with pytest.raises(InvalidArgument) as err:
        parse_manifest(manifest(max_retires=3, zzz=1), strict=True)
    assert err.value.field == "task.json: max_retires"
    assert "- task.json: zzz: unknown key 'zzz'" in err.value.message
    assert parse_manifest(manifest(zzz=1)).raw["zzz"] == 1  # a stored manifest is read as is


def test_every_problem_of_a_task_json_is_named_at_once() -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_manifest(
            manifest(
                version="1.0", priority=11, input_schema="x", tags="a", maxretries=1,
                concurrency_limit=2, concurrency_key="doc_id",
            ),
            strict=True,
        )  # fmt: skip
    lines = err.value.message.splitlines()
    fields = sorted(line.removeprefix("- ").split(": ")[1] for line in [lines[0], *lines[2:]])
    assert fields == ["input_schema", "maxretries", "priority", "tags", "version"], lines
    assert lines[1] == "4 more problems:"


def test_a_problem_that_follows_from_another_is_not_named_again() -> None:
    """A rate_burst needs a rate_limit: with the rate limit refused, only it is named."""
    with pytest.raises(InvalidArgument) as err:
        parse_manifest(manifest(rate_limit="lots", rate_burst=3))
    assert err.value.field == "task.json: rate_limit" and "more problem" not in err.value.message


def test_priority_timeout_and_retries_at_their_limits_are_kept() -> None:
    for priority, timeout, retries in ((1, 1, 0), (10, MAX_TIMEOUT_SECONDS, MAX_RETRIES)):
        m = parse_manifest(manifest(priority=priority, timeout=timeout, max_retries=retries))
        assert (m.priority, m.timeout, m.max_retries) == (priority, timeout, retries)
    for field, past in (("priority", 0), ("timeout", MAX_TIMEOUT_SECONDS + 1), ("max_retries", -1)):
        with pytest.raises(InvalidArgument) as err:
            parse_manifest(manifest(**{field: past}))
        assert err.value.field == f"task.json: {field}"
