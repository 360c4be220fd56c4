"""deploy/kubernetes: a kustomize base whose manifests are valid, consistent and hardened.

Core kinds are validated against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail). The Prometheus Operator's kinds are validated against models generated
from its CRDs (cloudcoil-models-prometheus-operator), with unknown fields caught by comparing
what the model kept with what the file says.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
from pydantic import BaseModel

from tests.deploy.files import KUSTOMIZE_BASE, kustomization, kustomize_resources, load_yaml
from tests.deploy.files import manifests as load_manifests
from tests.deploy.settings import setting_names, settings_from

KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_MODELS: dict[str, type[BaseModel]] = {
    "ServiceMonitor": prometheus_operator.ServiceMonitor,
    "PrometheusRule": prometheus_operator.PrometheusRule,
}
EXPECTED_KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Job",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    *CRD_MODELS,
}
SECRET_EXAMPLE = KUSTOMIZE_BASE / "secret.example.yaml"
IMAGE_UID = 10001


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return load_manifests()


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return dict(manifest["spec"]["template"]["spec"])


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- the kustomize base ------------------------------------------------------------------------


def test_every_resource_of_the_kustomization_exists_and_parses() -> None:
    for path in kustomize_resources():
        assert path.is_file(), f"{path.name} is listed in kustomization.yaml but missing"
        document = load_yaml(path)
        assert {"apiVersion", "kind", "metadata"} <= document.keys(), path.name


def test_the_base_has_every_part_of_the_deployment(manifests: dict[str, Any]) -> None:
    assert set(manifests) == EXPECTED_KINDS


def test_every_manifest_in_the_directory_is_a_resource_except_the_secret_example() -> None:
    listed = {path.name for path in kustomize_resources()}
    present = {path.name for path in KUSTOMIZE_BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert present - listed == {SECRET_EXAMPLE.name}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) not on PATH")
def test_kubectl_kustomize_builds_the_base() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE_BASE)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    documents = list(yaml.safe_load_all(built.stdout))
    assert {document["kind"] for document in documents} == EXPECTED_KINDS
    images = {
        container["image"]
        for document in documents
        if document["kind"] in {"Deployment", "Job"}
        for container in pod_spec(document)["containers"]
    }
    assert images == {f"conversations-user-sync:{kustomization()['images'][0]['newTag']}"}


# --- schemas -----------------------------------------------------------------------------------


def core_manifest_paths() -> list[Path]:
    paths = [*kustomize_resources(), SECRET_EXAMPLE]
    return [path for path in paths if load_yaml(path)["kind"] not in CRD_MODELS]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", core_manifest_paths(), ids=lambda path: path.name)
def test_core_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    kubernetes_validate.validate(load_yaml(path), version, strict=True)


@pytest.mark.parametrize("kind", sorted(CRD_MODELS))
def test_prometheus_operator_manifest_matches_its_crd(kind: str, manifests: dict) -> None:
    document = manifests[kind]
    model = CRD_MODELS[kind].model_validate(document)
    kept = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert kept == document, "fields the CRD does not define were dropped"


def test_the_crd_check_catches_an_unknown_field(manifests: dict[str, Any]) -> None:
    document = copy.deepcopy(manifests["ServiceMonitor"])
    document["spec"]["endpoints"][0]["prot"] = "http"
    model = prometheus_operator.ServiceMonitor.model_validate(document)
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") != document


# --- consistency between the resources ---------------------------------------------------------


def test_selectors_pick_the_server_pods_and_not_the_migration(manifests: dict[str, Any]) -> None:
    deployment, job = manifests["Deployment"], manifests["Job"]
    server_labels = deployment["spec"]["template"]["metadata"]["labels"]
    migration_labels = job["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": manifests["Service"]["spec"]["selector"],
        "PodDisruptionBudget": manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert matches(selector, server_labels), kind
        assert not matches(selector, migration_labels), kind


def test_the_service_monitor_scrapes_a_port_of_the_service(manifests: dict[str, Any]) -> None:
    monitor, service = manifests["ServiceMonitor"], manifests["Service"]
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    ports = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"


def test_the_pods_read_the_configmap_the_secret_and_the_service_account(
    manifests: dict[str, Any],
) -> None:
    secret_name = load_yaml(SECRET_EXAMPLE)["metadata"]["name"]
    for kind in ("Deployment", "Job"):
        spec = pod_spec(manifests[kind])
        assert spec["serviceAccountName"] == manifests["ServiceAccount"]["metadata"]["name"]
        (container,) = spec["containers"]
        sources = {
            next(iter(source)): source[next(iter(source))]["name"]
            for source in container["envFrom"]
        }
        assert sources == {
            "configMapRef": manifests["ConfigMap"]["metadata"]["name"],
            "secretRef": secret_name,
        }, kind


def test_the_images_are_the_one_the_kustomization_sets(manifests: dict[str, Any]) -> None:
    (image,) = kustomization()["images"]
    for kind in ("Deployment", "Job"):
        assert [c["image"] for c in pod_spec(manifests[kind])["containers"]] == [image["name"]]


def test_the_deployment_serves_with_two_replicas_and_probes(manifests: dict[str, Any]) -> None:
    deployment = manifests["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = pod_spec(deployment)["containers"]
    assert container["command"] + container["args"] == ["user-sync", "serve"]
    port_names = {port["name"] for port in container["ports"]}
    probes = {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": ("/healthz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "readinessProbe": ("/readyz", "http"),
    }
    assert port_names == {"http"}
    assert {"requests", "limits"} <= container["resources"].keys()


def test_the_container_port_is_the_configured_http_port(manifests: dict[str, Any]) -> None:
    (container,) = pod_spec(manifests["Deployment"])["containers"]
    (port,) = container["ports"]
    assert str(port["containerPort"]) == manifests["ConfigMap"]["data"]["USERSYNC_HTTP_PORT"]


def test_runs_in_flight_finish_before_the_pod_is_killed(manifests: dict[str, Any]) -> None:
    grace = float(manifests["ConfigMap"]["data"]["USERSYNC_SHUTDOWN_GRACE"])
    assert grace + 5 <= pod_spec(manifests["Deployment"])["terminationGracePeriodSeconds"]


def test_the_migration_job_runs_migrate_before_the_rollout(manifests: dict[str, Any]) -> None:
    job = manifests["Job"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["command"] + container["args"] == ["user-sync", "migrate"]
    assert "readinessProbe" not in container


# --- hardening (the Pod Security Standards' "restricted" profile, and more) --------------------


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_meet_the_restricted_pod_security_standard(kind: str, manifests: dict) -> None:
    spec = pod_spec(manifests[kind])
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == pod["runAsGroup"] == IMAGE_UID
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert not {"hostNetwork", "hostPID", "hostIPC"} & spec.keys()
    assert all(set(volume) == {"name", "emptyDir"} for volume in spec["volumes"])
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context.get("privileged", False) is False
        assert context["runAsNonRoot"] is True
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}


def test_the_image_user_is_the_pods_user() -> None:
    dockerfile = (KUSTOMIZE_BASE.parents[1] / "Dockerfile").read_text(encoding="utf-8")
    assert f"USER {IMAGE_UID}:{IMAGE_UID}" in dockerfile.splitlines()


# --- settings ----------------------------------------------------------------------------------


def test_every_configmap_key_is_a_setting(manifests: dict[str, Any]) -> None:
    assert sorted(set(manifests["ConfigMap"]["data"]) - setting_names()) == []


def test_the_configmap_values_are_accepted_by_the_settings(
    manifests: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(manifests["ConfigMap"]["data"], monkeypatch)
    assert settings.http_port == 8080
    assert settings.log_format.value == "json"


def test_the_secret_example_holds_settings_with_placeholders_only() -> None:
    secret = load_yaml(SECRET_EXAMPLE)
    values = secret["stringData"]
    assert sorted(set(values) - setting_names()) == []
    for name, value in values.items():
        assert "<" in value and ">" in value, f"{name} must be a <placeholder>"
    assert "data" not in secret
