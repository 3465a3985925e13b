"""Service settings: flags over environment over defaults, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.backends import SentinelAddress, redis_url_problem
from services.common.config import load_settings
from services.executor.settings import ExecutorSettings
from services.registry.settings import RegistrySettings
from services.scheduler.fair_shares import cost_of, parse_weights
from services.scheduler.settings import SchedulerSettings


def test_a_flag_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTM_LEASE_SECONDS", "7")
    assert load_settings(SchedulerSettings, []).lease_seconds == 7
    assert load_settings(SchedulerSettings, ["--lease-seconds", "9"]).lease_seconds == 9


def test_lists_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WTM_EXECUTOR_QUEUES", "vision, nlp")
    assert load_settings(ExecutorSettings, []).queues == ["vision", "nlp"]
    assert load_settings(ExecutorSettings, ["--queues", "gpu"]).queues == ["gpu"]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--lease-seconds", "soon"], "--lease-seconds / WTM_LEASE_SECONDS: must be int"),
        (["--lease-seconds", "0"], "--lease-seconds / WTM_LEASE_SECONDS: must be greater than 0"),
        (["--listen", "localhost"], "--listen / WTM_SCHEDULER_LISTEN: must be HOST:PORT"),
        (["--redis-url", "http://r:6379"], "--redis-url / WTM_REDIS_URL: scheme 'http'"),
        (
            ["--redis-url", "redis+sentinel://s1:26379"],
            "--redis-url / WTM_REDIS_URL: a sentinel URL ends in /<service name>",
        ),
        (
            ["--redis-url", "redis+sentinel://s1:port/wtm"],
            "--redis-url / WTM_REDIS_URL: sentinel 's1:port' is not host[:port]",
        ),
        (
            ["--namespace-weights", "team-a=3,team-b"],
            "--namespace-weights / WTM_NAMESPACE_WEIGHTS: 'team-b' is not NAMESPACE=WEIGHT",
        ),
        (
            ["--namespace-weights", "team-a=64"],
            "WTM_NAMESPACE_WEIGHTS: 'team-a=64': the weight must be between 0.03125 and 32",
        ),
        (
            ["--namespace-retention-days", "team-a=-1"],
            "WTM_NAMESPACE_RETENTION_DAYS: 'team-a=-1': the days must be 0 or more",
        ),
        (
            ["--namespace-weights", "team-a=lots"],
            "WTM_NAMESPACE_WEIGHTS: 'team-a=lots': the weight must be a number",
        ),
        (
            ["--lease-seconds", "10", "--heartbeat-seconds", "8"],
            "--heartbeat-seconds / WTM_HEARTBEAT_SECONDS: must be shorter than the lease less "
            "its margin (8 s of a 10 s WTM_LEASE_SECONDS",
        ),
        (
            ["--lease-seconds", "2", "--heartbeat-seconds", "1"],
            "WTM_HEARTBEAT_SECONDS: must be shorter than the lease less its margin (1 s of a 2 s",
        ),
        (
            ["--artifact-sweep", "maybe"],
            "--artifact-sweep / WTM_ARTIFACT_SWEEP: must be one of on, dry-run, off",
        ),
    ],
)
def test_a_bad_value_exits_naming_flag_and_variable(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_settings(SchedulerSettings, argv)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_credentials() -> None:
    url = "rediss+sentinel://wtm:p%40ss@s1:26380,s2/wtm-primary/3?sentinel_password=sp"
    address = SentinelAddress.parse(url)
    assert address == SentinelAddress(
        (("s1", 26380), ("s2", 26379)), "wtm-primary", 3, "wtm", "p@ss", "sp", tls=True
    )
    assert SentinelAddress.parse("redis+sentinel://s1/wtm").db == 0
    assert redis_url_problem(url) is None and redis_url_problem("unix:///tmp/r.sock") is None


def test_a_private_ca_for_redis_is_named_in_its_url_and_must_be_readable(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    sentinel = f"rediss+sentinel://s1/wtm-primary?ssl_ca_certs={ca}"
    assert SentinelAddress.parse(sentinel).tls_ca_file == str(ca)
    for url in (f"rediss://wtm:pw@redis:6380/0?ssl_ca_certs={ca}", sentinel):
        assert redis_url_problem(url) is None
        missing = url.replace(str(ca), str(tmp_path / "nowhere.pem"))
        assert redis_url_problem(missing) == f"ssl_ca_certs: cannot read '{tmp_path}/nowhere.pem'"
    # Without TLS, redis-py would fail every connection with a TypeError.
    plain = f"redis://wtm:pw@redis:6379/0?ssl_ca_certs={ca}"
    assert redis_url_problem(plain) == "ssl_ options are for TLS: use rediss://"


def test_an_s3_ca_file_that_cannot_be_read_is_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_settings(RegistrySettings, ["--s3-ca-file", str(tmp_path / "nowhere.pem")])
    assert exit_info.value.code == 2
    assert "WTM_S3_CA_FILE" in capsys.readouterr().err


def test_a_namespaces_weight_becomes_what_each_of_its_new_runs_costs_in_whole_32nds() -> None:
    weights = parse_weights(["team-a=3", " team-b = 0.5", "team-c=32", "team-d=0.03125"])
    assert weights == {"team-a": 3.0, "team-b": 0.5, "team-c": 32.0, "team-d": 0.03125}
    assert [cost_of(w) for w in weights.values()] == [11 / 32, 2.0, 1 / 32, 32.0]
    assert cost_of(1) == 1.0  # a namespace not named: as before weights


def test_an_s3_ca_for_a_plain_http_endpoint_is_refused_at_start(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        **os.environ,
        "WTM_S3_ENDPOINT": "http://127.0.0.1:9",
        "WTM_S3_CA_FILE": str(ca),
        "WTM_S3_ACCESS_KEY": "a",
        "WTM_S3_SECRET_KEY": "s",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.registry"],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert done.returncode == 1
    assert "WTM_S3_CA_FILE is set but WTM_S3_ENDPOINT (http://127.0.0.1:9) is not https://" in (
        done.stderr
    )


def test_a_weight_at_either_limit_is_allowed_and_past_it_is_not() -> None:
    from services.scheduler.fair_shares import MAX_WEIGHT, weights_problem

    assert weights_problem([f"a={1 / 32}", f"b={MAX_WEIGHT}"]) is None
    assert "between 0.03125 and 32" in (weights_problem(["a=0.03"]) or "")
    assert "between 0.03125 and 32" in (weights_problem([f"a={MAX_WEIGHT + 0.001}"]) or "")


@pytest.mark.parametrize(("lease", "heartbeat"), [(30, 5.0), (3, 0.5), (2, 0.5), (10, 5.0)])
def test_heartbeats_within_the_lease_less_its_margin_are_taken(
    lease: int, heartbeat: float
) -> None:
    """The default, the test stacks' and the bench's settings."""
    argv = ["--lease-seconds", str(lease), "--heartbeat-seconds", str(heartbeat)]
    assert load_settings(SchedulerSettings, argv).heartbeat_seconds == heartbeat
