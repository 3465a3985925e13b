"""Fixed-length face descriptors and the landmarks that were actually found.

The descriptor is SIFT-like: the face is cropped, resized to 64x64 and histogram-equalised;
gradient orientations are counted into 8 bins (weighted by magnitude and a Gaussian centred on
the face) in each cell of a 4x4 grid — 128 numbers — then L2-normalised, clipped at 0.2 and
normalised again. Deterministic; closer for two views of one face than for different images.
"""

from __future__ import annotations

from typing import Any

from tasks.base.images import load_image
from tasks.base.task_base import SimpleTask
from tasks.base.vision import as_box, cascade, crop, detect

SIZE, GRID, BINS = 64, 4, 8


def descriptor(face_gray: Any) -> list[float]:
    import cv2
    import numpy as np

    patch = cv2.equalizeHist(cv2.resize(face_gray, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    patch = patch.astype(np.float32)
    gx = cv2.Sobel(patch, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3)
    magnitude, angle = cv2.cartToPolar(gx, gy)
    coords = np.arange(SIZE) - (SIZE - 1) / 2
    sigma = SIZE / 2
    weight = np.exp(-(coords[None, :] ** 2 + coords[:, None] ** 2) / (2 * sigma**2))
    bins = np.minimum((angle / (2 * np.pi) * BINS).astype(int), BINS - 1)
    cell = SIZE // GRID
    hist = np.zeros((GRID, GRID, BINS), dtype=np.float64)
    weighted = magnitude * weight
    for row in range(GRID):
        for col in range(GRID):
            sl = (slice(row * cell, (row + 1) * cell), slice(col * cell, (col + 1) * cell))
            hist[row, col] = np.bincount(bins[sl].ravel(), weighted[sl].ravel(), minlength=BINS)
    vector = hist.ravel()
    for _ in range(2):
        norm = np.linalg.norm(vector)
        vector = vector / norm if norm > 0 else vector
        vector = np.minimum(vector, 0.2)
    norm = np.linalg.norm(vector)
    vector = vector / norm if norm > 0 else vector
    return [round(float(v), 6) for v in vector]


class Task(SimpleTask):
    def setup(self) -> None:
        self.eyes = cascade("haarcascade_eye.xml")

    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        import cv2

        if input_data.get("include_features") is False:  # the run asked to leave this branch out
            return {"faces": [], "face_count": 0, "skipped": "include_features is false"}
        image = load_image(input_data["image_path"], self.context)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        faces = input_data["faces"]
        out = []
        for i, face in enumerate(faces):
            box = as_box(face)
            x, y, w, h = box
            eyes = detect(
                self.eyes, crop(gray, (x, y, w, h // 2 + h // 10)), 1.1, 5, max(8, w // 10)
            )[:2]
            centres = sorted((x + ex + ew // 2, y + ey + eh // 2) for (ex, ey, ew, eh), _ in eyes)
            landmarks = {}
            if len(centres) == 2:  # image left is the subject's right eye
                landmarks = {"right_eye": list(centres[0]), "left_eye": list(centres[1])}
            elif len(centres) == 1:
                landmarks = {"eye": list(centres[0])}
            out.append(
                {
                    "face_id": face.get("face_id", i) if isinstance(face, dict) else i,
                    "descriptor": descriptor(crop(gray, box)),
                    "descriptor_type": "gradient-orientation grid 4x4x8, L2-normalised",
                    "landmarks": landmarks,
                    "landmark_source": "opencv eye cascade",
                }
            )
            self.report_progress((i + 1) / max(len(faces), 1), f"face {i + 1}/{len(faces)}")
        return {"faces": out, "face_count": len(out), "dimension": GRID * GRID * BINS}
