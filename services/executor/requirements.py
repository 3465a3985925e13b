"""Task ``requirements`` checked against what this executor has, and installed when allowed.

A requirement is met by the executor's own environment, or by a directory this executor
installed it into earlier. With installing allowed (``--install-requirements``), what is
missing is installed with pip into ``root/<hash of the missing requirements>`` — one
directory per distinct set, shared by every task that needs that set, kept across restarts —
and the task's worker process gets that directory first on ``sys.path``. Without it, or when
pip fails, the step fails at once (FATAL) with an error that names the requirement, instead of
failing later with an ImportError. pip reads its usual configuration (``PIP_INDEX_URL``,
``PIP_FIND_LINKS``, ``PIP_NO_INDEX``...), so a private index or a wheelhouse works unchanged.

The installed sets are capped in size (``max_bytes``, ``WTM_REQUIREMENTS_CACHE_MAX_MB``), as
the package and artifact caches are: with installing allowed, every set any task version
named was kept for good, and a team registering versions with large requirements filled the
executor's volume (on Kubernetes, the pod's eviction with every step on it). An install is
measured while pip runs — its temporary files live in the set's own temporary directory —
and one over the whole cap is stopped and refused, naming the cap; past the cap the least
recently used sets go (their last use kept as the directory's mtime, so the order survives
restarts), never one a running step uses; idle warm workers that have an evicted set on
their path are retired first (``on_evict``).

A task's requirements are as untrusted as its code, and pip runs here, in the executor, as
its user: so only wheels are installed (``--only-binary :all:``; building a source
distribution runs code the distribution brings, and before 2026-12-04 a task naming one got
that code run as root in the executor), and pip gets an environment without the executor's
own settings and secrets (``pip_environment``). A requirement with a direct URL
(``name @ https://...``) is refused: the executor fetches from its configured index, never
from where a task says.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from common.errors import FailedPrecondition
from services.executor.lru_directories import LruDirectories
from services.executor.worker_disk import usage

log = logging.getLogger(__name__)
_DONE = ".installed"
WATCH_SECONDS = 1.0  # how often a running install's size is measured
_WALK_FILES = 10**6  # a set of wheels may hold many files; its walk is not cut short


def _installed_version(name: str, path: str | None) -> str | None:
    if path is None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None
    for dist in metadata.Distribution.discover(name=name, path=[path]):
        return dist.version
    return None


# What pip may see of the executor's environment: its own settings, finding the index (and
# the proxy, certificates and home its configuration lives in), the locale. Not WTM_* (keys,
# addresses of the stores), nor anything else the executor was given.
_PIP_KEEPS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
_PIP_KEEPS_PREFIXES = (
    "PIP_",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "NETRC",
    "XDG_",
)


def pip_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment pip runs in: what finding and fetching wheels needs, nothing else."""
    return {
        k: v for k, v in environ.items() if k in _PIP_KEEPS or k.startswith(_PIP_KEEPS_PREFIXES)
    }


