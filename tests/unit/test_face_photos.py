"""The face detector and the face embedding on photographs they were not tuned on.

Six group photos with every face boxed by hand (``tests/data/photos``: their source, licence
and labels). What the detector is held to, at its default settings: it finds at least 90% of
the frontal and tilted faces, and nothing it takes for a face scores above the lowest-scoring
real face in the same photo.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import cv2
import numpy as np
import pytest

from tasks.base.task_base import TaskBase
from tests.conftest import ROOT
from tests.unit.test_face_tasks import ASTRONAUT, loaded, run

PHOTOS = ROOT / "tests" / "data" / "photos"
LABELS: dict[str, list[dict[str, Any]]] = json.loads((PHOTOS / "labels.json").read_text())["photos"]
SEEN = {"frontal", "tilted"}  # the poses the recall target covers


def iou(a: list[int], b: list[int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def is_labelled(face: dict[str, Any], photo: str, poses: set[str] | None = None) -> bool:
    return any(
        iou(face["bbox"], label["box"]) >= 0.4
        for label in LABELS[photo]
        if poses is None or label["pose"] in poses
    )


@pytest.fixture(scope="module")
def detection() -> TaskBase:
    return loaded("face_detection")


def detect_all(detection: TaskBase, **settings: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        photo: run(detection, {"image_path": str(PHOTOS / photo), **settings})["faces"]
        for photo in LABELS
    }


@pytest.fixture(scope="module")
def found(detection: TaskBase) -> dict[str, list[dict[str, Any]]]:
    return detect_all(detection)  # the defaults


def test_at_least_90_percent_of_frontal_and_tilted_faces_are_found(
    found: dict[str, list[dict[str, Any]]],
) -> None:
    wanted = [
        (photo, label) for photo in LABELS for label in LABELS[photo] if label["pose"] in SEEN
    ]
    hits = [
        any(iou(face["bbox"], label["box"]) >= 0.4 for face in found[photo])
        for photo, label in wanted
    ]
    assert len(wanted) == 20
    assert sum(hits) / len(hits) >= 0.9, [w for w, hit in zip(wanted, hits, strict=True) if not hit]


@pytest.mark.parametrize("threshold", [None, 0.3])  # the default, and nearly everything
def test_no_non_face_scores_above_the_lowest_real_face_of_its_photo(
    detection: TaskBase, found: dict[str, list[dict[str, Any]]], threshold: float | None
) -> None:
    faces = found if threshold is None else detect_all(detection, confidence_threshold=threshold)
    for photo, candidates in faces.items():
        real = [f["confidence"] for f in candidates if is_labelled(f, photo)]
        wrong = [f["confidence"] for f in candidates if not is_labelled(f, photo)]
        if real and wrong:
            assert max(wrong) < min(real), (photo, wrong, real)
        if threshold is None:
            assert wrong == [], (photo, wrong)  # none passes the default threshold


def test_landmarks_sit_on_their_faces_the_eyes_above_the_mouth(
    found: dict[str, list[dict[str, Any]]],
) -> None:
    for faces in found.values():
        for face in faces:
            x, y, w, h = face["bbox"]
            marks = face["landmarks"]
            for px, py in marks.values():
                assert x - w * 0.1 <= px <= x + w * 1.1 and y - h * 0.1 <= py <= y + h * 1.1
            roll = np.radians(face["pose"]["roll_degrees"])
            down = np.array([-np.sin(roll), np.cos(roll)])  # the face's own "down"
            depth = {name: float(np.dot(point, down)) for name, point in marks.items()}
            assert max(depth["right_eye"], depth["left_eye"]) < depth["nose"]
            assert depth["nose"] < min(depth["mouth_right"], depth["mouth_left"])


@pytest.fixture(scope="module")
def embeddings(found: dict[str, list[dict[str, Any]]]) -> list[np.ndarray]:
    extractor = loaded("face_extractor")
    vectors = []
    for photo, faces in found.items():
        out = run(extractor, {"image_path": str(PHOTOS / photo), "faces": faces})
        vectors += [np.array(f["feature_vector"]) for f in out["faces"]]
    return vectors


def test_the_embedding_tells_one_person_from_twenty_others(
    detection: TaskBase, embeddings: list[np.ndarray], tmp_path: Any
) -> None:
    image = cv2.imread(ASTRONAUT)
    turned = tmp_path / "turned.png"  # the same person: tilted, smaller, mirrored
    move = cv2.getRotationMatrix2D((256, 256), 20, 0.8)
    cv2.imwrite(str(turned), cv2.flip(cv2.warpAffine(image, move, (512, 512)), 1))
    extractor = loaded("face_extractor")

    def vector(path: str) -> np.ndarray:
        faces = run(detection, {"image_path": path})["faces"]
        out = run(extractor, {"image_path": path, "faces": faces})
        return np.array(out["faces"][0]["feature_vector"])

    her, again = vector(ASTRONAUT), vector(str(turned))
    assert len(embeddings) == 20
    assert np.linalg.norm(her - again) < 0.6  # the model's threshold for one person
    assert all(np.linalg.norm(her - other) >= 0.6 for other in embeddings)
    # Between the 20 people of the photos (190 pairs): the model's known weakness shows (it
    # puts a few pairs of different women under 0.6), but far most pairs are told apart.
    apart = [np.linalg.norm(a - b) >= 0.6 for a, b in itertools.combinations(embeddings, 2)]
    assert sum(apart) / len(apart) >= 0.9


@pytest.mark.parametrize(
    ("photo", "left", "smiling"),  # clear cases by eye: broad smiles, and a pout
    [("group3.jpg", 746, True), ("group6.jpg", 330, True), ("group6.jpg", 585, False)],
)
def test_broad_smiles_read_as_happy_and_a_pout_does_not(
    found: dict[str, list[dict[str, Any]]], photo: str, left: int, smiling: bool
) -> None:
    [face] = [f for f in found[photo] if abs(f["bbox"][0] - left) < 20]
    out = run(loaded("face_attribute"), {"image_path": str(PHOTOS / photo), "faces": [face]})
    emotion = out["faces"][0]["emotion"]
    assert (emotion["dominant_emotion"] == "happy") is smiling, emotion


@pytest.mark.parametrize("photo", ["group4.jpg", "group5.jpg"])
def test_detection_split_over_threads_finds_exactly_what_one_thread_finds(photo: str) -> None:
    """The detector splits its pyramid and its windows over the threads a step is given; the
    faces, scores and landmarks must be the ones a single thread computes."""
    from tasks.base import mtcnn

    rgb = cv2.cvtColor(cv2.imread(str(PHOTOS / photo)), cv2.COLOR_BGR2RGB)
    alone = mtcnn.detect(rgb, 24, 1 / 1.41, threads=1)
    split = mtcnn.detect(rgb, 24, 1 / 1.41, threads=2)
    assert len(alone) >= 4  # faces to compare (the photos have 4 and 5 people)
    assert split == alone
