"""Pipeline configs: what is accepted, and each refusal naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common.errors import InvalidArgument, NotFound
from services.registry.pipeline_spec import PinnedTask, parse_config, pin

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
