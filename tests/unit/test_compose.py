"""docker-compose.yml, checked by parsing it (no Docker engine runs here)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.deployments import executor_capabilities, executor_container


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_production_set_is_all_there(compose: dict[str, Any]) -> None:
    images = {name: svc.get("image", "") for name, svc in compose["services"].items()}
    assert images["mongodb"].startswith("mongo:7")
    assert images["minio"].startswith("minio/minio")
    assert images["redis"].startswith("redis:7")
    assert images["jaeger"].startswith("jaegertracing/")
    assert {"registry", "scheduler", "executor"} <= set(images)


def test_every_service_but_jaeger_has_a_health_check(compose: dict[str, Any]) -> None:
    missing = [
        name
        for name, svc in compose["services"].items()
        if not svc.get("healthcheck", {}).get("test")
    ]
    assert missing == ["jaeger"]  # its image has no HTTP client; nothing depends on it


def test_the_grpc_services_are_published_and_checked_over_grpc_health(
    compose: dict[str, Any],
) -> None:
    for name, port in (("registry", "50051"), ("scheduler", "50052")):
        svc = compose["services"][name]
        assert f"{port}:{port}" in svc["ports"]
        assert svc["healthcheck"]["test"][-1] == f"127.0.0.1:{port}"


def test_the_gateway_is_published_checked_over_https_and_holds_no_backend_secret(
    compose: dict[str, Any],
) -> None:
    gateway = compose["services"]["gateway"]
    assert gateway["command"] == ["python", "-m", "services.gateway"]
    assert "8443:8443" in gateway["ports"]
    assert gateway["healthcheck"]["test"][-2:] == ["--http", "https://127.0.0.1:8443/healthz"]
    env = gateway["environment"]
    assert env["WTM_TLS_CERT"] and env["WTM_TLS_CA"]
    assert not [k for k in env if k.startswith(("WTM_MONGODB", "WTM_S3", "WTM_REDIS"))]
    assert not [k for k in env if "KEY" in k and k != "WTM_TLS_KEY"]


def test_jaeger_takes_otlp_and_serves_its_ui_to_this_host_only(compose: dict[str, Any]) -> None:
    """Jaeger has no authentication and holds every namespace's spans: what it publishes
    is bound to the host's loopback."""
    ports = compose["services"]["jaeger"]["ports"]
    assert sorted(ports) == ["127.0.0.1:16686:16686", "127.0.0.1:4317:4317"]
    for name in ("registry", "scheduler", "executor"):
        env = compose["services"][name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        assert env["WTM_LOG_FORMAT"] == "json"
    # Jaeger has no OTLP metrics service: whatever sends it traces sends it no metrics.
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        if "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
            assert env.get("OTEL_METRICS_EXPORTER") == "none", name


def test_the_scheduler_publishes_its_metrics(compose: dict[str, Any]) -> None:
    scheduler = compose["services"]["scheduler"]
    assert scheduler["environment"]["WTM_METRICS_PORT"] == "9464"
    assert scheduler["environment"]["WTM_METRICS_HOST"] == "0.0.0.0"
    assert "127.0.0.1:9464:9464" in scheduler["ports"]  # unauthenticated: this host only


def test_the_executor_can_be_scaled(compose: dict[str, Any]) -> None:
    executor = compose["services"]["executor"]
    assert "container_name" not in executor and "ports" not in executor
    assert executor["depends_on"]["scheduler"]["condition"] == "service_healthy"


def test_services_point_at_the_backing_services_by_name(compose: dict[str, Any]) -> None:
    env = compose["services"]["registry"]["environment"]
    assert "@mongodb:27017/" in env["WTM_MONGODB_URI"]
    assert env["WTM_S3_ENDPOINT"] == "http://minio:9000"
    assert "@redis:6379/0" in compose["services"]["scheduler"]["environment"]["WTM_REDIS_URL"]


def test_the_schedulers_use_a_redis_acl_user_with_the_local_stacks_rules(
    compose: dict[str, Any],
) -> None:
    from services.localstack.stack import redis_acl_rules

    url = compose["services"]["scheduler"]["environment"]["WTM_REDIS_URL"]
    assert url.startswith("redis://wtm:${REDIS_WTM_PASSWORD:?")  # not the default user
    command = [str(part) for part in compose["services"]["redis"]["command"]]
    rules = command[command.index("--user") + 1 :]
    expected = redis_acl_rules("wtm", "${REDIS_WTM_PASSWORD:?set in .env}")
    assert rules == expected


def test_no_secret_has_a_default_and_every_component_has_its_own_key(
    compose: dict[str, Any],
) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "minioadmin" not in text and ":-" not in text  # no fallback values at all
    env = {name: s.get("environment", {}) for name, s in compose["services"].items()}
    for name, value in env["registry"].items():
        if ("KEY" in name and "TLS" not in name) or "PASSWORD" in name:
            assert ":?" in str(value), name
    assert env["scheduler"]["WTM_API_KEY"] != env["executor"]["WTM_API_KEY"]
    for service in ("registry", "scheduler", "executor"):  # TLS everywhere
        assert env[service]["WTM_TLS_CA"] == "/tls/ca.pem"
    for service in ("registry", "scheduler", "gateway"):
        assert "./deploy/tls:/tls:ro" in compose["services"][service]["volumes"]
    for part in (
        "MONGO_PASSWORD",
        "REDIS_PASSWORD",
        "REDIS_WTM_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "WTM_ADMIN_KEY",
    ):
        assert f"{part}=" in (ROOT / ".env.example").read_text()


def test_the_dockerfile_installs_the_project() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for part in packages["packages"]["find"]["include"]:  # every package pip would install
        part = part.rstrip("*")
        assert f"COPY {part} ./{part}" in dockerfile


def test_executors_stream_over_mtls_with_the_certificate_tls_init_makes(
    compose: dict[str, Any], tmp_path: Any
) -> None:
    from click.testing import CliRunner
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from clients.cli import cli

    scheduler = compose["services"]["scheduler"]["environment"]
    executor = compose["services"]["executor"]["environment"]
    port = scheduler["WTM_EXECUTOR_LISTEN"].rsplit(":", 1)[1]
    assert executor["WTM_SCHEDULER_ADDR"] == f"scheduler:{port}"
    assert f"{port}:{port}" not in str(compose["services"]["scheduler"]["ports"])
    assert scheduler["WTM_TLS_CLIENT_CA"] == "/tls/ca.pem"
    made = CliRunner().invoke(cli, ["tls", "init", str(tmp_path)])
    assert made.exit_code == 0, made.output
    for name in ("WTM_TLS_CLIENT_CERT", "WTM_TLS_CLIENT_KEY"):
        assert (tmp_path / executor[name].removeprefix("/tls/")).is_file()
    cert = x509.load_pem_x509_certificate((tmp_path / "executor.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    assert cert.issuer == ca.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "wtm-executor"
    assert (tmp_path / "executor.key").stat().st_mode & 0o077 == 0


def test_every_service_has_resource_limits(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits["cpus"]) > 0 and limits["memory"].endswith(("M", "G")), name


def test_credentials_come_from_the_env_file_and_executors_carry_labels(
    compose: dict[str, Any],
) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("MONGO_PASSWORD", "MINIO_ROOT_PASSWORD", "REDIS_PASSWORD", "WTM_ADMIN_KEY"):
        assert f"${{{secret}:?" in text  # no default: compose refuses to start without it
        assert f"{secret}=" in (ROOT / ".env.example").read_text()
    labels = compose["services"]["executor"]["environment"]["WTM_EXECUTOR_LABELS"]
    assert all(re.match(r"^[\w.-]+=[\w.-]*$", label) for label in labels.split(","))


def test_executors_run_sandboxed_as_deploy_k8s_runs_them(compose: dict[str, Any]) -> None:
    """As the image's user (nobody) the sandbox was off: task code ran as the executor's
    own user, with its network, beside the backing services' credentials it had been given.
    Now root with exactly the capabilities deploy/k8s grants (test_sandbox runs the spy task
    under those), no credential but its own, no server key, and the uid claims shared by
    every replica."""
    executor = compose["services"]["executor"]
    assert compose["services"]["scheduler"]["environment"]["WTM_REQUIRE_ISOLATION"] == "true"
    assert executor["user"] == "0:0"
    assert executor["cap_drop"] == ["ALL"]
    assert executor["cap_add"] == executor_capabilities()
    assert "no-new-privileges:true" in executor["security_opt"]
    k8s = executor_container()["securityContext"]
    assert k8s["appArmorProfile"] == {"type": "Unconfined"}
    assert "apparmor:unconfined" in executor["security_opt"]
    env = executor["environment"]
    assert not [k for k in env if k.startswith(("WTM_MONGODB", "WTM_S3", "WTM_REDIS"))]
    assert "WTM_TLS_KEY" not in env and "WTM_TLS_CERT" not in env
    mounts = {v.split(":")[1]: v.split(":")[0] for v in executor["volumes"]}
    assert mounts["/tls/executor.key"] == "./deploy/tls/executor.key"
    assert not [m for m in mounts.values() if m.endswith("server.key") or m == "./deploy/tls"]
    # One named volume for every replica's claims, at the executor's default directory.
    from services.executor.worker_uids import DEFAULT_DIRECTORY

    assert mounts[str(DEFAULT_DIRECTORY)] in compose["volumes"]


def test_the_servers_can_read_the_key_tls_init_makes(
    compose: dict[str, Any], tmp_path: Any
) -> None:
    """``wtm tls init`` makes server.key readable by its owner only; the image's user
    (nobody) could not read it through the bind mount. The servers run as the owner."""
    from click.testing import CliRunner

    from clients.cli import cli

    made = CliRunner().invoke(cli, ["tls", "init", str(tmp_path)])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "server.key").stat().st_mode & 0o077 == 0
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "USER nobody" in dockerfile  # what a service without `user:` runs as
    for name in ("registry", "scheduler", "gateway"):
        user = compose["services"][name]["user"]
        assert user.startswith("${WTM_UID:?") and ":${WTM_GID:?" in user, name
        assert compose["services"][name]["environment"]["WTM_TLS_KEY"] == "/tls/server.key"
    example = (ROOT / ".env.example").read_text()
    assert "\nWTM_UID=" in example and "\nWTM_GID=" in example


def test_the_image_can_carry_the_examples_models(compose: dict[str, Any]) -> None:
    """The executors install no task requirements: WTM_IMAGE_EXTRAS=faces (in .env) builds
    the examples' models into the one image, as deploy/k8s's EXTRAS=faces does."""
    build = compose["services"]["registry"]["build"]
    assert build["args"] == {"EXTRAS": "${WTM_IMAGE_EXTRAS-}"}  # unset: none, no warning
    assert "\nWTM_IMAGE_EXTRAS=\n" in (ROOT / ".env.example").read_text()
    extras = (ROOT / "pyproject.toml").read_text()
    assert "faces = [" in extras and '"scikit-learn==' in extras and '"onnxruntime==' in extras
