"""The wire: protos pass buf lint, and the checked-in generated code is up to date."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in (tmp_path / "wtm").rglob("*") if p.is_file())
    checked_in = sorted(
        p.relative_to(ROOT)
        for p in (ROOT / "wtm").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == checked_in, "run `make protos` and commit wtm/"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"stale generated files {stale}: run `make protos` and commit wtm/"


@pytest.fixture(scope="module")
def buf() -> str:
    found = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    if found is None:
        pytest.fail("buf is not installed (pip install -e '.[dev]')")
    return found


def test_protos_pass_buf_lint(buf: str) -> None:
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_removed_field(buf: str, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(ROOT / "protos", changed / "protos")
    shutil.copy(ROOT / "buf.yaml", changed / "buf.yaml")
    run_proto = changed / "protos" / "wtm" / "v1" / "run.proto"
    text = run_proto.read_text()
    assert "  string error = 9;\n" in text
    run_proto.write_text(text.replace("  string error = 9;\n", "", 1))
    result = subprocess.run(
        [buf, "breaking", str(changed), "--against", str(ROOT)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "error" in result.stdout + result.stderr
