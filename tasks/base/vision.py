"""Shared computer-vision helpers for tasks: OpenCV's bundled Haar cascades, detection with
the detector's own level weights, and safe crops.

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
