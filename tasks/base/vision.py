"""Shared computer-vision helpers for tasks: OpenCV's bundled Haar cascades, detection with
the detector's own level weights, safe crops, and what five face landmarks give: the head's
pose and a face aligned to a canonical position.

The cascades ship inside the opencv-python-headless wheel (``cv2.data.haarcascades``);
nothing is downloaded. OpenCV 5 dropped ``CascadeClassifier``, hence the ``<5`` pin.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from tasks.base.task_base import FatalError

Box = tuple[int, int, int, int]  # x, y, width, height


@cache
def cascade(name: str) -> Any:
    """A loaded Haar cascade from OpenCV's data directory, e.g. "haarcascade_eye.xml"."""
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        raise FatalError("this OpenCV has no CascadeClassifier (OpenCV 5); install opencv<5")
    folder = cv2.data.haarcascades  # type: ignore[attr-defined]
    classifier = cv2.CascadeClassifier(folder + name)
    if classifier.empty():
        raise FatalError(f"cannot load cascade {name} from {folder}")
    return classifier


def detect(
    classifier: Any,
    gray: Any,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: int = 30,
) -> list[tuple[Box, float]]:
    """Detections with the level weight of the cascade's last stage (higher = surer)."""
    boxes, _levels, weights = classifier.detectMultiScale3(
        gray,
        scaleFactor=scale_factor,
        minNeighbors=min_neighbors,
        minSize=(min_size, min_size),
        outputRejectLevels=True,
    )
    found = []
    for box, weight in zip(boxes, weights, strict=False):
        x, y, w, h = (int(v) for v in box)
        found.append(((x, y, w, h), float(weight)))
    return sorted(found, key=lambda item: -item[1])


def score(weight: float) -> float:
    """A detector level weight squashed to 0..1 by the logistic function: a monotone score of
    the detector's own evidence, not a calibrated probability."""
    return 1.0 / (1.0 + math.exp(-weight))


def crop(image: Any, box: Box) -> Any:
    """The part of ``image`` inside ``box``, clipped to the image."""
    x, y, w, h = box
    height, width = image.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    if x1 <= x0 or y1 <= y0:
        raise FatalError(f"box {list(box)} lies outside the {width}x{height} image")
    return image[y0:y1, x0:x1]


def as_box(value: Any) -> Box:
    """A face box from ``[x, y, w, h]`` or a face dict with a ``bbox``."""
    if isinstance(value, dict):
        value = value.get("bbox")
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise FatalError(f"face box must be [x, y, width, height], got {value!r}")
    x, y, w, h = (int(v) for v in value)
    return x, y, w, h


Point = tuple[float, float]
# Where the five landmarks sit in a 112x112 aligned face (the template of ArcFace and most
# face-recognition models), in LANDMARKS order: image-left eye, image-right eye, nose tip,
# image-left and image-right mouth corner.
TEMPLATE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
TEMPLATE_ORDER = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
# How far the nose tip stands in front of the eyes, over the distance between the eyes, in an
# average adult head: what turns the nose's sideways shift into a yaw angle.
NOSE_DEPTH = 0.45


def pose(points: dict[str, Point]) -> dict[str, Any]:
    """The head's roll (exact, from the eyes) and an estimate of its yaw (from where the nose
    tip sits between the eyes and the mouth, with an average head's proportions: good to
    about ten degrees while both eyes are visible). Roll is positive when the head leans
    towards the image's right shoulder-side, i.e. the image-right eye sits lower; yaw is
    positive when the nose points to the image's right."""
    (rx, ry), (lx, ly) = points["right_eye"], points["left_eye"]
    nx, ny = points["nose"]
    (ax, ay), (bx, by) = points["mouth_right"], points["mouth_left"]
    eye_distance = math.hypot(lx - rx, ly - ry)
    ex, ey = (rx + lx) / 2, (ry + ly) / 2
    ux, uy = (ax + bx) / 2 - ex, (ay + by) / 2 - ey  # eyes' midpoint to mouth's midpoint
    length = math.hypot(ux, uy)
    if eye_distance < 1 or length < 1:
        return {"roll_degrees": None, "yaw_degrees": None, "basis": "landmarks too close"}
    across = ((nx - ex) * uy - (ny - ey) * ux) / length  # the nose's offset across that line
    return {
        "roll_degrees": round(math.degrees(math.atan2(ly - ry, lx - rx)), 1),
        "yaw_degrees": round(math.degrees(math.atan2(across, NOSE_DEPTH * eye_distance)), 1),
        "basis": "5 landmarks; yaw from an average head's proportions (about +-10 degrees)",
    }


def align(image: Any, points: dict[str, Point], size: int = 112) -> Any:
    """The face turned upright and scaled so its landmarks sit on ``TEMPLATE_112`` (scaled to
    ``size``): a similarity transform fitted to the five points."""
    import cv2
    import numpy as np

    src = np.array([points[name] for name in TEMPLATE_ORDER], dtype=np.float32)
    dst = np.array(TEMPLATE_112, dtype=np.float32) * (size / 112.0)
    matrix, _inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None:
        raise FatalError("input: the face's landmarks do not fit a face (cannot align)")
    return cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
