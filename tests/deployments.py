"""What the deployments (deploy/k8s, docker-compose.yml) grant the executor, read from the
manifests, for the tests that hold the others to it or run the sandbox under it."""

from __future__ import annotations

from typing import Any

import yaml

from tests.conftest import ROOT

EXECUTOR_MANIFEST = ROOT / "deploy" / "k8s" / "base" / "executor" / "executor.yaml"


def executor_container() -> dict[str, Any]:
    """The executor's container in deploy/k8s's base Deployment."""
    docs = yaml.safe_load_all(EXECUTOR_MANIFEST.read_text())
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def executor_capabilities() -> list[str]:
    """The capabilities the executor is given, every other one dropped: what the sandbox
    needs as root (uids, namespaces, mounts, signals to its workers)."""
    context = executor_container()["securityContext"]
    assert context["runAsUser"] == 0 and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    return list(context["capabilities"]["add"])
