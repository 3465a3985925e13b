"""Pipeline configs: what is accepted, and each refusal naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common.errors import InvalidArgument, NotFound
from common.problems import Problems
from services.registry.manifest import MAX_RETRIES, MAX_TIMEOUT_SECONDS
from services.registry.pipeline_spec import (
    MAX_PARALLEL_TASKS,
    MAX_RUN_TIMEOUT_SECONDS,
    MAX_STEPS,
    PinnedTask,
    PipelineSpec,
    config_warnings,
    parse_config,
    pin,
)

FACE: dict[str, Any] = {
    "pipelines": {
        "face_processing_pipeline": {
            "name": "Face processing",
            "version": "1.0.0",
            "steps": [
                {
                    "task_id": "face_detection",
                    "timeout": 30,
                    "retry_count": 2,
                    "input_mapping": {"image_path": "$.image_path"},
                },
                {
                    "step_id": "attributes",
                    "task_id": "face_attribute",
                    "depends_on": ["face_detection"],
                    "parallel_group": "analysis",
                    "input_mapping": {
                        "image_path": "$.image_path",
                        "faces": "$.face_detection.faces",
                    },
                },
                {
                    "step_id": "features",
                    "task_id": "face_extractor@1.0.0",
                    "depends_on": ["face_detection"],
                    "parallel_group": "analysis",
                    "input_mapping": {"boxes": "$.face_detection.faces[*].bbox", "size": 128},
                },
                {
                    "step_id": "merge",
                    "task_id": "face_merge",
                    "depends_on": ["attributes", "features"],
                    "input_mapping": {"first": "$.attributes.faces[0]", "features": "$.features"},
                },
            ],
            "input_validation": {
                "required_fields": ["image_path"],
                "supported_formats": ["jpg", "png"],
            },
        }
    },
    "global_settings": {"default_timeout": 120, "max_retries": 1},
}


def config(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(FACE)
    steps = doc["pipelines"]["face_processing_pipeline"]["steps"]
    for index_key, value in changes.items():
        index, key = index_key.split("__")
        steps[int(index[1:])][key] = value
    return doc


def refusal(doc: Any) -> str:
    with pytest.raises(InvalidArgument) as err:
        parse_config(doc)
    return str(err.value)


def test_the_face_pipeline_parses_with_defaults_and_task_ids_as_dependencies() -> None:
    [p] = parse_config(FACE)
    ids = [s.step_id for s in p.steps]
    assert ids == ["face_detection", "attributes", "features", "merge"]
    assert p.steps[1].depends_on == ("face_detection",)
    assert (p.steps[0].timeout, p.steps[0].retry_count) == (30, 2)
    assert (p.steps[1].timeout, p.steps[1].retry_count) == (120, 1)  # global settings
    assert p.steps[2].task_version == "1.0.0"
    assert p.sinks == ["merge"]
    assert p.dependents("face_detection") == ["attributes", "features"]


def test_a_single_pipeline_needs_its_id() -> None:
    single = {"pipeline_id": "solo", "steps": [{"task_id": "echo"}]}
    assert parse_config(single)[0].pipeline_id == "solo"
    assert "pipeline_id: is required" in refusal({"steps": [{"task_id": "echo"}]})


def test_duplicate_step_ids_are_refused() -> None:
    msg = refusal(config(s2__step_id="attributes"))
    assert "steps[2].step_id" in msg and "duplicate step id 'attributes'" in msg


def test_an_unknown_dependency_is_refused() -> None:
    assert "steps[3].depends_on: unknown step 'colour'" in refusal(
        config(s3__depends_on=["colour"])
    )


def test_a_task_id_naming_two_steps_is_ambiguous() -> None:
    doc = {
        "pipeline_id": "p",
        "steps": [
            {"step_id": "a", "task_id": "echo"},
            {"step_id": "b", "task_id": "echo"},
            {"step_id": "c", "task_id": "merge", "depends_on": ["echo"]},
        ],
    }
    assert "'echo' is ambiguous" in refusal(doc)


def test_a_cycle_is_refused_and_printed() -> None:
    doc = config(s0__depends_on=["merge"])
    msg = refusal(doc)
    assert "dependency cycle: face_detection -> merge -> attributes -> face_detection" in msg


def test_a_mapping_that_does_not_parse_is_refused() -> None:
    msg = refusal(config(s1__input_mapping={"faces": "$.face_detection..faces"}))
    assert "steps[1].input_mapping.faces" in msg and "cannot parse" in msg


def test_a_mapping_that_reads_a_step_that_is_not_upstream_is_refused() -> None:
    msg = refusal(config(s1__input_mapping={"v": "$.features.vector"}))
    assert "steps[1].input_mapping.v" in msg and "not upstream" in msg


def test_a_parallel_group_whose_members_wait_for_different_steps_is_refused() -> None:
    doc = config(
        s2__depends_on=["face_detection", "attributes"],
        s2__input_mapping={"boxes": "$.face_detection.faces"},
    )
    assert "members of a parallel group must share their dependencies" in refusal(doc)


@pytest.mark.parametrize(
    ("key", "value"), [("timeout", 0), ("timeout", 10**6), ("retry_count", 99)]
)
def test_limits_on_timeouts_and_retries(key: str, value: int) -> None:
    assert f"steps[0].{key}: must be an integer" in refusal(config(**{f"s0__{key}": value}))


def test_pinning_fixes_versions_digests_and_task_defaults() -> None:
    [p] = parse_config(FACE)
    table = {
        "face_detection": "1.2.0",
        "face_attribute": "1.0.1",
        "face_extractor": "1.0.0",
        "face_merge": "2.0.0",
    }

    def lookup(task_id: str, version: str) -> PinnedTask:
        return PinnedTask(version or table[task_id], f"digest-{task_id}", "vision", 99, 4)

    pinned = pin(p, lookup)
    assert [s.task_version for s in pinned.steps] == ["1.2.0", "1.0.1", "1.0.0", "2.0.0"]
    assert pinned.steps[0].digest == "digest-face_detection"
    assert pinned.steps[0].queue == "vision"


def test_a_step_of_a_task_limited_per_input_value_must_map_that_value_from_the_run_input() -> None:
    """task.json's concurrency_key is read when a run is submitted: a step may map it from
    the run's input (or a constant), not from an upstream step's output."""

    def keyed(key: str) -> Any:
        return lambda task_id, version: PinnedTask("1.0.0", "d", "q", 9, 0, key)

    assert pin(parse_config(FACE)[0], keyed("image_path"))  # the first step: $.image_path
    reads_upstream = config(s1__input_mapping={"faces": "$.face_detection.faces"})
    with pytest.raises(InvalidArgument) as err:
        pin(parse_config(reads_upstream)[0], keyed("faces"))
    assert "steps[1].input_mapping.faces" in str(err.value)
    assert "'$.face_detection.faces' reads step 'face_detection'" in str(err.value)


def test_pinning_an_unknown_task_raises_not_found() -> None:
    def lookup(task_id: str, version: str) -> PinnedTask:
        raise NotFound(f"no task {task_id}", field="task_id")

    with pytest.raises(NotFound):
        pin(parse_config(FACE)[0], lookup)


def test_a_pipeline_survives_a_json_round_trip() -> None:
    from services.registry.pipeline_spec import PipelineSpec

    [p] = parse_config(FACE)
    assert PipelineSpec.from_json(p.to_json()) == p


def test_a_run_timeout_is_read_from_global_settings_and_kept() -> None:
    from services.registry.pipeline_spec import PipelineSpec

    doc = {"pipeline_id": "p", "steps": [{"task_id": "a"}], "global_settings": {"run_timeout": 90}}
    [p] = parse_config(doc)
    assert p.run_timeout == 90 and PipelineSpec.from_json(p.to_json()).run_timeout == 90
    [unset] = parse_config({"pipeline_id": "p", "steps": [{"task_id": "a"}]})
    assert unset.run_timeout == 0
    for bad in (0, -5, 31 * 86400, "90s", 1.5):
        doc["global_settings"] = {"run_timeout": bad}
        assert "global_settings.run_timeout: must be an integer" in refusal(doc), bad


def single(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A one-pipeline config: ``steps`` (one echo step if none) and top-level keys."""
    return {"pipeline_id": "p", "steps": list(steps) or [{"task_id": "echo"}], **top}


