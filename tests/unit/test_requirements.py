"""Task requirements against the executor's environment."""

from __future__ import annotations

import asyncio
from importlib import metadata
from pathlib import Path

import pytest

from common.errors import FailedPrecondition
from services.executor.requirements import RequirementInstaller, missing, pip_environment


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
