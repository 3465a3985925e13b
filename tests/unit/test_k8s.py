"""deploy/k8s: every overlay rendered with ``kubectl kustomize``, every object validated offline
against the Kubernetes schemas (kubernetes-validate) and KEDA's CRD (tests/data/crds), and
the promises the manifests make: limits and probes everywhere, a disruption budget per
Deployment, executors (task code) cut off from Redis and MongoDB, the GPU variant, scaling on
a metric the scheduler really exports, and Secrets made by ``secrets.sh`` that fill every
reference."""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "production", "production-hpa")
KUBERNETES = "1.32.0"  # the oldest minor the manifests are for (appArmorProfile: 1.30+)
Doc = dict[str, Any]


def render(overlay: str) -> list[Doc]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def keda_schemas() -> dict[str, Doc]:
    crd = yaml.safe_load((ROOT / "tests/data/crds/keda.sh_scaledobjects.yaml").read_text())
    return {f"keda.sh/{v['name']}": v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}


def validate(doc: Doc) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, keda_schemas()[doc["apiVersion"]])
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    [doc] = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def pod_labels(deployment: Doc) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def env_of(deployment: Doc) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_its_schema(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    assert {"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"} <= {
        d["kind"] for d in docs
    }
    for doc in docs:
        validate(doc)


def test_the_validation_rejects_what_is_wrong(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["production"]
    broken = copy.deepcopy(named(docs, "Deployment", "scheduler"))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    misspelt = copy.deepcopy(named(docs, "Deployment", "scheduler"))
    misspelt["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(misspelt)
    scaled = copy.deepcopy(named(docs, "ScaledObject", "executor"))
    scaled["spec"]["minReplicaCount"] = "none"
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_both_probes(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    for deployment in of_kind(rendered[overlay], "Deployment"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{deployment['metadata']['name']}/{c['name']}"
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (where, part)
            assert c.get("readinessProbe") and c.get("livenessProbe"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_of_our_deployments_has_a_disruption_budget(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    budgets = [b["spec"]["selector"]["matchLabels"] for b in of_kind(docs, "PodDisruptionBudget")]
    ours = [
        d
        for d in of_kind(docs, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/part-of") == "worker-task-manager"
    ]
    assert {d["metadata"]["name"] for d in ours} == {
        "registry",
        "scheduler",
        "gateway",
        "executor",
        "executor-gpu",
    }
    for deployment in ours:
        matching = [b for b in budgets if selects(b, pod_labels(deployment))]
        assert len(matching) == 1, deployment["metadata"]["name"]


def test_executor_pods_reach_only_the_scheduler_registry_dns_and_the_collector(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["local"]  # the overlay that runs Redis, MongoDB and MinIO in the cluster
    executor = pod_labels(named(docs, "Deployment", "executor"))
    policies = [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if selects(p["spec"]["podSelector"].get("matchLabels", {}), executor)
    ]
    assert [p["metadata"]["name"] for p in policies] == ["executor-egress"]
    [policy] = policies
    assert "Egress" in policy["spec"]["policyTypes"]
    stores = [pod_labels(named(docs, "Deployment", n)) for n in ("redis", "mongodb", "minio")]
    for rule in policy["spec"]["egress"]:
        assert rule.get("to"), "a rule without 'to' allows every destination"
        assert {p["port"] for p in rule["ports"]} <= {50053, 50051, 4317, 53}
        for peer in rule["to"]:
            wanted = peer.get("podSelector", {}).get("matchLabels", {})
            assert wanted, "a peer without a pod selector allows a whole namespace or range"
            assert not any(selects(wanted, store) for store in stores), wanted
            assert "ipBlock" not in peer
    # Nor do they hold the stores' credentials: no backing-service Secret, only their key.
    for name in ("executor", "executor-gpu"):
        [container] = named(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert all("secretRef" not in source for source in container.get("envFrom", []))
        refs = [e["valueFrom"].get("secretKeyRef") for e in container["env"] if "valueFrom" in e]
        assert [(r["name"], r["key"]) for r in refs if r] == [("wtm-keys", "executor")]
    # ... and the stores themselves take only the services that own them.
    owners = {"redis": {"scheduler"}, "mongodb": {"registry", "scheduler"}, "minio": {"registry"}}
    for store, allowed in owners.items():
        policy = named(docs, "NetworkPolicy", f"{store}-ingress")
        peers = [p for rule in policy["spec"]["ingress"] for p in rule["from"]]
        names = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in peers}
        assert names == allowed, store


def test_the_gateway_holds_no_credential_and_reaches_only_the_services(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["local"]
    [container] = named(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"]
    assert not container.get("envFrom") and all("valueFrom" not in e for e in container["env"])
    policy = named(docs, "NetworkPolicy", "gateway-egress")
    stores = [pod_labels(named(docs, "Deployment", n)) for n in ("redis", "mongodb", "minio")]
    for rule in policy["spec"]["egress"]:
        assert {p["port"] for p in rule["ports"]} <= {50051, 50052, 4317, 53}
        for peer in rule["to"]:
            wanted = peer["podSelector"]["matchLabels"]
            assert not any(selects(wanted, store) for store in stores), wanted


def test_production_runs_schedulers_in_pairs_and_executors_outlast_their_drain(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    assert named(docs, "Deployment", "scheduler")["spec"]["replicas"] >= 2
    assert named(docs, "PodDisruptionBudget", "scheduler")["spec"]["minAvailable"] >= 1
    for name in ("executor", "executor-gpu"):
        deployment = named(docs, "Deployment", name)
        drain = float(env_of(deployment)["WTM_DRAIN_SECONDS"])
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_executor_pods_of_a_node_claim_worker_uids_in_one_directory(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    """Each pod's own /run (read-only here, so its temporary directory) gave every pod the
    same uids: on one node, workers of two pods shared kernel uids, and RLIMIT_NPROC counted
    both. The claims now live in a directory of the node's, mounted into every executor."""
    from services.executor.worker_uids import DEFAULT_DIRECTORY

    for name in ("executor", "executor-gpu"):
        spec = named(rendered[overlay], "Deployment", name)["spec"]["template"]["spec"]
        [container] = spec["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(DEFAULT_DIRECTORY)]
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["hostPath"] == {"path": str(DEFAULT_DIRECTORY), "type": "DirectoryOrCreate"}


def mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024, "Ti": 1024**2}
    return int(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_what_an_executor_keeps_on_disk_fits_its_cache_volume(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    """An executor pod over its emptyDir's sizeLimit is evicted, every step on it with it:
    its caps on packages, input artifacts, installed requirements and each worker's files
    must fit the volume."""
    for name in ("executor", "executor-gpu"):
        deployment = named(rendered[overlay], "Deployment", name)
        spec = deployment["spec"]["template"]["spec"]
        env = env_of(deployment)
        [mount] = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/cache"]
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert env["WTM_EXECUTOR_CACHE_DIR"] == "/cache"
        caps = [
            env[k]
            for k in (
                "WTM_EXECUTOR_CACHE_MAX_MB",
                "WTM_ARTIFACT_CACHE_MAX_MB",
                "WTM_REQUIREMENTS_CACHE_MAX_MB",
            )
        ]
        workers = int(env["WTM_EXECUTOR_SLOTS"]) + int(env["WTM_SPARE_WORKERS"])
        workers *= int(env["WTM_WORKER_MAX_DISK_MB"])
        assert all(int(c) > 0 for c in caps) and int(env["WTM_WORKER_MAX_DISK_MB"]) > 0
        assert sum(int(c) for c in caps) + workers <= mebibytes(volume["emptyDir"]["sizeLimit"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_schedulers_take_only_executors_that_isolate_task_code(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    scheduler = named(rendered[overlay], "Deployment", "scheduler")
    assert env_of(scheduler)["WTM_REQUIRE_ISOLATION"] == "true"


def test_the_gpu_executor_takes_a_gpu_on_gpu_nodes_and_serves_its_own_queue(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    cpu, gpu = (named(docs, "Deployment", n) for n in ("executor", "executor-gpu"))
    spec = gpu["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert env_of(gpu)["WTM_EXECUTOR_QUEUES"] == "gpu"
    assert env_of(gpu)["WTM_EXECUTOR_LABELS"] == "gpu=nvidia"
    assert (
        "nvidia.com/gpu"
        not in cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    )
    # Neither Deployment's selector takes the other's pods.
    assert not selects(cpu["spec"]["selector"]["matchLabels"], pod_labels(gpu))
    assert not selects(gpu["spec"]["selector"]["matchLabels"], pod_labels(cpu))


def test_executors_scale_on_the_queue_depth_the_scheduler_exports(
    rendered: dict[str, list[Doc]],
) -> None:
    exported = set(re.findall(r'"(wtm_\w+)"', (ROOT / "services/scheduler/metrics.py").read_text()))
    assert "wtm_queue_depth" in exported
    keda = of_kind(rendered["production"], "ScaledObject")
    hpa = of_kind(rendered["production-hpa"], "HorizontalPodAutoscaler")
    for docs, autoscalers in (("production", keda), ("production-hpa", hpa)):
        deployments = {d["metadata"]["name"] for d in of_kind(rendered[docs], "Deployment")}
        assert (
            {a["spec"]["scaleTargetRef"]["name"] for a in autoscalers}
            == {
                "executor",
                "executor-gpu",
            }
            <= deployments
        )
    for scaled in keda:
        assert scaled["spec"]["minReplicaCount"] == 0  # to zero when idle
        for trigger in scaled["spec"]["triggers"]:
            query = trigger["metadata"]["query"]
            promql_parser.parse(query)
            used = set(re.findall(r"\bwtm_\w+", query))
            assert used and used <= exported, used
            assert "wtm_queue_paused" in used  # a paused queue's steps add no executors
    for autoscaler in hpa:
        for metric in autoscaler["spec"]["metrics"]:
            assert metric["external"]["metric"]["name"] in exported


def test_every_setting_the_manifests_give_is_one_a_service_reads(
    rendered: dict[str, list[Doc]],
) -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "services").rglob("*.py"))
    source += "\n".join(p.read_text() for p in (ROOT / "common").rglob("*.py"))
    given: set[str] = set()
    for overlay in OVERLAYS:
        for doc in of_kind(rendered[overlay], "ConfigMap"):
            given |= set(doc["data"])
        for doc in of_kind(rendered[overlay], "Deployment"):
            given |= {k for k in env_of(doc) if k.startswith(("WTM_", "OTEL_"))}
    unread = {k for k in given if f'"{k}"' not in source and not k.startswith("OTEL_")}
    assert unread == set()


def secrets(mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", str(K8S / "secrets.sh"), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": path, **env},
    )


def test_the_secrets_script_fills_every_reference_with_fresh_values(
    rendered: dict[str, list[Doc]],
) -> None:
    made = secrets("local")
    assert made.returncode == 0, made.stderr
    docs = [d for d in yaml.safe_load_all(made.stdout) if d]
    for doc in docs:
        validate(doc)
        assert doc["metadata"]["namespace"] == "wtm-local"
    keys = {d["metadata"]["name"]: set(d["data"]) for d in docs}
    for deployment in of_kind(rendered["local"], "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in keys
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in keys
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in keys.get(ref["name"], set()), ref
    again = [d for d in yaml.safe_load_all(secrets("local").stdout) if d]
    assert docs[0]["data"] != again[0]["data"]  # new keys every time, none committed


def test_the_secrets_script_wants_the_production_addresses_named(tmp_path: Path) -> None:
    refused = secrets("production")
    assert refused.returncode == 2 and "WTM_MONGODB_URI" in refused.stderr
    given = {
        "WTM_MONGODB_URI": "mongodb://u:p@a,b,c/?replicaSet=rs0",
        "WTM_REDIS_URL": "redis://:p@redis.example:6379/0",
        "WTM_S3_ENDPOINT": "https://s3.example",
        "WTM_S3_ACCESS_KEY": "a",
        "WTM_S3_SECRET_KEY": "s",
    }
    made = secrets("production", **given)
    assert made.returncode == 0, made.stderr
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(made.stdout) if d}
    assert set(docs["wtm-backing"]["data"]) == set(given)
    assert "stores-ca.pem" not in docs["wtm-tls"]["data"]
    assert all(d["metadata"]["namespace"] == "wtm" for d in docs.values())
    # A private CA for the stores: into wtm-tls (mounted at /tls), and S3 checked against it.
    ca = tmp_path / "stores-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    made = secrets("production", **given, WTM_STORES_CA=str(ca))
    assert made.returncode == 0, made.stderr
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(made.stdout) if d}
    assert base64.b64decode(docs["wtm-tls"]["data"]["stores-ca.pem"]) == ca.read_bytes()
    backing = docs["wtm-backing"]["data"]
    assert base64.b64decode(backing["WTM_S3_CA_FILE"]) == b"/tls/stores-ca.pem"
    refused = secrets("production", **given, WTM_STORES_CA=str(tmp_path / "nowhere.pem"))
    assert refused.returncode == 2 and "WTM_STORES_CA" in refused.stderr
