"""The face example tasks, in-process on the bundled images (no services)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tasks.base.runtime import load_task, run_once
from tasks.base.task_base import TaskBase, TaskContext
from tests.conftest import EXAMPLES, ROOT

DATA = ROOT / "tasks" / "data"
ASTRONAUT = str(DATA / "astronaut.jpg")
CAT = str(DATA / "chelsea.jpg")


def loaded(name: str, context: TaskContext | None = None) -> TaskBase:
    task = load_task(EXAMPLES / name, context=context)
    task.setup()
    return task


@pytest.fixture(scope="module")
def detection() -> TaskBase:
    return loaded("face_detection")


def run(task: TaskBase, doc: dict[str, Any]) -> dict[str, Any]:
    verdict, payload = run_once(task, json.dumps(doc))
    assert verdict == "ok", payload
    return json.loads(payload)


def fails(task: TaskBase, doc: dict[str, Any]) -> tuple[str, str]:
    verdict, payload = run_once(task, json.dumps(doc))
    assert verdict != "ok"
    return verdict, payload


def faces_in(detection: TaskBase, path: str) -> list[dict[str, Any]]:
    return run(detection, {"image_path": path})["faces"]


def test_the_astronauts_face_is_found_where_it_is(detection: TaskBase) -> None:
    out = run(detection, {"image_path": ASTRONAUT})
    assert out["face_count"] == 1 and out["image_size"] == {
        "width": 512,
        "height": 512,
        "channels": 3,
    }
    x, y, w, h = out["faces"][0]["bbox"]
    centre = (x + w / 2, y + h / 2)
    # The face in this portrait spans roughly x 180-270, y 65-160 (checked by eye).
    assert 200 <= centre[0] <= 250 and 90 <= centre[1] <= 140
    assert 70 <= w <= 130 and 70 <= h <= 130
    face = out["faces"][0]
    assert face["confidence"] == pytest.approx(1 / (1 + math.exp(-face["level_weight"])), abs=1e-3)


def test_no_face_is_found_on_the_cat(detection: TaskBase) -> None:
    assert faces_in(detection, CAT) == []


def test_two_faces_are_found_in_a_tiled_image(detection: TaskBase, tmp_path: Path) -> None:
    # No free several-face photograph is available here: tile the portrait instead.
    image = cv2.imread(ASTRONAUT)
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), np.hstack([image, cv2.flip(image, 1)]))
    faces = faces_in(detection, str(path))
    assert len(faces) == 2
    assert sorted(f["bbox"][0] < 512 for f in faces) == [False, True]


def test_a_high_threshold_drops_faces(detection: TaskBase) -> None:
    assert run(detection, {"image_path": ASTRONAUT, "confidence_threshold": 1.0})["faces"] == []


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("photo.gif", b"GIF89a", "unsupported format 'gif'"),
        ("broken.jpg", b"\xff\xd8 this is not really a jpeg", "could not be decoded"),
        ("missing.jpg", None, "cannot read"),
    ],
)
def test_bad_images_fail_the_step_fatally_with_a_clear_reason(
    detection: TaskBase, tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    verdict, message = fails(detection, {"image_path": str(path)})
    assert verdict == "fatal" and expected in message


@pytest.fixture(scope="module")
def astronaut_faces(detection: TaskBase) -> list[dict[str, Any]]:
    return faces_in(detection, ASTRONAUT)


def test_attributes_are_computed_and_age_is_not_guessed(
    astronaut_faces: list[dict[str, Any]],
) -> None:
    out = run(loaded("face_attribute"), {"image_path": ASTRONAUT, "faces": astronaut_faces})
    face = out["faces"][0]
    assert face["eyes"]["count"] == 2
    assert abs(face["roll_degrees"]) < 15  # she holds her head nearly level
    assert (
        face["emotion"]["label"] in {"happy", "neutral"} and 0 <= face["emotion"]["confidence"] <= 1
    )
    assert 0 < face["brightness"] < 1 and face["sharpness"] > 0
    assert face["age"]["available"] is False and "model" in face["age"]["reason"]
    assert "value" not in face["age"] and "value" not in face["gender"]


def test_a_blurred_face_is_less_sharp(
    tmp_path: Path, astronaut_faces: list[dict[str, Any]]
) -> None:
    blurred = tmp_path / "blurred.png"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(cv2.imread(ASTRONAUT), (15, 15), 5))
    task = loaded("face_attribute")
    sharp = run(task, {"image_path": ASTRONAUT, "faces": astronaut_faces})["faces"][0]["sharpness"]
    soft = run(task, {"image_path": str(blurred), "faces": astronaut_faces})["faces"][0][
        "sharpness"
    ]
    assert soft < sharp / 3


def describe(boxes: list[list[int]], path: str = ASTRONAUT) -> list[np.ndarray]:
    out = run(loaded("face_extractor"), {"image_path": path, "faces": [{"bbox": b} for b in boxes]})
    return [np.array(f["descriptor"]) for f in out["faces"]]


def test_descriptors_are_deterministic_and_unit_length(
    astronaut_faces: list[dict[str, Any]],
) -> None:
    box = astronaut_faces[0]["bbox"]
    first, again = describe([box])[0], describe([box])[0]
    assert first.shape == (128,)
    assert np.array_equal(first, again)
    assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-4)


def test_two_crops_of_one_face_are_closer_than_different_images(
    astronaut_faces: list[dict[str, Any]],
) -> None:
    x, y, w, h = astronaut_faces[0]["bbox"]
    face, shifted = describe([[x, y, w, h], [x + 4, y + 3, w - 6, h - 6]])
    [cat] = describe([[150, 60, 120, 120]], CAT)
    [background] = describe([[300, 300, w, h]])  # a patch of the astronaut image without a face
    same = np.linalg.norm(face - shifted)
    assert same < np.linalg.norm(face - cat)
    assert same < np.linalg.norm(face - background)


def test_landmarks_are_only_what_was_found(astronaut_faces: list[dict[str, Any]]) -> None:
    out = run(loaded("face_extractor"), {"image_path": ASTRONAUT, "faces": astronaut_faces})
    landmarks = out["faces"][0]["landmarks"]
    assert set(landmarks) == {"left_eye", "right_eye"}
    x, y, w, h = astronaut_faces[0]["bbox"]
    for ex, ey in landmarks.values():
        assert x <= ex <= x + w and y <= ey <= y + h / 2 + h / 10


def test_merge_tags_every_part_with_its_source(astronaut_faces: list[dict[str, Any]]) -> None:
    context = TaskContext()
    context.begin(
        {
            "input_sources": {
                "detection": "output_001",
                "attributes": "output_002",
                "features": "output_003",
            }
        }
    )
    merge = loaded("face_merge", context)
    attributes = {"faces": [{"face_id": 0, "eyes": {"count": 2}}]}
    features = {"faces": [{"face_id": 0, "descriptor": [1.0]}]}
    detection = {"faces": astronaut_faces, "image_size": {"width": 512, "height": 512}}
    out = run(merge, {"detection": detection, "attributes": attributes, "features": features})
    face = out["faces"][0]
    assert face["detection"]["source"] == "output_001"
    assert face["attributes"] == {"eyes": {"count": 2}, "source": "output_002"}
    assert face["features"]["source"] == "output_003"


def test_merge_refuses_parts_that_do_not_match(astronaut_faces: list[dict[str, Any]]) -> None:
    merge = loaded("face_merge")
    verdict, message = fails(
        merge, {"detection": {"faces": astronaut_faces}, "attributes": {"faces": []}}
    )
    assert verdict == "fatal" and "no face 0" in message
