"""Loading images for tasks: from an artifact URI, a local path, or bytes.

Every failure is a ``FatalError`` that says what was wrong (a retry cannot fix a missing,
unsupported or corrupt image). OpenCV is imported here, not in the kit's core, so tasks that
do not touch images do not need it.
"""

from __future__ import annotations

import base64
from pathlib import PurePosixPath
from typing import Any

from tasks.base.task_base import FatalError, TaskContext

SUPPORTED_FORMATS = {"jpg", "jpeg", "png", "bmp", "tif", "tiff"}


def image_format(name: str) -> str:
    return PurePosixPath(name.split("?")[0]).suffix.lower().lstrip(".")


def _read_bytes(value: Any, context: TaskContext | None) -> tuple[bytes, str]:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), "bytes"
    if isinstance(value, dict) and "data_base64" in value:
        try:
            return base64.b64decode(value["data_base64"], validate=True), "base64 data"
        except ValueError as exc:
            raise FatalError(f"image: data_base64 is not valid base64 ({exc})") from exc
    if not isinstance(value, str) or not value:
        raise FatalError(
            f"image: expected a path, an artifact URI or bytes, got {type(value).__name__}"
        )
    fmt = image_format(value)
    if fmt not in SUPPORTED_FORMATS:
        raise FatalError(
            f"image: {value!r} has unsupported format {fmt or '(none)'!r}; "
            f"supported: {sorted(SUPPORTED_FORMATS)}"
        )
    path = (context or TaskContext()).local_path(value, "image")
    try:
        return path.read_bytes(), value
    except OSError as exc:
        raise FatalError(f"image: cannot read {value!r}: {exc.strerror or exc}") from exc


def load_image(value: Any, context: TaskContext | None = None, grayscale: bool = False) -> Any:
    """A decoded image (numpy array, BGR or grayscale)."""
    import cv2
    import numpy as np

    data, what = _read_bytes(value, context)
    if not data:
        raise FatalError(f"image: {what} is empty")
    flags = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None:
        raise FatalError(f"image: {what} could not be decoded (corrupt or not an image)")
    return image
