"""``check_cache_dir``: an executor that cannot write its cache directory says so and stops
at start, instead of failing every step it would be given.

A full disk, a read-only or mis-mounted volume, or a file where the directory should be
would make each step fail in the executor itself. The rest guard (``slot_faults``) notices
that once the task version it fails has run somewhere; it would not, in a fleet serving one
new task. And a crash at start is the plainer signal. So before it connects, the executor
writes a mebibyte into its cache directory, syncs it and removes it; if that fails it exits
(status 1) naming the directory and why, and its supervisor shows a crash loop —
Kubernetes' CrashLoopBackOff, a compose service restarting — rather than a fleet quietly
failing work.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROBE_BYTES = 1 << 20


def check_cache_dir(cache_dir: str | Path) -> None:
    """Raise ``SystemExit`` when ``cache_dir`` cannot be made, written to and cleaned."""
    path = Path(cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".preflight-", dir=path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"\0" * PROBE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(name)
    except OSError as exc:
        raise SystemExit(
            f"the executor's cache directory {str(path)!r} cannot be written "
            f"({exc.strerror or exc}): free space there or point WTM_EXECUTOR_CACHE_DIR "
            "elsewhere; it holds task packages, input artifacts and workers' files"
        ) from exc
