"""Task requirements against the executor's environment."""

from __future__ import annotations

import asyncio
import os
from importlib import metadata
from pathlib import Path

import pytest

from common.errors import FailedPrecondition
from services.executor.requirements import RequirementInstaller, missing, pip_environment
from tests.wheels import build_wheel


def test_installed_requirements_are_met() -> None:
    grpc_version = metadata.version("grpcio")
    assert missing(["grpcio", f"grpcio=={grpc_version}", "numpy>=1"]) == []


def test_a_missing_package_is_named() -> None:
    assert missing(["definitely-not-installed-pkg>=1.0"]) == [
        "'definitely-not-installed-pkg>=1.0' is not installed on this executor"
    ]


def test_a_version_that_does_not_match_names_what_is_installed() -> None:
    [problem] = missing(["grpcio<1.0"])
    assert problem.startswith("'grpcio<1.0' is not met: this executor has grpcio ")


def test_a_requirement_for_another_platform_is_skipped() -> None:
    assert missing(['pywin32>=300; sys_platform == "win32"']) == []


def test_nonsense_is_reported_not_crashed_on() -> None:
    [problem] = missing(["=== nope"])
    assert "not a valid requirement" in problem


def test_pip_sees_how_to_find_wheels_and_none_of_the_executors_settings() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "PIP_INDEX_URL": "https://pypi.internal/simple",
        "HTTPS_PROXY": "http://proxy:3128",
        "WTM_API_KEY": "wtm_secret",
        "WTM_REGISTRY_ADDR": "registry:50051",
        "AWS_SECRET_ACCESS_KEY": "s3-secret",
    }
    assert pip_environment(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "PIP_INDEX_URL": "https://pypi.internal/simple",
        "HTTPS_PROXY": "http://proxy:3128",
    }


def test_a_requirement_naming_a_url_is_refused_before_pip_runs(tmp_path: Path) -> None:
    installer = RequirementInstaller(tmp_path, allow_install=True)
    wanted = ["wtm-nowhere @ http://169.254.169.254/latest/meta-data/x-1.0-py3-none-any.whl"]
    with pytest.raises(FailedPrecondition, match="not a URL") as err:
        asyncio.run(installer.prepare(wanted))
    assert err.value.field == "requirements"
    assert installer.installs == 0 and not any(tmp_path.iterdir())


def wheelhouse(root: Path, monkeypatch: pytest.MonkeyPatch, **sizes_kb: int) -> None:
    """Wheels ``wtm-<name>`` 1.0, each with that many KB of data (random: what is installed
    takes that much), found by pip here and nowhere else."""
    for name, kb in sizes_kb.items():
        build_wheel(root, f"wtm-{name}", "1.0", "VALUE = 1\n", data=os.urandom(kb * 1024))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(root))


def installed_sets(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def test_installed_sets_keep_to_the_cap_least_recently_used_first_never_one_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheelhouse(tmp_path / "wheels", monkeypatch, a=600, b=600)
    root, in_use, retired = tmp_path / "requirements", set[str](), list[str]()

    async def on_evict(path: str) -> None:
        retired.append(path)

    async def scenario() -> None:
        installer = RequirementInstaller(
            root, True, max_bytes=2**20, in_use=lambda: in_use, on_evict=on_evict
        )
        [a] = await installer.prepare(["wtm-a==1.0"])
        [b] = await installer.prepare(["wtm-b==1.0"])  # 1 MiB holds one: a goes
        assert installed_sets(root) == {Path(b).name} and retired == [a]
        assert not installer.known(["wtm-a==1.0"]) and installer.evictions == 1
        in_use.add(b)  # b is on a running step's path: kept, over the cap for a while
        assert await installer.prepare(["wtm-a==1.0"]) == (a,)
        assert installed_sets(root) == {Path(a).name, Path(b).name}
        assert installer.installs == 3 and installer.total_bytes > 2**20

    asyncio.run(scenario())


def test_an_install_bigger_than_the_whole_cap_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheelhouse(tmp_path / "wheels", monkeypatch, big=1500)
    installer = RequirementInstaller(tmp_path / "requirements", True, max_bytes=2**20)
    with pytest.raises(FailedPrecondition, match="WTM_REQUIREMENTS_CACHE_MAX_MB") as err:
        asyncio.run(installer.prepare(["wtm-big==1.0"]))
    assert "installing wtm-big==1.0 took over 1 MiB of disk" in err.value.message
    assert err.value.field == "requirements"
    assert installed_sets(tmp_path / "requirements") == set() and installer.total_bytes == 0


def test_sets_installed_before_a_restart_count_and_go_oldest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheelhouse(tmp_path / "wheels", monkeypatch, c=300)
    root = tmp_path / "requirements"
    for i, name in enumerate(("old", "newer")):  # what an earlier executor installed
        (root / name).mkdir(parents=True)
        (root / name / ".installed").touch()
        (root / name / "weights.bin").write_bytes(os.urandom(400 * 1024))
        os.utime(root / name, (1_000_000 + i, 1_000_000 + i))
    (root / ".0123-cut-short").mkdir()  # an install the executor did not finish
    installer = RequirementInstaller(root, True, max_bytes=2**20)
    assert installed_sets(root) == {"old", "newer"} and installer.total_bytes >= 800 * 1024
    [c] = asyncio.run(installer.prepare(["wtm-c==1.0"]))
    assert installed_sets(root) == {"newer", Path(c).name}
