"""Task ``requirements`` checked against what this executor has, and installed when allowed.

A requirement is met by the executor's own environment, or by a directory this executor
installed it into earlier. With installing allowed (``--install-requirements``), what is
missing is installed with pip into ``root/<hash of the missing requirements>`` — one
directory per distinct set, shared by every task that needs that set, kept across restarts —
and the task's worker process gets that directory first on ``sys.path``. Without it, or when
pip fails, the step fails at once (FATAL) with an error that names the requirement, instead of
failing later with an ImportError. pip reads its usual configuration (``PIP_INDEX_URL``,
``PIP_FIND_LINKS``, ``PIP_NO_INDEX``...), so a private index or a wheelhouse works unchanged.

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
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from common.errors import FailedPrecondition

log = logging.getLogger(__name__)
_DONE = ".installed"


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

    def __init__(self, root: str | Path, allow_install: bool, timeout: float = 600.0) -> None:
        self.root = Path(root)
        self.allow_install = allow_install
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._met: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.installs = 0

    def known(self, requirements: list[str]) -> bool:
        """Whether ``prepare`` would answer at once (this set was found met before)."""
        return tuple(requirements) in self._met

    async def prepare(self, requirements: list[str]) -> tuple[str, ...]:
        """The directories to put first on the worker's ``sys.path`` (none when the
        environment has everything). Raises FailedPrecondition naming what is missing.
        A set found met is remembered: looking versions up costs more than a no-op step."""
        known = self._met.get(tuple(requirements))
        if known is not None:
            return known
        paths = await self._prepare(requirements)
        self._met[tuple(requirements)] = paths
        return paths

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
                await self._install(wanted, target)
        still = [p for r in wanted if (p := unmet(r, str(target))) is not None]
        if still:
            raise FailedPrecondition(
                "; ".join(still) + f" (after installing into {target})", field="requirements"
            )
        return (str(target),)

    async def _install(self, wanted: list[str], target: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=self.root))
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
            "--only-binary",
            ":all:",
            "--target",
            str(tmp),
            *wanted,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=pip_environment(os.environ),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)
            raise FailedPrecondition(
                f"installing {', '.join(wanted)} took over {self.timeout:g}s",
                field="requirements",
            ) from None
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            last = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()][-3:]
            raise FailedPrecondition(
                f"could not install {', '.join(wanted)}: " + " / ".join(last),
                field="requirements",
            )
        (tmp / _DONE).touch()
        tmp.chmod(0o755)  # mkdtemp made it 0700: sandboxed workers (own uid) read it too
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        self.installs += 1
