"""Handwritten digit recognition: a random forest over 8 x 8 images of digits (scikit-learn).

The data are the UCI "Optical Recognition of Handwritten Digits" test set that ships inside
scikit-learn (``load_digits``: 1,797 digits written by 43 people, each an 8 x 8 grid of
counts 0-16 of the ink in 4 x 4 blocks of a 32 x 32 bitmap). ``setup`` trains the forest on
three quarters of them (``train_test_split`` with a fixed seed, so every worker trains the
same forest); the other quarter is held out, and the bench and the tests use only those.

An input is an image of one digit filling the frame, as in the data: any size, light ink on
a dark ground or dark ink on a light one (the image is inverted when its border is light).
It is reduced to 8 x 8 by area averaging and scaled to 0-16.

Dynamic batching (task.json ``batching``): a forest's prediction for one image costs
scikit-learn's per-call work on each of its 200 trees (checks, a call per tree), ~9 ms,
and for 32 images stacked in one array hardly more; ``process_batch`` makes that one call.
``process`` is the same code with a batch of one.
"""

from __future__ import annotations

from typing import Any

from tasks.base.images import load_image
from tasks.base.task_base import FatalError, SimpleTask

SIDE = 8  # the data's grid
TREES = 200
SEED = 0  # the split's and the forest's, so every worker has the same model
HELD_OUT = 0.25
MODEL = f"random forest of {TREES} trees (scikit-learn), UCI handwritten digits"


def features(image: Any) -> Any:
    """An image of one digit as the data's 64 features: ink light on dark, area-averaged to
    8 x 8, scaled to 0-16."""
    import cv2
    import numpy as np

    gray = image.astype(np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:  # dark ink on light paper
        gray = 255.0 - gray
    small = cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return (small * (16.0 / 255.0)).reshape(-1)


def split() -> tuple[Any, Any, Any, Any]:
    """The data as (train images, held-out images, train labels, held-out labels)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=HELD_OUT, random_state=SEED, stratify=y)  # type: ignore[no-any-return]


class Task(SimpleTask):
    def setup(self) -> None:
        from sklearn.ensemble import RandomForestClassifier

        x_train, _, y_train, _ = split()
        self.forest = RandomForestClassifier(n_estimators=TREES, random_state=SEED, n_jobs=1)
        self.forest.fit(x_train, y_train)

    def process(self, input_data: dict[str, Any]) -> dict[str, Any]:
        [output] = self.recognise([input_data])
        if isinstance(output, Exception):
            raise output
        return output

    def process_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        return self.recognise(inputs)

    def recognise(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """The digit of each input's image, the images in one call of the forest. One that
        cannot be read fails alone."""
        import numpy as np

        rows: list[Any] = []
        for data in inputs:
            try:
                rows.append(features(load_image(data.get("image_path"), self.context, True)))
            except FatalError as exc:
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
