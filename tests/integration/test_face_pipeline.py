"""The face pipeline end to end: an uploaded image, the parallel branch, the merged result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clients.sdk import ApiError, Client, RunInfo
from services.localstack import Cluster
from tests.conftest import EXAMPLES, ROOT, run_cli
from tests.waiting import eventually

DATA = ROOT / "tasks" / "data"
CONFIG = ROOT / "tasks" / "pipelines" / "config_pipeline.json"


@pytest.fixture(scope="module", autouse=True)
def registered(client: Client) -> None:
    for d in sorted(EXAMPLES.iterdir()):
        if (d / "task.json").exists():
            client.register_task(d)
    client.register_pipelines(CONFIG)


@pytest.fixture(scope="module")
def face_run(client: Client) -> RunInfo:
    uri = client.upload_artifact(DATA / "astronaut.jpg")
    run = client.submit(pipeline="face_processing_pipeline", input={"image_path": uri})
    return client.wait(run.run_id, timeout=120)


def test_an_artifact_round_trips_by_digest(cluster: Cluster, client: Client) -> None:
    uri = client.upload_artifact(DATA / "chelsea.jpg")
    assert uri.startswith("artifact://sha256/") and uri.endswith("/chelsea.jpg")
    assert client.upload_artifact(DATA / "chelsea.jpg") == uri  # content-addressed


def test_the_face_pipeline_finds_the_face_and_merges_every_part(face_run: RunInfo) -> None:
    assert face_run.state == "COMPLETED", face_run.error
    out = face_run.output
    assert out["face_count"] == 1
    face = out["faces"][0]
    x, y, w, h = face["bbox"]
    assert 200 <= x + w / 2 <= 250 and 90 <= y + h / 2 <= 140
    assert face["detection"]["source"] == "output_001"
    assert face["attributes"]["source"] == "output_002" and face["attributes"]["eyes"]["count"] == 2
    features = face["features"]
    assert features["source"] == "output_003" and features["feature_dimension"] == 128
    assert len(features["feature_vector"]) == 128
    assert face["attributes"]["age"]["available"] is False
    assert set(face["detection"]["landmarks"]) == {
        "right_eye",
        "left_eye",
        "nose",
        "mouth_right",
        "mouth_left",
    }
    assert abs(face["detection"]["pose"]["roll_degrees"]) < 10


def test_attributes_and_features_ran_side_by_side_after_detection(face_run: RunInfo) -> None:
    steps = {s.step_id: s for s in face_run.steps}
    detection_end = steps["face_detection"].ended_at
    branch = [steps["attributes"], steps["features"]]
    assert all(s.started_at >= detection_end for s in branch)
    assert steps["merge"].started_at >= max(s.ended_at for s in branch)
    assert {s.executor_id for s in face_run.steps} == {"executor-1"}


def test_the_lineage_follows_the_faces_through_the_branches(face_run: RunInfo) -> None:
    edges = set(face_run.lineage)
    assert ("output_001_faces_array", "input_002_faces_array") in edges
    assert ("output_001_faces_array", "input_003_faces_array") in edges
    assert ("run_input_image_path_string", "input_001_image_path_string") in edges
    assert ("output_002_object", "input_004_attributes_object") in edges  # the whole output
    assert ("output_001_object", "input_004_detection_object") in edges
    ids = {s.step_id: (s.input_id, s.output_id) for s in face_run.steps}  # as the SDK shows
    assert ids["face_detection"] == ("input_001", "output_001")
    assert ids["merge"] == ("input_004", "output_004")
    summary = face_run.processing_summary
    assert summary is not None and len(summary["steps"]) == 4


def test_no_face_on_the_cat(client: Client) -> None:
    """No face found: the attribute and feature models are not run (the pipeline's skip_if on
    the detection's output), and the merge says there is none."""
    uri = client.upload_artifact(DATA / "chelsea.jpg")
    run = client.wait(
        client.submit(pipeline="face_processing_pipeline", input={"image_path": uri}).run_id, 120
    )
    assert run.state == "COMPLETED" and run.output["faces"] == []
    assert [(s.step_id, s.state, s.attempt) for s in run.steps] == [
        ("face_detection", "COMPLETED", 1),
        ("attributes", "SKIPPED", 0),
        ("features", "SKIPPED", 0),
        ("merge", "COMPLETED", 1),
    ]
    assert run.steps[1].error == "skip_if $.face_detection.faces == []"


def test_a_corrupt_image_fails_the_run_with_a_fatal_error(client: Client, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing sensible")
    uri = client.upload_artifact(bad)
    run = client.wait(
        client.submit(pipeline="simple_face_pipeline", input={"image_path": uri}).run_id, 120
    )
    assert run.state == "FAILED"
    assert run.steps[0].attempt == 1 and "could not be decoded" in run.steps[0].error


def test_an_unsupported_format_is_refused_at_submit(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(pipeline="face_processing_pipeline", input={"image_path": "portrait.gif"})
    assert err.value.message.startswith("input_json.image_path:")


def test_an_artifact_that_was_never_uploaded_fails_the_step(client: Client) -> None:
    uri = "artifact://sha256/" + "ab" * 32 + "/ghost.jpg"
    run = client.wait(
        client.submit(pipeline="simple_face_pipeline", input={"image_path": uri}).run_id, 120
    )
    assert run.state == "FAILED" and "artifact" in run.steps[0].error


def test_the_cli_uploads_a_local_image_and_prints_the_merged_faces(cluster: Cluster) -> None:
    out = run_cli(
        cluster,
        "pipeline",
        "run",
        "face_processing_pipeline",
        '{"image_path": "tasks/data/astronaut.jpg"}',
    )
    assert "artifact://sha256/" in out.stdout and "COMPLETED" in out.stdout
    assert '"face_count": 1' in out.stdout and "parallel speedup" in out.stdout


def test_a_batch_runs_one_run_per_image_and_tabulates_them(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    import json
    import shutil

    import cv2
    import numpy as np

    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(DATA / "astronaut.jpg", folder / "a_astronaut.jpg")
    shutil.copy(DATA / "chelsea.jpg", folder / "b_cat.jpg")
    portrait = cv2.imread(str(DATA / "astronaut.jpg"))
    cv2.imwrite(str(folder / "c_two.png"), np.hstack([portrait, cv2.flip(portrait, 1)]))
    (folder / "notes.txt").write_text("not an image: skipped")
    out = run_cli(
        cluster, "--json", "pipeline", "run", "face_processing_pipeline", "--input-dir", str(folder)
    )
    batch = json.loads(out.stdout)
    rows = {r["image"]: r for r in batch["runs"]}
    assert set(rows) == {"a_astronaut.jpg", "b_cat.jpg", "c_two.png"}
    assert {k: (r["state"], r["counts"]["face_count"]) for k, r in rows.items()} == {
        "a_astronaut.jpg": ("COMPLETED", 1),
        "b_cat.jpg": ("COMPLETED", 0),
        "c_two.png": ("COMPLETED", 2),
    }
    assert len({r["run_id"] for r in rows.values()}) == 3 and batch["batch_id"]
    expected = {r["run_id"] for r in rows.values()}
    eventually(  # the real batch id (ListRuns reads the history, written behind)
        lambda: {r.run_id for r in client.list_runs(batch_id=batch["batch_id"])} == expected,
        10,
        "the batch's runs listed under its id",
    )


def test_run_parameters_reach_the_steps_that_accept_them(client: Client, face_run: RunInfo) -> None:
    """The original system's execution inputs, unchanged: parameters at the top level or
    under "parameters" reach face_detection inside the pipeline, and change what it finds."""

    def detection(run: RunInfo) -> dict[str, Any]:
        [step] = [s for s in run.steps if s.step_id == "face_detection"]
        return dict(step.output)

    assert detection(face_run)["parameters"]["min_face_size"] == 24  # the task's defaults
    assert detection(face_run)["parameters"]["confidence_threshold"] == 0.9
    uri = client.upload_artifact(DATA / "astronaut.jpg")
    wanted = {"min_face_size": 50, "confidence_threshold": 0.8}
    forms = {
        "top level": {"image_path": uri, **wanted},
        "parameters": {"image_path": uri, "parameters": wanted},
        "step_parameters": {
            "image_path": uri,
            "parameters": {"min_face_size": 40, "confidence_threshold": 0.8},
            "step_parameters": {"face_detection": {"min_face_size": 50}},  # wins for its step
        },
    }
    for form, run_input in forms.items():
        done = client.wait(
            client.submit(pipeline="face_processing_pipeline", input=run_input).run_id, 120
        )
        assert done.state == "COMPLETED", (form, done.error)
        used = detection(done)["parameters"]
        assert {k: used[k] for k in wanted} == wanted, form
    edges = set(done.lineage)
    assert (
        "run_input_step_parameters.face_detection.min_face_size_number",
        "input_001_min_face_size_number",
    ) in edges
    face_width = face_run.output["faces"][0]["bbox"][2]
    too_big = client.wait(
        client.submit(
            pipeline="face_processing_pipeline",
            input={"image_path": uri, "min_face_size": int(face_width * 2)},
        ).run_id,
        120,
    )
    assert too_big.state == "COMPLETED" and too_big.output["face_count"] == 0


def two_faces(tmp_path: Path) -> Path:
    import cv2
    import numpy as np

    portrait = cv2.imread(str(DATA / "astronaut.jpg"))
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), np.hstack([portrait, cv2.flip(portrait, 1)]))
    return path


DOCUMENTED_PIPELINE_INPUT = {  # the original system's "Pipeline Execution Input", as printed
    "processing_options": {
        "enable_parallel": True,
        "max_faces": 5,
        "include_features": True,
        "include_attributes": True,
    },
    "output_options": {"format": "json", "include_metadata": True, "compression": False},
}


def task_version(task_id: str) -> str:
    return str(json.loads((EXAMPLES / task_id / "task.json").read_text())["version"])


def test_the_documented_pipeline_input_runs_unchanged_and_every_option_acts(
    client: Client, tmp_path: Path
) -> None:
    from tests.integration.test_pipeline_runs import overlapping

    two = client.upload_artifact(two_faces(tmp_path))
    full = client.run(
        pipeline="face_processing_pipeline",
        input={"image_path": two, **DOCUMENTED_PIPELINE_INPUT},
        timeout=120,
    )
    assert full.state == "COMPLETED", full.error
    assert full.output["face_count"] == 2
    assert all({"attributes", "features"} <= set(f) for f in full.output["faces"])
    meta = full.output["metadata"]  # include_metadata
    assert meta["run_id"] == full.run_id and meta["pipeline"].startswith(
        "face_processing_pipeline@"
    )
    assert meta["steps"]["face_detection"] == {
        "task": f"face_detection@{task_version('face_detection')}",
        "output_id": "output_001",
    }
    assert overlapping(full)  # attributes and features at once
    narrow = client.run(
        pipeline="face_processing_pipeline",
        input={
            "image_path": two,
            "processing_options": {
                "enable_parallel": False,
                "max_faces": 1,
                "include_features": False,
                "include_attributes": True,
            },
            "output_options": {"include_metadata": False},
        },
        timeout=120,
    )
    assert narrow.state == "COMPLETED", narrow.error
    out = narrow.output
    assert out["face_count"] == 1 and "metadata" not in out
    assert out["skipped"] == {"features": "include_features is false"}
    assert "features" not in out["faces"][0] and "attributes" in out["faces"][0]
    [detection] = [s.output for s in narrow.steps if s.step_id == "face_detection"]
    assert detection["faces_found"] == 2 and detection["face_count"] == 1
    assert not overlapping(narrow)  # enable_parallel: false: one step at a time


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"output_options": {"format": "xml"}}, "input_json.output_options.format"),
        ({"output_options": {"compression": True}}, "input_json.output_options.compression"),
        ({"output_options": {"zip": True}}, "input_json.output_options.zip"),
        ({"colour": "red"}, "input_json.colour"),
        ({"processing_options": {"max_face": 1}}, "input_json.processing_options.max_face"),
        (
            {"processing_options": {"enable_parallel": "no"}},
            "input_json.processing_options.enable_parallel",
        ),
        ({"parameters": {"threshold": 1}}, "input_json.parameters.threshold"),
        ({"step_parameters": {"nope": {}}}, "input_json.step_parameters.nope"),
        (
            {"step_parameters": {"merge": {"max_faces": 1}}},
            "input_json.step_parameters.merge.max_faces",
        ),
    ],
)
def test_an_execution_input_key_nothing_reads_is_refused_naming_it(
    client: Client, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(
            pipeline="face_processing_pipeline",
            input={"image_path": "test.jpg", **change},
        )
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.message.startswith(field + ":"), err.value.message


def test_the_documented_task_input_runs_unchanged_and_its_parameters_act(client: Client) -> None:
    uri = client.upload_artifact(DATA / "astronaut.jpg")
    documented = {  # the original system's "Task Execution Input", as printed
        "image_path": uri,
        "parameters": {
            "confidence_threshold": 0.8,
            "max_detections": 10,
            "enable_preprocessing": True,
        },
        "metadata": {"source": "api_call", "user_id": "user123", "session_id": "session456"},
    }
    done = client.run(task="face_detection", input=documented, timeout=120)
    assert done.state == "COMPLETED", done.error
    used = done.output["parameters"]
    assert (used["confidence_threshold"], used["max_faces"], used["enable_preprocessing"]) == (
        0.8,
        10,
        True,
    )
    assert done.input["metadata"]["user_id"] == "user123"  # kept with the run
    raw = client.run(
        task="face_detection",
        input={
            **documented,
            "parameters": {**documented["parameters"], "enable_preprocessing": False},
        },
        timeout=120,
    )
    assert raw.output["parameters"]["enable_preprocessing"] is False
    assert raw.output["faces"] != done.output["faces"]  # the detector saw another image
