"""The inputs of ``python -m bench.run --only batching`` for this example: every run reads the
bundled recording (``tasks/data/speech.wav``: 9.4 s, two spoken sentences)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "speech.wav"


def bench_inputs(upload: Callable[[Path], str], count: int) -> list[dict[str, Any]]:
    uri = upload(SAMPLE)
    return [{"audio_path": uri} for _ in range(count)]
