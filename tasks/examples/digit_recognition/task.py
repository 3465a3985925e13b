"""Handwritten digit recognition: a random forest over 8 x 8 grids of ink (scikit-learn).

The data are the test part of the UCI "Optical Recognition of Handwritten Digits" set, as
scikit-learn ships it (``load_digits``: 1,797 digits written by 13 people on NIST's forms,
each an 8 x 8 grid of counts 0-16 of the ink in 4 x 4 blocks of a size-normalised 32 x 32
bitmap). ``setup`` draws three quarters of them back as images (``drawn``), reads them as
it reads any input (``features``) and trains the forest on that (``train_test_split`` and
the forest with a fixed seed, so every worker has the same forest); the other quarter is
held out, and the bench and the tests use only those.

An input is an image of one handwritten digit: any size, light ink on a dark ground or dark
ink on a light one (inverted when its border is light). The ink is cropped, centred in a
square, area-averaged to 8 x 8 and scaled so its inkiest cell is 16. A blank image fails,
saying so; a picture of anything else still gets the digit it looks most like, with its
probability: the forest knows only digits.

Dynamic batching (task.json ``batching``): a forest's prediction for one image costs
scikit-learn's per-call work on each of its 200 trees (checks, a call per tree), ~9 ms,
and for 32 images stacked in one array hardly more; ``process_batch`` makes that one call.
A step leased alone is a batch of one (the SDK's ``process``
calls ``process_batch``).
"""

from __future__ import annotations

from typing import Any

from tasks.base.images import load_image
from tasks.base.task_base import FatalError, SimpleTask

SIDE = 8  # the data's grid
TREES = 200
SEED = 0  # the split's and the forest's, so every worker has the same model
HELD_OUT = 0.25
INK = 16.0  # the least shade over the paper's that counts as ink at all (of 255)
INK_SHARE = 0.25  # where the ink's box is cut: cells over this share of the darkest ink
MODEL = f"random forest of {TREES} trees (scikit-learn), UCI handwritten digits"


def features(image: Any) -> Any:
    """An image of one digit as the forest's 64 features: ink light on dark, cropped to the
    ink and centred in a square (the data's digits were size-normalised so), area-averaged
    to 8 x 8, scaled so the inkiest cell is 16 (the data's counts run 0-16)."""
    import cv2
    import numpy as np

    gray = image.astype(np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:  # dark ink on light paper
        gray, border = 255.0 - gray, 255.0 - border
    gray = np.clip(gray - np.median(border), 0, None)  # the paper's own shade is not ink
    if gray.max() <= INK:
        raise FatalError("no ink found: the image is blank")
    rows, cols = np.nonzero(gray > INK_SHARE * gray.max())
    gray = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    side = max(gray.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - gray.shape[0]) // 2, (side - gray.shape[1]) // 2
    square[top : top + gray.shape[0], left : left + gray.shape[1]] = gray
    small = cv2.resize(square, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return (small * (16.0 / small.max())).reshape(-1)


def drawn(counts: Any) -> Any:
    """One of the data's 8 x 8 grids of counts as the 32 x 32 image it summarises (each cell
    a 4 x 4 block of its shade), light ink on dark."""
    import numpy as np

    pixels = np.round(np.asarray(counts).reshape(SIDE, SIDE) * (255 / 16)).astype(np.uint8)
    return np.kron(pixels, np.ones((4, 4), np.uint8))


def split() -> tuple[Any, Any, Any, Any]:
    """The data as (train grids, held-out grids, train labels, held-out labels)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=HELD_OUT, random_state=SEED, stratify=y)  # type: ignore[no-any-return]


class Task(SimpleTask):
    def setup(self) -> None:
        import numpy as np
        from sklearn.ensemble import RandomForestClassifier

        # Trained on the training grids drawn as images and read back as any input is.
        grids, _, labels, _ = split()
        self.forest = RandomForestClassifier(n_estimators=TREES, random_state=SEED, n_jobs=1)
        self.forest.fit(np.stack([features(drawn(g)) for g in grids]), labels)

    def process_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """The digit of each input's image, the images in one call of the forest. One that
        cannot be read fails alone."""
        import numpy as np

        rows: list[Any] = []
        for data in inputs:
            try:
                rows.append(features(load_image(data.get("image_path"), self.context, True)))
            except FatalError as exc:  # this image alone
                rows.append(FatalError(f"image_path: {str(exc).removeprefix('image: ')}"))
        images = [r for r in rows if not isinstance(r, Exception)]
        probs = iter(self.forest.predict_proba(np.stack(images)) if images else [])
        outputs: list[dict[str, Any] | Exception] = []
        for row in rows:
            if isinstance(row, Exception):
                outputs.append(row)
                continue
            p = next(probs)
            best = int(np.argmax(p))
            outputs.append(
                {
                    "digit": int(self.forest.classes_[best]),
                    "probability": round(float(p[best]), 4),
                    "probabilities": [round(float(v), 4) for v in p],
                    "model": MODEL,
                    "batch_size": len(images),  # images that shared the forest's call
                }
            )
        return outputs