@cache
def unmet(requirement: str, path: str | None = None) -> str | None:
    """Why ``requirement`` (a PEP 508 string) is not met here — in the executor's environment,
    or in directory ``path`` when given — or None when it is."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        return f"{requirement!r} is not a valid requirement ({exc})"
    if req.marker is not None and not req.marker.evaluate():
        return None
    installed = _installed_version(req.name, path)
    if installed is None:
        return f"{requirement!r} is not installed on this executor"
    if req.specifier and not req.specifier.contains(installed, prereleases=True):
        return f"{requirement!r} is not met: this executor has {req.name} {installed}"
    return None


def missing(requirements: list[str]) -> list[str]:
    """The problems with ``requirements`` here; empty when every one is met."""
    return [problem for r in requirements if (problem := unmet(r)) is not None]


class RequirementInstaller:
    """Makes a task's requirements importable, or says which cannot be."""

    def __init__(
        self,
        root: str | Path,
        allow_install: bool,
        timeout: float = 600.0,
        max_bytes: int = 0,
        in_use: Callable[[], set[str]] = set,
        on_evict: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.allow_install = allow_install
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._in_use = in_use  # directories on the path of a running step's worker
        self._on_evict = on_evict
        self._locks: dict[str, asyncio.Lock] = {}
        self._met: dict[tuple[str, ...], tuple[str, ...]] = {}
        # installed sets (by directory name): what an earlier executor installed counts and
        # goes oldest first; an install or an eviction it cut short is removed.
        self._sets = LruDirectories(
            self.root,
            max_bytes,
            lambda path: usage(str(path), _WALK_FILES).bytes,
            "requirements",
            complete=lambda path: (path / _DONE).exists(),
        )
        self.installs = 0

    @property
    def total_bytes(self) -> int:
        return self._sets.total_bytes

    @property
    def evictions(self) -> int:
        return self._sets.evictions

    def known(self, requirements: list[str]) -> bool:
        """Whether ``prepare`` would answer at once (this set was found met before)."""
        return tuple(requirements) in self._met

    async def prepare(self, requirements: list[str]) -> tuple[str, ...]:
        """The directories to put first on the worker's ``sys.path`` (none when the
        environment has everything). Raises FailedPrecondition naming what is missing.
        A set found met is remembered: looking versions up costs more than a no-op step."""
        known = self._met.get(tuple(requirements))
        if known is not None:
            for path in known:
                self._sets.touch(Path(path).name)
            return known
        paths = await self._prepare(requirements)
        self._met[tuple(requirements)] = paths
        return paths

    def paths_of(self, requirements: list[str]) -> tuple[str, ...]:
        """The directories ``prepare`` gave for ``requirements`` (none if not prepared)."""
        return self._met.get(tuple(requirements), ())

    async def _prepare(self, requirements: list[str]) -> tuple[str, ...]:
        wanted = [r for r in requirements if unmet(r) is not None]
        if not wanted:
            return ()
        invalid = [p for r in wanted if (p := unmet(r)) and "not a valid requirement" in p]
        if invalid or not self.allow_install:
            raise FailedPrecondition("; ".join(missing(wanted)), field="requirements")
        if direct := [r for r in wanted if Requirement(r).url]:
            raise FailedPrecondition(
                f"{', '.join(map(repr, direct))}: a requirement names a distribution on the "
                "executor's package index, not a URL (nothing is fetched from where a task "
                "says)",
                field="requirements",
            )
        key = hashlib.sha256("\n".join(sorted(wanted)).encode()).hexdigest()[:24]
        target = self.root / key
        async with self._locks.setdefault(key, asyncio.Lock()):
            if not (target / _DONE).exists():
                self._sets.add(key, await self._install(wanted, target))
                await self._evict(keep=key)
            self._sets.touch(key)
        still = [p for r in wanted if (p := unmet(r, str(target))) is not None]
        if still:
            raise FailedPrecondition(
                "; ".join(still) + f" (after installing into {target})", field="requirements"
            )
        return (str(target),)

    async def _evict(self, keep: str) -> None:
        """Past the cap, remove the least recently used sets: never ``keep`` (just
        installed), one on a running step's path, nor one being prepared (its lock held)."""
        busy = self._in_use()

        def in_use(name: str) -> bool:
            lock = self._locks.get(name)
            return str(self.root / name) in busy or bool(lock and lock.locked())

        doomed = self._sets.evict(keep, in_use)
        gone = {path for path, _ in doomed}  # a prepare from here on installs them afresh
        self._met = {reqs: ps for reqs, ps in self._met.items() if not gone & set(ps)}
        for path, moved in doomed:
            if self._on_evict is not None:
                await self._on_evict(path)
            await asyncio.to_thread(shutil.rmtree, moved, True)

    async def _install(self, wanted: list[str], target: Path) -> int:
        """Install ``wanted`` into ``target``; its size on disk. pip's temporary files go
        under the set's temporary directory, so the size watched while it runs is all of it."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=self.root))
        (tmp / ".pip-tmp").mkdir()
        log.info("installing %s into %s", ", ".join(wanted), target)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-input",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--no-cache-dir",
            "--only-binary",
            ":all:",
            "--target",
            str(tmp / "site"),
            *wanted,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**pip_environment(os.environ), "TMPDIR": str(tmp / ".pip-tmp")},
        )
        try:
            out, why = await self._watch(proc, tmp)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if why is not None or proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
        if why is not None:
            raise FailedPrecondition(f"installing {', '.join(wanted)} {why}", field="requirements")
        if proc.returncode != 0:
            last = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()][-3:]
            raise FailedPrecondition(
                f"could not install {', '.join(wanted)}: " + " / ".join(last),
                field="requirements",
            )
        site = tmp / "site"
        site.mkdir(exist_ok=True)
        size = (await asyncio.to_thread(usage, str(site), _WALK_FILES)).bytes
        if self.max_bytes and size > self.max_bytes:  # it ended between two looks
            shutil.rmtree(tmp, ignore_errors=True)
            raise FailedPrecondition(
                f"installing {', '.join(wanted)} {self._over_cap()}", field="requirements"
            )
        (site / _DONE).touch()
        site.chmod(0o755)  # sandboxed workers (their own uid) read it too
        shutil.rmtree(target, ignore_errors=True)
        site.rename(target)
        shutil.rmtree(tmp, ignore_errors=True)
        self.installs += 1
        return size

    def _over_cap(self) -> str:
        return (
            f"took over {self.max_bytes / 2**20:,.0f} MiB of disk, the whole requirements "
            "cache (WTM_REQUIREMENTS_CACHE_MAX_MB)"
        )

    async def _watch(self, proc: asyncio.subprocess.Process, tmp: Path) -> tuple[bytes, str | None]:
        """pip's output once it ends, or why it was stopped: over the time allowed, or its
        files (downloads, unpacked wheels, the installed set) over the whole cache's cap."""
        output = asyncio.ensure_future(proc.communicate())
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                left = deadline - time.monotonic()
                done, _ = await asyncio.wait({output}, timeout=min(WATCH_SECONDS, max(left, 0)))
                if done:
                    return output.result()[0], None
                if left <= 0:
                    return b"", f"took over {self.timeout:g}s"
                if self.max_bytes:
                    used = (await asyncio.to_thread(usage, str(tmp), _WALK_FILES)).bytes
                    if used > self.max_bytes:
                        return b"", self._over_cap()
        finally:
            if not output.done():
                proc.kill()
                await asyncio.wait({output})
