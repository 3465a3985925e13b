"""The parsers that take user input, pinned by examples and fuzzed (hypothesis, bounded):
whatever comes in, only our own errors come out — never a RecursionError, a KeyError or a
backend's message."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import tarfile
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common import jsondoc
from common.errors import InvalidArgument, WtmError
from common.packaging import inspect_archive
from services.common import mapping
from services.common.paging import decode_token, encode_token, page_of, page_size_of
from services.registry.manifest import parse_manifest, version_sort_key
from services.registry.pipeline_spec import ancestors, config_warnings, parse_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


# JSON documents -------------------------------------------------------------------------


def test_nesting_over_the_limit_is_refused_by_name() -> None:
    with pytest.raises(InvalidArgument, match="input_json: nests deeper than 64"):
        jsondoc.loads("[" * 65 + "]" * 65, field="input_json")
    assert jsondoc.loads("[" * 64 + "]" * 64, field="input_json") is not None
    # Brackets inside strings are text, not nesting.
    assert jsondoc.loads(json.dumps({"a": "[" * 500}), field="x") == {"a": "[" * 500}


def test_a_thousand_levels_is_our_error_not_a_recursion_error() -> None:
    with pytest.raises(InvalidArgument, match="deeper than"):
        jsondoc.loads('{"a": ' + "[" * 1000 + "]" * 1000 + "}", field="input_json")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    with pytest.raises(InvalidArgument, match=f"input_json: {constant} is not JSON"):
        jsondoc.loads(f'{{"x": [1, {constant}]}}', field="input_json")


def test_an_output_holding_nan_names_where() -> None:
    with pytest.raises(jsondoc.NotJson, match=r"nan at \$\.scores\[1\]"):
        jsondoc.dumps({"scores": [0.5, math.nan]})


@FUZZ
@given(st.text(max_size=200))
def test_any_text_parses_or_is_invalid_argument(text: str) -> None:
    try:
        jsondoc.loads(text, field="input_json")
    except InvalidArgument as exc:
        assert exc.field == "input_json"


@FUZZ
@given(json_values)
def test_any_json_value_round_trips(value: Any) -> None:
    assert jsondoc.loads(jsondoc.dumps(value), field="x") == value


# Versions (semver 2.0 §11) ----------------------------------------------------------------


def test_versions_sort_by_semver_precedence() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
        "10.0.0",
        "999999.0.0",
        "1000000.0.0",
    ]
    assert sorted(reversed(ordered), key=version_sort_key) == ordered
    assert version_sort_key("1.0.0+build.1") == version_sort_key("1.0.0+build.2")


semver = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}" + (f"-{'.'.join(pre)}" if pre else ""),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.lists(
        st.integers(0, 10**9).map(str)
        | st.from_regex(r"[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*", fullmatch=True),
        max_size=3,
    ),
)


def _precedence(version: str) -> tuple[Any, ...]:
    """Semver §11 written the obvious way, to check the sort key against."""
    core, _, pre = version.partition("-")
    nums = tuple(int(x) for x in core.split("."))
    if not pre:
        return (nums, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (nums, 0, ids)


@FUZZ
@given(semver, semver)
def test_the_sort_key_orders_like_semver(a: str, b: str) -> None:
    assert (version_sort_key(a) < version_sort_key(b)) == (_precedence(a) < _precedence(b))


# Page tokens ------------------------------------------------------------------------------


def test_a_token_carries_plain_values_of_its_shape_only() -> None:
    assert decode_token(encode_token([5, "r"]), (int, str)) == [5, "r"]
    for bad in ([{"$ne": None}, "~"], [2**63, "x"], [True, "x"], ["5", "r"], [5]):
        with pytest.raises(InvalidArgument, match="page_token"):
            decode_token(encode_token(bad), (int, str))


@FUZZ
@given(
    st.text(max_size=80)
    | json_values.map(lambda v: encode_token(v) if isinstance(v, list) else "x")
)
def test_any_token_decodes_or_is_invalid_argument(token: str) -> None:
    try:
        values = decode_token(token, (str, str))
    except InvalidArgument as exc:
        assert exc.field == "page_token"
    else:
        assert all(type(v) is str for v in values)


# Mappings ---------------------------------------------------------------------------------


def test_a_mapping_is_bounded_in_segments_and_wildcards() -> None:
    with pytest.raises(InvalidArgument, match="at most 32"):
        mapping.parse("$.a" + "[*]" * 600, set(), "input_mapping.x")
    mapping.parse("$.a[*].b[*]", set(), "input_mapping.x")


@FUZZ
@given(st.text(alphabet="$.[]*0123456789abc_-", max_size=40), json_values)
def test_any_expression_parses_and_evaluates_or_fails_cleanly(text: str, doc: Any) -> None:
    try:
        path = mapping.parse(text, {"abc"}, "input_mapping.k")
    except InvalidArgument:
        return
    with contextlib.suppress(mapping.MissingValue):
        mapping.evaluate(path, doc)


# Pipelines and manifests -------------------------------------------------------------------


def test_a_long_chain_listed_backwards_validates_without_recursion() -> None:
    steps = [{"step_id": "s0", "task_id": "t"}] + [
        {"step_id": f"s{i}", "task_id": "t", "depends_on": [f"s{i - 1}"]} for i in range(1, 500)
    ]
    [spec] = parse_config({"pipeline_id": "chain", "steps": list(reversed(steps))})
    assert len(ancestors(spec.steps)["s499"]) == 499


def test_a_cycle_in_a_long_chain_is_named() -> None:
    steps = [{"step_id": "s0", "task_id": "t", "depends_on": ["s499"]}] + [
        {"step_id": f"s{i}", "task_id": "t", "depends_on": [f"s{i - 1}"]} for i in range(1, 500)
    ]
    with pytest.raises(InvalidArgument, match="dependency cycle: s0 -> s499"):
        parse_config({"pipeline_id": "loop", "steps": steps})


step_docs = st.fixed_dictionaries(
    {"task_id": st.sampled_from(["a", "b", "a@1.0.0", "", "x@bad"])},
    optional={
        "step_id": st.sampled_from(["s1", "s2", "a", "b", "bad id", 3]),
        "depends_on": st.lists(st.sampled_from(["s1", "s2", "a", "b", "zz"]), max_size=3)
        | st.sampled_from(["a", 5]),
        "input_mapping": st.dictionaries(
            st.text(max_size=4), st.sampled_from(["$.x", "$.a.y[*]", "$", "$.s1[0]", 7]), max_size=3
        ),
        "timeout": st.integers(-5, 10**6) | st.text(max_size=3),
        "retry_count": st.integers(-1, 50),
        "parallel_group": st.sampled_from(["", "g", 1]),
    },
)


@FUZZ
@given(
    st.fixed_dictionaries(
        {
            "pipeline_id": st.sampled_from(["p", "P!", ""]),
            "steps": st.lists(step_docs, max_size=5) | json_values,
        },
        optional={
            "version": st.sampled_from(["1.0.0", "x", 1]),
            "enabled": st.booleans() | st.just("y"),
            "global_settings": json_values,
            "input_validation": json_values,
            "output_format": json_values,
        },
    ).flatmap(lambda p: st.sampled_from([p, {"pipelines": {"p": p}}, {"pipelines": [p]}]))
    | json_values
)
def test_any_pipeline_config_parses_or_is_invalid_argument(doc: Any) -> None:
    """As the registry reads a config: its warnings first, then the pipelines."""
    with contextlib.suppress(InvalidArgument):
        config_warnings(doc)
        parse_config(doc)


def test_steps_that_are_not_a_list_are_named_not_a_crash() -> None:
    for steps in (3.5, 7, True, None):  # a float once reached the registry as a TypeError
        with pytest.raises(InvalidArgument, match=r"pipelines\.p\.steps: must be a non-empty list"):
            config_warnings({"pipelines": {"p": {"steps": steps}}})
            parse_config({"pipelines": {"p": {"steps": steps}}})


# A schema's own keys with any value: {"type": []} once reached the registry as a TypeError.
schema_docs = st.fixed_dictionaries(
    {}, optional={"type": json_values, "properties": json_values, "required": json_values}
)


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "task_id": st.sampled_from(["ok_task", "Bad", 3, ""]),
            "version": st.sampled_from(["1.0.0", "01.0.0", "1.0.0-rc.1", None]),
            "entry_point": st.sampled_from(["task.Task", "task.py", 5]),
            "priority": st.integers(-3, 30) | st.booleans(),
            "timeout": st.integers(-3, 10**6),
            "tags": st.lists(st.text(max_size=3), max_size=3) | st.text(max_size=3),
            "input_schema": json_values | schema_docs,
            "output_schema": json_values | schema_docs,
            "executor_labels": json_values,
            "queue": st.text(max_size=10),
            "batching": json_values
            | st.fixed_dictionaries({}, optional={"max_batch_size": json_values}),
            "resources": json_values
            | st.fixed_dictionaries({}, optional={"memory_mb": json_values}),
            "max_retries": json_values,
        },
    ).map(json.dumps)
    | st.text(max_size=100)
    | st.binary(max_size=100)
)
@example('{"task_id": "t", "version": "1.0.0", "input_schema": {"type": []}}')
@example('{"task_id": "t", "version": "1.0.0", "output_schema": {"type": {"a": 1}}}')
def test_any_manifest_parses_or_is_invalid_argument(text: str | bytes) -> None:
    """Whatever a task.json holds, it parses or is refused naming where."""
    try:
        parse_manifest(text)
    except InvalidArgument as exc:
        assert exc.field is not None and exc.field.startswith("task.json")


# Archives --------------------------------------------------------------------------------


def _tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@FUZZ
@given(
    st.binary(max_size=300)
    | st.lists(
        st.tuples(st.text(alphabet="abc./\\-_ ", min_size=1, max_size=12), st.binary(max_size=50)),
        max_size=4,
    ).map(_tar_gz)
)
def test_any_archive_is_read_or_refused_with_our_error(data: bytes) -> None:
    try:
        contents = inspect_archive(data)
    except WtmError:
        return
    assert all(".." not in name.split("/") for name in contents.files)


def test_base64_of_garbage_is_not_a_token() -> None:
    with pytest.raises(InvalidArgument):
        decode_token(base64.urlsafe_b64encode(b"\xff\xfe").decode(), (str, str))


# Task outputs ---------------------------------------------------------------------------


def test_a_task_output_that_is_not_json_fails_its_step_as_fatal() -> None:
    from tasks.base.runtime import run_once
    from tasks.base.task_base import SimpleTask

    class Scores(SimpleTask):
        def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
            return {"score": float(input_data["x"])}

    assert run_once(Scores(), '{"x": 0.5}') == ("ok", '{"score": 0.5}')
    verdict, error = run_once(Scores(), '{"x": "nan"}')
    assert verdict == "fatal"
    assert "process() returned a value that is not JSON" in error


def test_a_report_pages_by_its_sort_key() -> None:
    """``page_of``: pages of a report built whole for each call, in key order; an item gone
    between pages is not missed past, none is seen twice; page sizes checked."""
    items = ["d", "a", "c", "b", "e"]
    page, token = page_of(items, lambda x: [x], (str,), 2, "")
    assert page == ["a", "b"] and token
    page, token = page_of(items[1:], lambda x: [x], (str,), 2, token)  # "d" went meanwhile
    assert page == ["c", "e"] and token == ""
    assert page_of([], lambda x: [x], (str,), 2, "") == ([], "")
    assert page_size_of(0, 50, 1000) == 50 and page_size_of(1000, 50, 1000) == 1000
    assert page_size_of(1001, 50, 1000) == 1000 == page_size_of(2**31 - 1, 50, 1000)  # AIP-158
    for bad in (-1, -(2**31)):
        with pytest.raises(InvalidArgument, match="must not be negative") as err:
            page_size_of(bad, 50, 1000)
        assert err.value.field == "page_size"
    with pytest.raises(InvalidArgument) as err:
        page_of(items, lambda x: [x], (str,), 2, encode_token([1]))  # a token of ints
    assert err.value.field == "page_token"
