"""Face attributes from the detector's five landmarks and the face aligned by them.

Each face is aligned first (``tasks.base.vision.align``: eyes level, a fixed size), so what
follows sees the same geometry whatever the head's tilt:
- pose: roll from the eyes, yaw estimated from the nose (``tasks.base.vision.pose``);
- eyes: for each eye landmark, whether OpenCV's eye cascade confirms an eye there (an eye
  that is closed, covered or turned away is usually not confirmed);
- smile: OpenCV's smile cascade on the mouth region, with its score;
- emotion: the mini-Xception network trained on FER-2013 (``tasks/base/mini_xception.py``;
  66% accuracy on that benchmark, so one face in three is read wrong): the seven expressions'
  probabilities and the most probable;
- sharpness (variance of the Laplacian) and brightness (mean grey level, 0..1).
Age and gender need trained classifiers; none ships in a package this project can install,
and nothing is downloaded at run time, so they are reported as unavailable, with the reason —
never guessed. A face given without landmarks (a bare ``bbox``) is first located
again inside its box by the detector; failing that it is described unaligned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.base import mtcnn
from tasks.base.images import load_image
from tasks.base.mini_xception import MiniXception
from tasks.base.task_base import SimpleTask
from tasks.base.vision import TEMPLATE_112, align, as_box, cascade, crop, detect, pose, score

SIZE = 224  # the aligned face, in pixels
EYE_WINDOW = (72, 56)  # searched around each eye landmark of the aligned face
# The alignment puts the eyes 70 px apart, so an eye spans ~35-50 px: windows under 24 px
# are not eyes (searching them was a fifth of the cascade's time; on the labelled photos'
# 42 eyes every found/not-found answer is the same as with the cascade's 16 px minimum).
EYE_MIN = 24
EMOTION_WEIGHTS = Path(__file__).with_name("emotion_mini_xception.npz")


def unavailable(what: str) -> dict[str, Any]:
    return {
        "available": False,
        "reason": f"needs a trained {what} model; none ships in an installable package and "
        "none is downloaded",
    }


def landmarks_of(image: Any, face: Any) -> dict[str, tuple[float, float]] | None:
    """The face's five landmarks: as given, or found again inside its (widened) box."""
    import cv2

    if isinstance(face, dict) and isinstance(face.get("landmarks"), dict):
        return {k: (float(v[0]), float(v[1])) for k, v in face["landmarks"].items()}
    x, y, w, h = as_box(face)
    pad = max(w, h) // 4
    x0, y0 = max(0, x - pad), max(0, y - pad)
    region = cv2.cvtColor(crop(image, (x0, y0, w + 2 * pad, h + 2 * pad)), cv2.COLOR_BGR2RGB)
    found = mtcnn.detect(region, max(12, min(w, h) // 2))
    if not found:
        return None
    return {k: (px + x0, py + y0) for k, (px, py) in found[0].points.items()}


class Task(SimpleTask):
    def setup(self) -> None:
        self.smiles = cascade("haarcascade_smile.xml")
        self.eyes = cascade("haarcascade_eye.xml")
        self.expressions = MiniXception(EMOTION_WEIGHTS)

    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        import cv2

        if input_data.get("include_attributes") is False:  # the run asked to leave this branch out
            return {"faces": [], "face_count": 0, "skipped": "include_attributes is false"}
        image = load_image(input_data["image_path"], self.context)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        faces = input_data["faces"]
        results = []
        for i, face in enumerate(faces):
            face_id = face.get("face_id", i) if isinstance(face, dict) else i
            points = landmarks_of(image, face)
            if points is None:
                region = cv2.resize(crop(gray, as_box(face)), (SIZE, SIZE))
            else:
                region = align(gray, points, SIZE)
            results.append({"face_id": face_id, **self.describe(region, points)})
            self.report_progress((i + 1) / max(len(faces), 1), f"face {i + 1}/{len(faces)}")
        return {"faces": results, "face_count": len(results)}

    def emotion(self, face: Any) -> dict[str, Any]:
        import cv2

        scores = self.expressions(cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA))
        label = max(scores, key=lambda k: scores[k])
        return {
            "dominant_emotion": label,
            "confidence": round(scores[label], 4),
            "scores": {k: round(v, 4) for k, v in scores.items()},
            "model": "mini-Xception, FER-2013 (66% test accuracy, published)",
        }

    def describe(self, face: Any, points: dict[str, tuple[float, float]] | None) -> dict[str, Any]:
        import cv2

        half = SIZE // 2
        mouth = face[half + SIZE // 8 :, SIZE // 8 : SIZE - SIZE // 8]
        strong = detect(self.smiles, mouth, 1.1, 20, SIZE // 6)
        eyes: dict[str, Any] = {}
        if points is not None:  # the aligned face: each eye sits where the template puts it
            for name, (tx, ty) in (("right", TEMPLATE_112[0]), ("left", TEMPLATE_112[1])):
                cx, cy, (ww, wh) = tx * SIZE / 112, ty * SIZE / 112, EYE_WINDOW
                window = crop(face, (int(cx - ww / 2), int(cy - wh / 2), ww, wh))
                found = detect(self.eyes, window, 1.05, 3, EYE_MIN)
                eyes[name] = {"found": bool(found)}
        return {
            "aligned": points is not None,
            "pose": pose(points) if points is not None else None,
            "eyes": {
                **eyes,
                "count": sum(e["found"] for e in eyes.values()),
                "basis": "OpenCV eye cascade at each eye landmark of the aligned face",
            },
            "smile": {
                "detected": bool(strong),
                "score": round(score(strong[0][1]), 4) if strong else None,
                "basis": "OpenCV smile cascade on the aligned mouth region",
            },
            "sharpness": round(float(cv2.Laplacian(face, cv2.CV_64F).var()), 2),
            "brightness": round(float(face.mean()) / 255.0, 4),
            "emotion": self.emotion(face),
            "age": unavailable("age"),
            "gender": unavailable("gender"),
        }
