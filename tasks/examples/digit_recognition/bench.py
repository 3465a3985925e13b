"""The inputs of ``python -m bench.run --only batching`` for this example: held-out digits of
the data (never trained on), each drawn as a 32 x 32 PNG, uploaded once and cycled."""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

DISTINCT = 100  # images uploaded; the runs cycle through them


def held_out_images(directory: Path, count: int) -> list[tuple[Path, int]]:
    """The first ``count`` held-out digits as 32 x 32 PNG files in ``directory`` (every other
    one dark ink on light), with their labels."""
    import cv2

    spec = importlib.util.spec_from_file_location("digit_task", Path(__file__).with_name("task.py"))
    assert spec is not None and spec.loader is not None
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    _, grids, _, labels = task.split()
    found = []
    for i, (grid, label) in enumerate(zip(grids[:count], labels[:count], strict=True)):
        pixels = task.drawn(grid)
        path = directory / f"digit-{i}.png"
        cv2.imwrite(str(path), 255 - pixels if i % 2 else pixels)
        found.append((path, int(label)))
    return found


def bench_inputs(upload: Callable[[Path], str], count: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="wtm-digits-") as tmp:
        uris = [upload(path) for path, _ in held_out_images(Path(tmp), min(count, DISTINCT))]
    return [{"image_path": uris[i % len(uris)]} for i in range(count)]