def step(**fields: Any) -> dict[str, Any]:
    return {"task_id": "echo", **fields}


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "config"),
        ({"name": "no steps"}, "config"),
        ({"pipelines": []}, "pipelines"),
        ({"pipelines": {}}, "pipelines"),
        ({"pipelines": {"p": "steps"}}, "pipelines.p"),
        ({"pipelines": {"Bad-Id": {"steps": [step()]}}}, "pipelines.Bad-Id"),
        ({"pipelines": {"p": {"pipeline_id": "q", "steps": [step()]}}}, "pipelines.p.pipeline_id"),
        (
            {"pipelines": {"p": {"steps": [step()], "global_settings": []}}},
            "pipelines.p.global_settings",
        ),
        (single(version="1.0"), "pipeline.version"),
        (single(version=1), "pipeline.version"),
        (single(steps=[]), "pipeline.steps"),
        (single(steps={"a": 1}), "pipeline.steps"),
        (single(*[step(step_id=f"s{i}") for i in range(MAX_STEPS + 1)]), "pipeline.steps"),
        (single(global_settings={"default_timeout": 0}), "global_settings.default_timeout"),
        (single(global_settings={"max_retries": MAX_RETRIES + 1}), "global_settings.max_retries"),
        (single(global_settings={"default_retry_count": -1}), "global_settings.max_retries"),
        (
            single(global_settings={"max_parallel_tasks": MAX_PARALLEL_TASKS + 1}),
            "global_settings.max_parallel_tasks",
        ),
        (single(global_settings={"run_timeout": True}), "global_settings.run_timeout"),
        (single(global_settings={"log_level": 10}), "global_settings.log_level"),
        (single(global_settings={"log_level": "LOUD"}), "global_settings.log_level"),
        (single(step(task_id="")), "pipeline.steps[0].task_id"),
        (single({"step_id": "a"}), "pipeline.steps[0].task_id"),
        (single(step(task_id=7)), "pipeline.steps[0].task_id"),
        (single(step(task_id="echo@1")), "pipeline.steps[0].task_id"),
        (single(step(step_id="1st")), "pipeline.steps[0].step_id"),
        (single(step(step_id=1)), "pipeline.steps[0].step_id"),
        (single(step(depends_on={"a": 1})), "pipeline.steps[0].depends_on"),
        (single(step(depends_on=[1])), "pipeline.steps[0].depends_on"),
        (single(step(parallel_group=1)), "pipeline.steps[0].parallel_group"),
        (single(step(timeout=MAX_TIMEOUT_SECONDS + 1)), "pipeline.steps[0].timeout"),
        (single(step(timeout=1.5)), "pipeline.steps[0].timeout"),
        (single(step(retry_count=-1)), "pipeline.steps[0].retry_count"),
        (single(step(queue="GPU")), "pipeline.steps[0].queue"),
        (single(step(queue=3)), "pipeline.steps[0].queue"),
        (single(step(cache="yes")), "pipeline.steps[0].cache"),
        (single(step(cache=0)), "pipeline.steps[0].cache"),
        (single(step(input_mapping=["x"])), "pipeline.steps[0].input_mapping"),
        (
            single(input_validation={"required_fields": "text"}),
            "pipeline.input_validation.required_fields",
        ),
        (
            single(input_validation={"supported_formats": [1]}),
            "pipeline.input_validation.supported_formats",
        ),
        (single(input_validation=[]), "pipeline.input_validation"),
        (single(enabled="yes"), "pipeline.enabled"),
        (single(metadata="v1"), "pipeline.metadata"),
    ],
)
def test_each_bad_value_is_refused_naming_its_field(doc: Any, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_config(doc)
    assert err.value.field == field, str(err.value)


def test_the_limits_themselves_are_accepted() -> None:
    steps = [step(step_id=f"s{i}") for i in range(MAX_STEPS - 2)]
    low = step(step_id="low", timeout=1, retry_count=0)
    edge = step(step_id="edge", timeout=MAX_TIMEOUT_SECONDS, retry_count=MAX_RETRIES, cache=False)
    settings = {
        "default_timeout": 1,
        "max_retries": 0,
        "max_parallel_tasks": MAX_PARALLEL_TASKS,
        "run_timeout": MAX_RUN_TIMEOUT_SECONDS,
        "log_level": "debug",
        "enable_caching": True,
    }
    [p] = parse_config(single(*steps, low, edge, global_settings=settings))
    assert len(p.steps) == MAX_STEPS
    assert (p.steps[-2].timeout, p.steps[-2].retry_count) == (1, 0)
    assert (p.steps[-1].timeout, p.steps[-1].retry_count, p.steps[-1].cache) == (
        MAX_TIMEOUT_SECONDS,
        MAX_RETRIES,
        False,
    )
    assert (p.steps[0].timeout, p.steps[0].retry_count, p.steps[0].cache) == (1, 0, None)
    assert (p.max_parallel_tasks, p.run_timeout) == (MAX_PARALLEL_TASKS, MAX_RUN_TIMEOUT_SECONDS)
    assert (p.log_level, p.enable_caching) == ("DEBUG", True)
    [least] = parse_config(single(global_settings={"max_parallel_tasks": 1, "run_timeout": 1}))
    assert (least.max_parallel_tasks, least.run_timeout) == (1, 1)
    [unset] = parse_config(single())
    assert (unset.max_parallel_tasks, unset.log_level, unset.enable_caching) == (0, "", False)
    assert unset.steps[0].timeout is None and unset.steps[0].retry_count is None


def test_a_step_id_defaults_to_the_tasks_and_one_dependency_may_be_a_string() -> None:
    [p] = parse_config(
        single(step(task_id="team-a/ocr@1.2.0"), step(step_id="b", depends_on="ocr"))
    )
    assert [(s.step_id, s.task_id, s.task_version) for s in p.steps] == [
        ("ocr", "team-a/ocr", "1.2.0"),
        ("b", "echo", ""),
    ]
    assert p.steps[1].depends_on == ("ocr",)


def test_one_pipeline_of_a_config_is_parsed_alone_and_an_absent_one_is_named() -> None:
    two = {"pipelines": {"a": single(), "b": single()}}
    for doc in two["pipelines"].values():
        del doc["pipeline_id"]
    assert [p.pipeline_id for p in parse_config(two, only="b")] == ["b"]
    with pytest.raises(InvalidArgument) as err:
        parse_config(two, only="c")
    assert err.value.field == "pipeline_id" and "'c'" in str(err.value)


def test_a_pipelines_own_settings_override_the_configs() -> None:
    doc = {
        "global_settings": {"default_timeout": 60, "max_retries": 2},
        "pipelines": {
            "a": {"steps": [step()], "global_settings": {"default_timeout": 5}},
            "b": {"steps": [step()]},
        },
    }
    a, b = parse_config(doc)
    assert (a.steps[0].timeout, a.steps[0].retry_count) == (5, 2)
    assert (b.steps[0].timeout, b.steps[0].retry_count) == (60, 2)


def test_metadata_version_is_the_version_unless_it_contradicts_it() -> None:
    [p] = parse_config(single(metadata={"version": "2.1.0"}))
    assert p.version == "2.1.0"
    [same] = parse_config(single(version="2.1.0", metadata={"version": "2.1.0"}))
    assert same.version == "2.1.0"
    with pytest.raises(InvalidArgument) as err:
        parse_config(single(version="2.1.0", metadata={"version": "2.2.0"}))
    assert err.value.field == "pipeline.metadata.version"
    assert parse_config(single())[0].version == "1.0.0"


def test_a_step_without_its_own_timeout_or_retries_takes_its_tasks_when_pinned() -> None:
    doc = single(step(step_id="own", timeout=7, retry_count=1, queue="gpu"), step(step_id="bare"))
    [p] = parse_config(doc)
    pinned = pin(p, lambda task_id, version: PinnedTask("1.0.0", "d", "cpu", 99, 4))
    assert [(s.timeout, s.retry_count, s.queue) for s in pinned.steps] == [
        (7, 1, "gpu"),
        (99, 4, "cpu"),
    ]
    # With the config's defaults, those come before the task's.
    [p] = parse_config(single(step(), global_settings={"default_timeout": 60, "max_retries": 2}))
    [s] = pin(p, lambda task_id, version: PinnedTask("1.0.0", "d", "cpu", 99, 4)).steps
    assert (s.timeout, s.retry_count) == (60, 2)


def test_a_dependency_may_name_the_task_of_the_one_step_that_runs_it() -> None:
    doc = single(
        step(step_id="detect", task_id="face_detection"),
        step(step_id="after", depends_on=["face_detection"]),
    )
    [p] = parse_config(doc)
    assert p.steps[1].depends_on == ("detect",)


def test_every_problem_of_a_config_is_named_at_once_in_the_order_of_its_paths() -> None:
    """As a compiler or `kubectl apply`: a config with several mistakes names them all, not
    one per attempt; the first (by path) is the error's field."""
    doc = config(s0__timeout=0, s2__retry_count="x", s3__depends_on=["attributes", "nope"])
    doc["pipelines"]["face_processing_pipeline"]["steps"][1]["colour"] = "red"
    doc["pipelines"]["face_processing_pipeline"]["steps"][3]["cache"] = "yes"
    problems = Problems()
    config_warnings(doc, problems)
    parse_config(doc, "", problems)
    with pytest.raises(InvalidArgument) as err:
        problems.raise_any()
    where = "pipelines.face_processing_pipeline.steps"
    assert err.value.field == f"{where}[0].timeout"
    lines = err.value.message.splitlines()
    assert lines[0] == f"{where}[0].timeout: must be an integer from 1 to 86400, got 0"
    assert lines[1] == "4 more problems:"
    assert [line.split(":")[0] for line in lines[2:]] == [
        f"- {where}[1].colour",
        f"- {where}[2].retry_count",
        f"- {where}[3].cache",
        f"- {where}[3].depends_on",
    ]


def test_parse_config_alone_raises_them_all_too() -> None:
    message = refusal(config(s0__timeout=0, s1__queue="Bad Queue"))
    assert "steps[0].timeout" in message and "steps[1].queue" in message


def test_a_step_whose_place_in_the_graph_is_refused_is_named_once_not_again_by_its_dependents() -> (
    None
):
    """steps[0]'s id is refused, so what depends on it is not checked against it (it would
    only repeat the same mistake as "unknown step")."""
    message = refusal(config(s0__step_id="1st"))
    assert "steps[0].step_id: must be a short identifier, got '1st'" in message
    assert "more problem" not in message and "unknown step" not in message


def test_the_graph_is_checked_while_other_fields_of_its_steps_are_refused() -> None:
    message = refusal(config(s0__timeout=0, s3__depends_on=["nope"]))
    assert "steps[0].timeout" in message and "steps[3].depends_on: unknown step 'nope'" in message


def test_a_setting_shared_by_every_pipeline_of_a_config_is_refused_once() -> None:
    doc = copy.deepcopy(FACE)
    doc["pipelines"]["second"] = copy.deepcopy(doc["pipelines"]["face_processing_pipeline"])
    doc["global_settings"]["default_timeout"] = -1
    message = refusal(doc)
    assert message.count("global_settings.default_timeout") == 1, message


def test_registering_names_every_step_whose_task_is_not_registered() -> None:
    def lookup(task_id: str, version: str) -> PinnedTask:
        if task_id in ("face_attribute", "face_merge"):
            raise NotFound(f"no task {task_id} is registered", field="task_id")
        return PinnedTask("1.0.0", "d", "q", 9, 0)

    problems = Problems()
    pin(parse_config(FACE)[0], lookup, problems)
    with pytest.raises(InvalidArgument) as err:
        problems.raise_any()
    where = "pipelines.face_processing_pipeline.steps"
    assert err.value.field == f"{where}[1].task_id"
    assert (
        f"{where}[3].task_id: uses a task that is not registered: no task face_merge is registered"
        in err.value.message
    )


def test_a_step_may_set_its_own_retry_backoff_as_task_json_does() -> None:
    [p] = parse_config(config(s0__retry_backoff=3, s1__retry_backoff=0.5, s1__retry_backoff_max=5))
    assert (p.steps[0].retry_backoff, p.steps[0].retry_backoff_max) == (3.0, 600.0)
    assert (p.steps[1].retry_backoff, p.steps[1].retry_backoff_max) == (0.5, 5.0)
    assert (p.steps[2].retry_backoff, p.steps[2].retry_backoff_max) == (None, None)
    assert PipelineSpec.from_json(p.to_json()) == p
    message = refusal(
        config(s0__retry_backoff=-1, s1__retry_backoff_max=5, s2__retry_backoff=10)
        | {"global_settings": {}}
    )
    assert "steps[0].retry_backoff: must be from 0.1 to 86400 seconds, got -1" in message
    assert "steps[1].retry_backoff_max: needs a retry_backoff (the first delay)" in message
    assert "steps[2]" not in message  # 10 s doubling to 600 s: fine
    assert "retry_backoff_max: must be from 3 to 86400 seconds, got 2" in refusal(
        config(s3__retry_backoff=3, s3__retry_backoff_max=2)
    )


def test_a_step_may_be_skipped_by_a_condition_on_the_run_input_or_an_upstream_output() -> None:
    """skip_if: one condition or a list, kept as a list; one reading the output of a step
    that is not upstream of its own, or not a condition, is refused naming its path."""
    one = {"path": "$.fast", "op": "==", "value": True}
    no_faces = {"path": "$.face_detection.faces", "op": "==", "value": []}
    [p] = parse_config(
        config(s1__skip_if=one, s2__skip_if=[one, {"path": "$.x", "op": "exists"}, no_faces])
    )
    assert p.steps[1].skip_if == [one]
    assert p.steps[2].skip_if == [one, {"path": "$.x", "op": "exists"}, no_faces]
    assert p.steps[0].skip_if == []
    assert PipelineSpec.from_json(p.to_json()) == p
    message = refusal(
        config(
            s1__skip_if={"path": "$.features.vectors", "op": "exists"},  # a branch beside it
            s2__skip_if={"path": "$.fast", "op": "=="},
        )
    )
    where = "pipelines.face_processing_pipeline.steps"
    assert (
        f"{where}[1].skip_if.path: '$.features.vectors' reads step 'features', which is not "
        "upstream of 'attributes'; add it to depends_on" in message
    )
    assert f"{where}[2].skip_if.value: == needs a value" in message
