"""An executor whose cache directory cannot be written stops at start, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.executor.preflight import check_cache_dir


def test_a_writable_cache_directory_is_made_and_left_clean(tmp_path: Path) -> None:
    check_cache_dir(tmp_path / "a" / "cache")
    assert list((tmp_path / "a" / "cache").iterdir()) == []


def test_a_file_where_the_directory_should_be_stops_the_executor_naming_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "cache").write_text("not a directory")
    with pytest.raises(SystemExit, match="cache directory .*cache.* cannot be written"):
        check_cache_dir(tmp_path / "cache")
