"""The face example tasks, in-process on the bundled images (no services)."""

from __future__ import annotations

import json
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
    assert 0.9 <= face["confidence"] <= 1  # MTCNN's face probability, over the default threshold
    assert set(face["landmarks"]) == {"right_eye", "left_eye", "nose", "mouth_right", "mouth_left"}
    for px, py in face["landmarks"].values():
        assert x <= px <= x + w and y <= py <= y + h
    marks = face["landmarks"]  # the subject's right eye is on the image's left
    assert marks["right_eye"][0] < marks["nose"][0] < marks["left_eye"][0]
    assert max(marks["right_eye"][1], marks["left_eye"][1]) < marks["nose"][1]
    assert marks["nose"][1] < min(marks["mouth_right"][1], marks["mouth_left"][1])
    assert abs(face["pose"]["roll_degrees"]) < 10 and abs(face["pose"]["yaw_degrees"]) < 15


def test_no_face_is_found_on_the_cat(detection: TaskBase) -> None:
    assert faces_in(detection, CAT) == []


@pytest.mark.parametrize("angle", [-30, 30])
def test_a_tilted_head_is_found_and_its_roll_measured(
    detection: TaskBase, tmp_path: Path, angle: int
) -> None:
    image = cv2.imread(ASTRONAUT)
    turn = cv2.getRotationMatrix2D((256, 256), angle, 1.0)  # counter-clockwise for angle > 0
    path = tmp_path / f"tilted{angle}.png"
    cv2.imwrite(str(path), cv2.warpAffine(image, turn, (512, 512), borderMode=cv2.BORDER_REFLECT))
    [face] = faces_in(detection, str(path))
    upright = run(detection, {"image_path": ASTRONAUT})["faces"][0]["pose"]["roll_degrees"]
    assert face["pose"]["roll_degrees"] == pytest.approx(upright - angle, abs=6)


def test_the_haar_cascades_setting_is_refused_by_name(detection: TaskBase) -> None:
    verdict, message = fails(detection, {"image_path": ASTRONAUT, "min_neighbors": 5})
    assert verdict == "fatal" and "min_neighbors" in message


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
    assert face["aligned"] is True
    assert face["eyes"]["right"]["found"] and face["eyes"]["left"]["found"]
    assert face["eyes"]["count"] == 2
    assert abs(face["pose"]["roll_degrees"]) < 10  # she holds her head nearly level
    assert face["smile"]["detected"] is True and 0.5 < face["smile"]["score"] <= 1  # she smiles
    assert 0 < face["brightness"] < 1 and face["sharpness"] > 0
    emotion = face["emotion"]  # she smiles broadly
    assert emotion["dominant_emotion"] == "happy" and emotion["confidence"] > 0.9
    assert sum(emotion["scores"].values()) == pytest.approx(1, abs=1e-3)
    for unknown in ("age", "gender"):
        assert face[unknown]["available"] is False and "model" in face[unknown]["reason"]
        assert set(face[unknown]) == {"available", "reason"}  # no value, no guess


def test_a_face_given_as_a_bare_box_is_found_again_and_aligned(
    astronaut_faces: list[dict[str, Any]],
) -> None:
    bare = [{"bbox": astronaut_faces[0]["bbox"]}]
    out = run(loaded("face_attribute"), {"image_path": ASTRONAUT, "faces": bare})
    face = out["faces"][0]
    assert face["aligned"] is True and face["eyes"]["count"] == 2
    given = astronaut_faces[0]["pose"]  # found again on a crop: nearly the same landmarks
    assert face["pose"]["roll_degrees"] == pytest.approx(given["roll_degrees"], abs=2)


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
    assert all(f["feature_dimension"] == len(f["feature_vector"]) for f in out["faces"])
    return [np.array(f["feature_vector"]) for f in out["faces"]]


def test_embeddings_are_deterministic_and_128_long(astronaut_faces: list[dict[str, Any]]) -> None:
    box = astronaut_faces[0]["bbox"]
    first, again = describe([box])[0], describe([box])[0]
    assert first.shape == (128,)
    assert np.array_equal(first, again)


def test_two_crops_of_one_face_are_closer_than_different_images(
    astronaut_faces: list[dict[str, Any]],
) -> None:
    x, y, w, h = astronaut_faces[0]["bbox"]
    face, shifted = describe([[x, y, w, h], [x + 4, y + 3, w - 6, h - 6]])
    [cat] = describe([[150, 60, 120, 120]], CAT)
    [background] = describe([[300, 300, w, h]])  # a patch of the astronaut image without a face
    same = np.linalg.norm(face - shifted)
    assert same < 0.6  # the model's own threshold for one person
    assert same < np.linalg.norm(face - cat)
    assert same < np.linalg.norm(face - background)


def test_the_embeddings_landmarks_lie_on_the_face(astronaut_faces: list[dict[str, Any]]) -> None:
    out = run(loaded("face_extractor"), {"image_path": ASTRONAUT, "faces": astronaut_faces})
    landmarks = out["faces"][0]["landmarks"]
    assert len(landmarks) == 5  # dlib's: two corners of each eye, the base of the nose
    x, y, w, h = astronaut_faces[0]["bbox"]
    for px, py in landmarks:
        assert x <= px <= x + w and y <= py <= y + h
    assert "99.38% on LFW" in out["feature_model"]


def test_a_box_outside_the_image_is_refused(astronaut_faces: list[dict[str, Any]]) -> None:
    verdict, message = fails(
        loaded("face_extractor"), {"image_path": ASTRONAUT, "faces": [{"bbox": [900, 5, 40, 40]}]}
    )
    assert verdict == "fatal" and "faces[0].bbox" in message


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
    features = {"faces": [{"face_id": 0, "feature_vector": [1.0]}]}
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
