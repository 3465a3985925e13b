"""Face attributes that can be computed honestly without downloading a model.

- smile: OpenCV's smile cascade on the lower half of the face; ``emotion`` is "happy" when a
  smile is found, else "neutral". Its confidence is the detector's score (the logistic of the
  best level weight): for "happy" of the smile found, for "neutral" one minus the score of the
  best weak smile candidate (0.5 when there is none: no evidence either way).
- eyes: OpenCV's eye cascade on the upper half; ``roll_degrees`` is the angle of the line
  through the two eye centres, when two are found.
- sharpness: variance of the Laplacian of the face; brightness: mean grey level, 0..1.
- age and gender need a trained model. None ships with this project and nothing may be
  downloaded at run time, so they are reported as unavailable, never guessed.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.base.images import load_image
from tasks.base.task_base import SimpleTask
from tasks.base.vision import as_box, cascade, crop, detect, score

UNAVAILABLE = {
    "available": False,
    "reason": "needs a trained age/gender model; none is bundled and none is downloaded",
}


class Task(SimpleTask):
    def setup(self) -> None:
        self.smiles = cascade("haarcascade_smile.xml")
        self.eyes = cascade("haarcascade_eye.xml")

    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        import cv2

        if input_data.get("include_attributes") is False:  # the run asked to leave this branch out
            return {"faces": [], "face_count": 0, "skipped": "include_attributes is false"}
        image = load_image(input_data["image_path"], self.context)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        faces = input_data["faces"]
        results = []
        for i, face in enumerate(faces):
            box = as_box(face)
            results.append(
                self.describe(gray, box, face.get("face_id", i) if isinstance(face, dict) else i)
            )
            self.report_progress((i + 1) / max(len(faces), 1), f"face {i + 1}/{len(faces)}")
        return {"faces": results, "face_count": len(results)}

    def describe(self, gray: Any, box: tuple[int, int, int, int], face_id: int) -> dict[str, Any]:
        import cv2

        x, y, w, h = box
        region = crop(gray, box)
        lower = crop(gray, (x, y + h // 2, w, h - h // 2))
        upper = crop(gray, (x, y, w, h // 2 + h // 10))
        strong = detect(self.smiles, lower, 1.1, 20, max(12, w // 6))
        weak = detect(self.smiles, lower, 1.1, 1, max(12, w // 6))
        if strong:
            emotion = {"label": "happy", "confidence": round(score(strong[0][1]), 4)}
        else:
            best_weak = weak[0][1] if weak else None
            confidence = 0.5 if best_weak is None else 1.0 - score(best_weak)
            emotion = {"label": "neutral", "confidence": round(confidence, 4)}
        emotion["basis"] = "opencv smile cascade"
        eyes = detect(self.eyes, upper, 1.1, 5, max(8, w // 10))[:2]
        eye_centres = sorted((x + ex + ew / 2, y + ey + eh / 2) for (ex, ey, ew, eh), _ in eyes)
        roll = None
        if len(eye_centres) == 2:
            (lx, ly), (rx, ry) = eye_centres
            roll = round(math.degrees(math.atan2(ry - ly, rx - lx)), 2)
        return {
            "face_id": face_id,
            "emotion": emotion,
            "smile": {
                "detected": bool(strong),
                "score": round(strong[0][1], 4) if strong else None,
            },
            "eyes": {
                "count": len(eyes),
                "boxes": [[x + ex, y + ey, ew, eh] for (ex, ey, ew, eh), _ in eyes],
            },
            "roll_degrees": roll,
            "sharpness": round(float(cv2.Laplacian(region, cv2.CV_64F).var()), 2),
            "brightness": round(float(region.mean()) / 255.0, 4),
            "age": UNAVAILABLE,
            "gender": UNAVAILABLE,
        }
