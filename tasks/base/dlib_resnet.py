"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) run in NumPy.

dlib's own forward pass (the ``dlib-bin`` wheel is built without BLAS) costs ~65 ms per face
on these CPUs; the same network as matrix products in NumPy (OpenBLAS) costs a fraction of
that. The weights are read from the model file that ``face_recognition_models`` ships (dlib's
binary serialization, parsed here as dlib's ``serialize.h`` and ``dnn/layers.h`` write it), and
the network is the one dlib's ``dnn_face_recognition_ex.cpp`` declares:

    conv 7x7/2 (32) -> affine -> relu -> max pool 3x3/2
    -> 3 residual blocks of 32 -> down to 64 + 3 blocks -> down to 128 + 2 -> down to 256 + 2
    -> down to 256 -> global average -> fully connected 128 (no bias)

A residual block is conv 3x3 -> affine -> relu -> conv 3x3 -> affine, added to its input,
then relu; a "down" block's first conv has stride 2 and its input is averaged 2x2/2 before
the sum, which is taken over the larger of the two shapes with zeros where one is missing
(as dlib's ``add_prev`` does). ``tests/unit/test_dlib_resnet.py`` checks that the
descriptors equal dlib's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MEAN_RGB = (122.782, 117.001, 104.298)  # input_rgb_image_sized's defaults; read from the file
MODEL = "dlib_face_recognition_resnet_model_v1"
CHIP = 150  # the network's input: an aligned 150x150 RGB face chip (dlib.get_face_chip)


class _Reader:
    """dlib's serialization: integers as a control byte (length | sign) then little-endian
    bytes; floats as an integer mantissa and exponent; tensors as four sizes then raw
    little-endian float32."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        ctrl = self.data[self.pos]
        size = ctrl & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if ctrl & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return float(np.ldexp(float(mantissa), exponent))

    def text(self) -> str:
        n = self.integer()
        value = self.data[self.pos : self.pos + n].decode("ascii")
        self.pos += n
        return value

    def shape(self) -> tuple[int, int, int, int]:
        self.integer()  # version
        return (self.integer(), self.integer(), self.integer(), self.integer())

    def tensor(self) -> np.ndarray:
        shape = self.shape()
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos += 4 * count
        return values.reshape(shape)


@dataclass(frozen=True)
class Conv:
    weights: np.ndarray  # (C*kh*kw, O), rows in (c, i, j) order
    bias: np.ndarray  # (O,)
    size: int
    stride: int
    padding: int


@dataclass(frozen=True)
class Affine:
    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class Pool:
    size: int  # 0: the whole input
    stride: int
    padding: int


def _layers(data: bytes) -> tuple[tuple[float, float, float], list[Any]]:
    """The input's channel means and the parameterised layers, input first, in file order."""
    markers = {
        b"\x01\x15input_rgb_image_sized": "input",
        b"\x01\x05con_4": "con",
        b"\x01\x07affine_": "affine",
        b"\x01\x0amax_pool_2": "pool",
        b"\x01\x0aavg_pool_2": "pool",
        b"\x01\x04fc_2": "fc",
    }
    r = _Reader(data)
    means: tuple[float, float, float] | None = None
    layers: list[Any] = []
    for match in re.finditer(b"|".join(re.escape(m) for m in markers), data):
        if match.start() < r.pos:  # inside a tensor just read
            continue
        r.pos = match.start()
        kind, version = markers[match.group()], r.text()
        if kind == "input":
            means = (r.real(), r.real(), r.real())
        elif kind == "con":
            params = r.tensor().ravel()
            filters, kh, kw = r.integer(), r.integer(), r.integer()
            stride_y, stride_x, pad_y, pad_x = r.integer(), r.integer(), r.integer(), r.integer()
            _, k, _, _ = r.shape()  # filters: (num_filters, k, kh, kw)
            r.shape()  # biases
            if kh != kw or stride_y != stride_x or pad_y != pad_x:
                raise ValueError(f"{version}: only square kernels, strides and paddings")
            n = filters * k * kh * kw
            w = params[:n].reshape(filters, k * kh * kw).T.copy()
            layers.append(Conv(w, params[n : n + filters].copy(), kh, stride_y, pad_y))
        elif kind == "affine":
            params = r.tensor().ravel()
            half = params.size // 2
            layers.append(Affine(params[:half].copy(), params[half:].copy()))
        elif kind == "pool":
            size, _, stride, _, padding, _ = (r.integer() for _ in range(6))
            layers.append(Pool(size, stride, padding))
        else:  # fc_2
            outputs, inputs = r.integer(), r.integer()
            params = r.tensor().ravel()
            layers.append(params[: inputs * outputs].reshape(inputs, outputs).copy())
    if means is None:
        raise ValueError("not a dlib input_rgb_image_sized network")
    return means, layers


def _conv(x: np.ndarray, c: Conv) -> np.ndarray:
    """x: (H, W, C) -> (Ho, Wo, O), as dlib's con_ (cross-correlation, zero padding)."""
    if c.padding:
        p = c.padding
        x = np.pad(x, ((p, p), (p, p), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (c.size, c.size), axis=(0, 1))
    windows = windows[:: c.stride, :: c.stride]  # (Ho, Wo, C, kh, kw)
    ho, wo = windows.shape[:2]
    cols = windows.reshape(ho * wo, -1)
    return (cols @ c.weights + c.bias).reshape(ho, wo, -1)


def _pool(x: np.ndarray, p: Pool, op: str) -> np.ndarray:
    if p.size == 0:  # avg_pool_everything
        return x.mean(axis=(0, 1), keepdims=True)
    if p.padding:
        raise ValueError("padded pooling is not used by this network")
    windows = np.lib.stride_tricks.sliding_window_view(x, (p.size, p.size), axis=(0, 1))
    windows = windows[:: p.stride, :: p.stride]
    return windows.max(axis=(3, 4)) if op == "max" else windows.mean(axis=(3, 4))


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's add_prev: the sum over the larger shape, zeros where one tensor has none."""
    if a.shape == b.shape:
        return a + b
    shape = tuple(max(i, j) for i, j in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2]] += b
    return out


class FaceNet:
    """The 128-number face descriptor of an aligned 150x150 RGB chip (uint8, HWC)."""

    def __init__(self, model_file: str | Path) -> None:
        try:
            self.means, self._layers = _layers(Path(model_file).read_bytes())
        except ValueError as exc:
            raise ValueError(f"{model_file}: not {MODEL} ({exc})") from exc
        # 29 convolutions, each with its affine; 1 max and 5 average pools; 1 dense layer
        if len(self._layers) != 29 * 2 + 6 + 1 or not isinstance(self._layers[-1], np.ndarray):
            raise ValueError(f"{model_file}: not {MODEL} ({len(self._layers)} layers)")

    def __call__(self, chip: np.ndarray) -> np.ndarray:
        if chip.shape != (CHIP, CHIP, 3):
            raise ValueError(f"a face chip is {CHIP}x{CHIP} RGB, not {chip.shape}")
        x = (chip.astype(np.float32) - np.asarray(self.means, np.float32)) / 256.0
        it = iter(self._layers)
        x = np.maximum(self._affine(_conv(x, next(it)), next(it)), 0)
        x = _pool(x, next(it), "max")
        while True:
            layer = next(it)
            if isinstance(layer, Pool):  # the global average, then the descriptor
                x = _pool(x, layer, "avg").reshape(-1)
                return (x @ next(it)).astype(np.float32)
            down = layer.stride != 1
            y = np.maximum(self._affine(_conv(x, layer), next(it)), 0)
            y = self._affine(_conv(y, next(it)), next(it))
            shortcut = _pool(x, next(it), "avg") if down else x
            x = np.maximum(_add(y, shortcut), 0)

    @staticmethod
    def _affine(x: np.ndarray, a: Affine) -> np.ndarray:
        return x * a.gamma + a.beta
