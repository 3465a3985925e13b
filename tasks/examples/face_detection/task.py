"""Face detection with OpenCV's frontal-face Haar cascade.

Each face has a box ``[x, y, width, height]``, the cascade's last-stage level weight, and a
confidence that is that weight squashed to 0..1 (a monotone detector score, not a calibrated
probability). Faces below ``confidence_threshold`` are dropped; ``max_faces`` (or the
original system's ``max_detections``) keeps that many of the most confident.
``enable_preprocessing`` (default true) equalizes the grey image's histogram before detecting,
which finds faces in flat, low-contrast light that the raw image hides.
"""

from __future__ import annotations

from typing import Any

from tasks.base.images import load_image
from tasks.base.task_base import FatalError, MLTask
from tasks.base.vision import cascade, detect, score

DEFAULTS = {
    "min_face_size": 30,
    "confidence_threshold": 0.5,
    "scale_factor": 1.1,
    "min_neighbors": 5,
}


class Task(MLTask):
    def load_model(self) -> Any:
        return cascade("haarcascade_frontalface_default.xml")

    def preprocess_input(self, input_data: dict[str, Any]) -> dict[str, Any]:
        params = {k: input_data.get(k, self.config.get(k, v)) for k, v in DEFAULTS.items()}
        if params["scale_factor"] <= 1.0:
            raise FatalError("input: scale_factor must be greater than 1")
        if params["min_face_size"] < 8 or params["min_neighbors"] < 0:
            raise FatalError("input: min_face_size must be >= 8 and min_neighbors >= 0")
        if not 0.0 <= params["confidence_threshold"] <= 1.0:
            raise FatalError("input: confidence_threshold must be between 0 and 1")
        limit = input_data.get("max_faces", input_data.get("max_detections"))
        if limit is not None:
            params["max_faces"] = int(limit)
        params["enable_preprocessing"] = bool(input_data.get("enable_preprocessing", True))
        image = load_image(input_data["image_path"], self.context)
        self.report_progress(0.3, "image loaded")
        return {"image": image, "params": params}

    def predict(self, features: dict[str, Any]) -> dict[str, Any]:
        import cv2

        image, params = features["image"], features["params"]
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if params["enable_preprocessing"]:
            gray = cv2.equalizeHist(gray)
        found = detect(
            self.model,
            gray,
            params["scale_factor"],
            params["min_neighbors"],
            params["min_face_size"],
        )
        faces: list[dict[str, Any]] = []
        for box, weight in found:
            confidence = score(weight)
            if confidence >= params["confidence_threshold"]:
                faces.append(
                    {
                        "bbox": list(box),
                        "confidence": round(confidence, 4),
                        "level_weight": round(weight, 4),
                    }
                )
        found_count = len(faces)
        if "max_faces" in params:  # the most confident first, then back in image order
            kept = sorted(faces, key=lambda f: -f["confidence"])[: params["max_faces"]]
            faces = [f for f in faces if any(f is k for k in kept)]
        for i, face in enumerate(faces):
            face["face_id"] = i
        height, width = image.shape[:2]
        self.report_progress(1.0, f"{len(faces)} face(s)")
        return {
            "faces": faces,
            "face_count": len(faces),
            "faces_found": found_count,  # before max_faces
            "image_size": {"width": width, "height": height, "channels": int(image.shape[2])},
            "detector": "opencv haarcascade_frontalface_default",
            "parameters": params,
        }
