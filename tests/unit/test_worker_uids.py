"""Worker uids are claimed host-wide: two executors never hand out the same one, and a
claim ends with the process that held it."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from services.executor import worker_uids
from services.executor.worker_uids import WorkerUids


def test_two_executors_claim_different_uids(tmp_path: Path) -> None:
    first, second = WorkerUids(70000, tmp_path), WorkerUids(70000, tmp_path)
    assert [first.claim(), second.claim(), first.claim(), second.claim()] == [
        70000,
        70001,
        70002,
        70003,
    ]
    assert (first.held, second.held) == ([70000, 70002], [70001, 70003])
    first.close()
    second.close()


def test_a_uid_given_back_is_claimed_again(tmp_path: Path) -> None:
    first = WorkerUids(70000, tmp_path)
    assert first.claim() == 70000
    first.close()
    later = WorkerUids(70000, tmp_path)
    assert later.claim() == 70000
    later.close()


def test_a_claim_ends_with_its_process_however_it_ends(tmp_path: Path) -> None:
    claim = (
        "import sys; from pathlib import Path; from services.executor.worker_uids import "
        f"WorkerUids; u = WorkerUids(70000, Path({str(tmp_path)!r})); print(u.claim(), "
        "flush=True); sys.stdin.read()"
    )
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", claim],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "70000"
            meanwhile = WorkerUids(70000, tmp_path)
            assert meanwhile.claim() == 70001  # held by the other process
        finally:
            holder.kill()  # no chance to give it back
    assert meanwhile.claim() == 70002  # it counts on; a new claimer starts at the base
    fresh = WorkerUids(70000, tmp_path)
    assert fresh.claim() == 70000
    fresh.close()
    meanwhile.close()


def test_none_free_is_an_error_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_uids, "SPAN", 2)
    first, second = WorkerUids(70000, tmp_path), WorkerUids(70000, tmp_path)
    first.claim()
    first.claim()
    with pytest.raises(OSError, match="no free worker uid in 70000..70001"):
        second.claim()
    first.close()


def test_without_run_the_claims_go_under_the_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container with a read-only root (as deploy/k8s runs the executor) has no writable
    /run; its one executor claims under /tmp."""
    monkeypatch.setattr(worker_uids, "DEFAULT_DIRECTORY", Path("/proc/wtm-worker-uids"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    uids = WorkerUids(70000, worker_uids.DEFAULT_DIRECTORY)
    assert uids.claim() == 70000
    assert uids.directory == tmp_path / "wtm-worker-uids"
    assert (tmp_path / "wtm-worker-uids" / "70000").exists()
    uids.close()


def test_a_lock_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(OSError, match="only it may write"):
        WorkerUids(70000, shared).claim()
