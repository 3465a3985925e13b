"""Distributions made by hand for the tests of task requirements: no build tool, no index."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path


def build_wheel(directory: Path, name: str, version: str, code: str, data: bytes = b"") -> Path:
    """A minimal pure-Python wheel, made by hand so no build tool or index is needed;
    ``data``, when given, is installed beside the module as ``data.bin``."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files: dict[str, str | bytes] = {
        f"{module}/__init__.py": code,
        **({f"{module}/data.bin": data} if data else {}),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    files[f"{dist_info}/RECORD"] = "".join(f"{p},,\n" for p in [*files, f"{dist_info}/RECORD"])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, content in files.items():
            zf.writestr(p, content)
    return path


def build_sdist(directory: Path, name: str, version: str, backend: str) -> Path:
    """A source distribution whose build backend is its own ``backend.py`` (nothing to
    download to build it): pip runs that code to build a wheel."""
    module = name.replace("-", "_")
    root = f"{module}-{version}"
    files = {
        f"{root}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{root}/pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        ),
        f"{root}/backend.py": backend,
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for p, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(p)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path
