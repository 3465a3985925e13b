"""Regenerate the Python code for every .proto under protos/ (the one codegen command).

Writes messages, gRPC stubs and .pyi type stubs to ``wtm/`` at the repository root, so
protoc's own ``from wtm.v1 import x_pb2`` imports are right without rewriting.

    python scripts/gen_protos.py            # write into the repository
    python scripts/gen_protos.py --out DIR  # write elsewhere (the staleness test does this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out: Path) -> list[Path]:
    """Generate code for all protos into ``out``; return the generated files."""
    sources = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for pkg in {p.parent for p in out.rglob("*_pb2.py")}:
        while pkg != out:
            (pkg / "__init__.py").touch()
            pkg = pkg.parent
    return sorted(p for p in out.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT)
    ns = parser.parse_args()
    files = generate(ns.out)
    for f in files:
        if f.suffix in {".py", ".pyi"} and f.is_relative_to(ns.out / "wtm"):
            print(f.relative_to(ns.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
