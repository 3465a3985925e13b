"""The digit recognition example (a random forest, scikit-learn), in-process: it reads
held-out digits it was never trained on, ink light or dark, and a batch gives each image
what it gets alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.batching import example_bench
from tasks.base.runtime import load_task, run_batch, run_once
from tests.conftest import ROOT

EXAMPLE = ROOT / "tasks" / "examples" / "digit_recognition"


@pytest.fixture(scope="module")
def task():  # noqa: ANN201
    t = load_task(EXAMPLE)
    t.setup()
    return t


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    """Held-out digits as PNG files (every other one dark ink on light), with labels."""
    return example_bench(EXAMPLE).held_out_images(tmp_path_factory.mktemp("digits"), 200)  # type: ignore[no-any-return]


def recognise(task, path: Path | str) -> dict:  # noqa: ANN001
    verdict, payload = run_once(task, json.dumps({"image_path": str(path)}))
    assert verdict == "ok", payload
    return json.loads(payload)


def test_it_reads_held_out_digits_it_was_not_trained_on(task, digits) -> None:  # noqa: ANN001
    outputs = [recognise(task, path) for path, _ in digits]
    right = sum(out["digit"] == label for out, (_, label) in zip(outputs, digits, strict=True))
    assert right / len(digits) >= 0.95  # 97.5% when written; ten classes: chance is 10%
    assert {label for _, label in digits} == set(range(10))
    for out in outputs:
        assert len(out["probabilities"]) == 10
        assert out["probability"] == max(out["probabilities"]) and out["batch_size"] == 1
        assert sum(out["probabilities"]) == pytest.approx(1.0, abs=0.01)


def test_dark_ink_on_light_paper_reads_as_light_on_dark(task, digits, tmp_path: Path) -> None:  # noqa: ANN001
    import cv2

    path, _ = digits[0]  # light ink on dark
    inverted = tmp_path / "inverted.png"
    cv2.imwrite(str(inverted), 255 - cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    assert recognise(task, inverted) == recognise(task, path)


def test_a_batch_gives_each_image_what_it_gets_alone(task, digits, tmp_path: Path) -> None:  # noqa: ANN001
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    paths = [str(p) for p, _ in digits[:5]] + [str(broken), str(digits[5][0])]
    results = run_batch(task, [json.dumps({"image_path": p}) for p in paths])
    verdicts = [v for v, _ in results]
    assert verdicts == ["ok"] * 5 + ["fatal", "ok"]
    assert "image_path:" in results[5][1] and "could not be decoded" in results[5][1]
    for path, (_, payload) in zip(paths, results, strict=True):
        if path == str(broken):
            continue
        together, alone = json.loads(payload), recognise(task, path)
        assert together["batch_size"] == 6  # the images that shared the forest's call
        assert {**together, "batch_size": 1} == alone


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "image_path: expected a path"), ("digit.gif", "unsupported format")],
)
def test_what_it_cannot_read_is_named(task, value: str, expected: str) -> None:  # noqa: ANN001
    verdict, payload = run_once(task, json.dumps({"image_path": value}))
    assert verdict == "fatal" and expected in payload and "image_path" in payload


def test_a_digit_anywhere_on_a_larger_page_is_read_as_alone(task, digits, tmp_path: Path) -> None:  # noqa: ANN001
    import cv2
    import numpy as np

    path, label = digits[2]  # light ink on dark, 32 x 32
    page = np.zeros((300, 400), np.uint8)
    page[200:264, 40:104] = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (64, 64))
    cv2.imwrite(str(tmp_path / "page.png"), page)
    assert recognise(task, tmp_path / "page.png")["digit"] == label
    assert recognise(task, ROOT / "tasks" / "data" / "digit.png")["digit"] == 2


def test_a_blank_image_fails_saying_so(task, tmp_path: Path) -> None:  # noqa: ANN001
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "blank.png"), np.full((32, 32), 255, np.uint8))
    verdict, payload = run_once(task, json.dumps({"image_path": str(tmp_path / "blank.png")}))
    assert verdict == "fatal" and "image_path: no ink found" in payload
