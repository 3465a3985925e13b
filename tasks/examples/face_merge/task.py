"""Merge the face pipeline's branches into one record per face.

Each part carries ``source``: the output id of the step it was mapped from (the task
context's ``input_sources``), so every value can be followed back through the lineage.
"""

from __future__ import annotations

from typing import Any

from tasks.base.task_base import FatalError, SimpleTask

PARTS = ("detection", "attributes", "features")


class Task(SimpleTask):
    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        sources = {
            p: self.context.input_sources[p] for p in PARTS if p in self.context.input_sources
        }
        detection = input_data["detection"]
        # A branch the run left out (include_attributes / include_features: false) says so.
        skipped = {
            part: input_data[part]["skipped"]
            for part in ("attributes", "features")
            if isinstance(input_data.get(part), dict) and input_data[part].get("skipped")
        }
        by_part = {
            part: {f.get("face_id"): f for f in (input_data.get(part) or {}).get("faces", [])}
            for part in ("attributes", "features")
            if part not in skipped
        }
        faces = []
        for face in detection.get("faces", []):
            face_id = face.get("face_id")
            merged: dict[str, Any] = {
                "face_id": face_id,
                "bbox": face["bbox"],
                "confidence": face.get("confidence"),
                "detection": {
                    **{k: face[k] for k in ("landmarks", "pose") if k in face},
                    "source": sources.get("detection"),
                },
            }
            for part, table in by_part.items():
                if part in input_data:
                    if face_id not in table:
                        raise FatalError(f"input: {part} has no face {face_id}")
                    body = {k: v for k, v in table[face_id].items() if k != "face_id"}
                    merged[part] = {**body, "source": sources.get(part)}
            faces.append(merged)
        return {
            "faces": faces,
            "face_count": len(faces),
            "image_size": detection.get("image_size"),
            "sources": sources,
            **({"skipped": skipped} if skipped else {}),
        }
