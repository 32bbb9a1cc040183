"""The guardrails inside the real engine: `pulumi preview --policy-pack policies/guardrails/analyzer` (through the
Automation API) fails on a stack that breaks each mandatory policy, with that policy's message naming the
resource, taken from the engine's own policy events (the sample fleet passing is in test_fleet.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from pulumi import automation as auto

from edgefm.ops.engine import Manifest, workspace_options
from edgefm.ops.fleet import plan
from edgefm.ops.guardrails import ANALYZER, Findings, retention_findings
from tests.harness import ROOT

PACK = [str(ROOT / ANALYZER)]

pytestmark = pytest.mark.engine

LABELS = {"app.kubernetes.io/part-of": "edgefm", "edgefm.io/site": "bad"}
LIMITS = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def _deployment(name: str, container: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    container = {"name": name, "image": "nvcr.io/nvidia/tritonserver:25.01-py3", "resources": LIMITS, **container}
    pod = {"metadata": {"labels": LABELS}, "spec": {"containers": [container]}}
    return {"replicas": replicas, "selector": {"matchLabels": LABELS}, "template": pod}


# name → (kind, body, the mandatory policy it must trip)
VIOLATIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    "unpinned": (
        "Deployment",
        _deployment("unpinned", {"image": "docker.io/library/busybox:latest"}),
        "images-pinned-allowed-registries",
    ),
    "unbounded": ("Deployment", _deployment("unbounded", {"resources": {}}), "k8s-requests-and-limits"),
    "privileged": (
        "Deployment",
        _deployment("privileged", {"securityContext": {"privileged": True}}),
        "k8s-pod-security-baseline",
    ),
    # No securityContext at all: allowPrivilegeEscalation, runAsNonRoot, seccomp and capabilities unset.
    "rooted": ("Deployment", _deployment("rooted", {}), "k8s-pod-security-restricted"),
    "with-password": (
        "Deployment",
        _deployment("with-password", {"env": [{"name": "MINIO_ROOT_PASSWORD", "value": "minio123"}]}),
        "k8s-no-plaintext-credentials",
    ),
    "plain-http": (
        "Deployment",
        _deployment("plain-http", {"env": [{"name": "EDGEFM_SITE_S3_ENDPOINT", "value": "http://minio:9000"}]}),
        "storage-tls-only",
    ),
    "greedy": (
        "Deployment",
        _deployment(
            "greedy",
            {"resources": {"requests": LIMITS["requests"], "limits": {**LIMITS["limits"], "nvidia.com/gpu": "2"}}},
            replicas=4,
        ),
        "gpu-capacity",
    ),
}


FACTS = {
    "site": "bad",
    "region": "eu-central-1",
    "jurisdiction": "DE",
    "physicalGpus": 3,
    "gpuCapacity": 3,
    "allowExternalServices": False,
    "storageEndpoint": "https://minio:9000",
    "network": "10.9.0.0/24",
    "buckets": {"datasets": "bad-datasets", "models": "bad-models", "checkpoints": "bad-checkpoints"},
}


# Jobs: name → (labels beyond the site's, annotations, container, the mandatory policy it must trip)
JOBS: dict[str, tuple[dict[str, str], dict[str, str], dict[str, Any], str]] = {
    # A datasets bucket declared public.
    "public-bucket": (
        {"edgefm.io/bucket": "datasets"},
        {
            "edgefm.io/bucket-name": "bad-datasets",
            "edgefm.io/bucket-public": "true",
            "edgefm.io/bucket-encryption": "sse-s3",
            "edgefm.io/bucket-versioning": "true",
            "edgefm.io/bucket-replication": "none",
        },
        {"command": ["/bin/sh", "-ec", "mc mb site/bad-datasets"]},
        "storage-onsite-bucket-hardening",
    ),
    # A workload that reads the datasets and holds the hub registry's address: data could leave the site.
    "exfiltrate": (
        {},
        {},
        {
            "env": [
                {"name": "EDGEFM_DATASETS_BUCKET", "value": "bad-datasets"},
                {"name": "EDGEFM_REGISTRY_ENDPOINT_URL", "value": "https://registry.hub.example.net"},
            ]
        },
        "data-sovereignty",
    ),
}


RETAINED: dict[str, tuple[dict[str, str], dict[str, str], dict[str, Any], str]] = {
    "unretained": (
        {"edgefm.io/bucket": "datasets"},
        {},
        {"command": ["/bin/sh", "-ec", "mc mb site/bad-datasets\nmc encrypt set sse-s3 site/bad-datasets"]},
        "storage-datasets-protected",
    )
}
# Objects of the program above that break the Kubernetes baselines, by the policy they must trip.
BASELINES = {
    "agent-admin": "k8s-rbac-least-privilege",
    "stray": "k8s-no-default-namespace",
    "open": "k8s-network-policies",
    "unpinned": "k8s-service-account-tokens",
    "public-bucket": "storage-datasets-protected",
}


def _program(out: Path) -> None:
    provider = k8s.Provider("render", render_yaml_to_directory=str(out))
    opts = pulumi.ResourceOptions(provider=provider)
    k8s.rbac.v1.ClusterRoleBinding(
        "agent-admin",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="agent-admin", labels=LABELS),
        role_ref=k8s.rbac.v1.RoleRefArgs(
            api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
        ),
        subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="agent", namespace="edgefm")],
        opts=opts,
    )
    k8s.core.v1.ConfigMap("stray", metadata={"name": "stray", "labels": LABELS}, data={"a": "b"}, opts=opts)
    k8s.apiextensions.CustomResource(
        "open",
        api_version="networking.k8s.io/v1",
        kind="NetworkPolicy",
        metadata={"name": "open", "namespace": "edgefm", "labels": LABELS},
        spec={"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]},
        opts=opts,
    )
    k8s.core.v1.ConfigMap(
        "facts",
        metadata={"name": "edgefm-site-facts", "namespace": "edgefm-system", "labels": LABELS},
        data={"facts.json": json.dumps(FACTS)},
        opts=opts,
    )
    for name, (kind, body, _) in VIOLATIONS.items():
        k8s.apiextensions.CustomResource(
            name, api_version="apps/v1", kind=kind, metadata={"name": name, "namespace": "edgefm", "labels": LABELS},
            spec=body, opts=opts,
        )  # fmt: skip
    for name, (labels, notes, container, _) in {**JOBS, **RETAINED}.items():
        container = {
            "name": name,
            "image": "quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z",
            "resources": LIMITS,
            **container,
        }
        pod = {"metadata": {"labels": LABELS}, "spec": {"restartPolicy": "Never", "containers": [container]}}
        meta = {"name": name, "namespace": "edgefm-system", "labels": {**LABELS, **labels}, "annotations": notes}
        # The second datasets bucket is protected but not retained: only the engine's step events show that.
        options = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(protect=True, retain_on_delete=False) if name in RETAINED else None
        )
        k8s.apiextensions.CustomResource(
            name, api_version="batch/v1", kind="Job", metadata=meta, spec={"template": pod}, opts=options
        )
    k8s.core.v1.Service(
        "exposed",
        metadata={"name": "exposed", "namespace": "edgefm", "labels": LABELS},
        spec={"type": "LoadBalancer", "selector": LABELS, "ports": [{"port": 8000}]},
        opts=opts,
    )


def test_each_mandatory_violation_stops_the_preview(engine: Manifest, tmp_path: Path) -> None:
    options = workspace_options(manifest=engine, backend_url=(tmp_path / "state").as_uri(), work_dir=tmp_path)
    (tmp_path / "state").mkdir()
    program = functools.partial(_program, tmp_path / "rendered")
    stack = auto.create_or_select_stack(stack_name="site-bad", project_name="edgefm", program=program, opts=options)
    findings = Findings()
    with pytest.raises(auto.CommandError):
        plan(stack, PACK, findings=findings)
    mandatory = findings.mandatory
    text = "\n".join(mandatory)
    expected = [(name, policy) for name, (_, _, policy) in VIOLATIONS.items()]
    expected += [(name, policy) for name, (_, _, _, policy) in JOBS.items()]
    expected += [(name, policy) for name, policy in BASELINES.items()]
    for name, policy in expected:
        assert any(line.startswith(f"[{policy}]") and name in line for line in mandatory), (policy, name, text)
    assert any(line.startswith("[k8s-no-external-services]") and "exposed" in line for line in mandatory), text
    # The engine gave the pack `protect`: the protected bucket passed there, the unprotected one did not.
    assert not any("unretained" in line and "without protect" in line for line in mandatory), text
    # retainOnDelete is not in the analyzer protocol: the fleet finds it in the engine's step events.
    _, planned = plan(stack)
    assert {p["urn"].rsplit("::", 1)[1] for p in planned} >= {*VIOLATIONS, *JOBS, *BASELINES, "exposed", "facts"}
    retained = retention_findings(ROOT, planned)
    assert all(line.endswith("without retainOnDelete; labelled data must survive a destroy or a replacement")
               for line in retained), retained  # fmt: skip
    assert sorted(line.split("'")[1] for line in retained) == ["public-bucket", "unretained"], retained


def _hub_program(out: Path) -> None:
    """A hub whose registry gives a site write access through a wildcard policy."""
    labels = {"app.kubernetes.io/part-of": "edgefm", "edgefm.io/site": "hub"}
    opts = pulumi.ResourceOptions(provider=k8s.Provider("render", render_yaml_to_directory=str(out)))
    values = {
        "users": [
            {
                "accessKey": "site-bad",
                "existingSecret": "registry-site-bad",
                "existingSecretKey": "secretKey",
                "policy": "edgefm-site-read",
            }
        ],
        "policies": [
            {
                "name": "edgefm-site-read",
                "statements": [{"actions": ["s3:*"], "resources": ["arn:aws:s3:::edgefm-models/*"]}],
            }
        ],
    }
    k8s.apiextensions.CustomResource(
        "registry-minio",
        api_version="helm.cattle.io/v1",
        kind="HelmChart",
        metadata={"name": "registry-minio", "namespace": "kube-system", "labels": labels},
        spec={
            "repo": "https://charts.min.io/",
            "chart": "minio",
            "version": "5.4.0",
            "valuesContent": yaml.safe_dump(values),
        },
        opts=opts,
    )
    k8s.core.v1.Secret(
        "site-bad",
        metadata={
            "name": "registry-site-bad",
            "namespace": "edgefm-hub",
            "labels": {**labels, "edgefm.io/for-site": "bad"},
        },
        string_data={"secretKey": pulumi.Output.secret("k" * 40)},
        opts=opts,
    )


def test_a_site_identity_that_can_write_stops_the_hub_preview(engine: Manifest, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    options = workspace_options(manifest=engine, backend_url=(tmp_path / "state").as_uri(), work_dir=tmp_path)
    program = functools.partial(_hub_program, tmp_path / "rendered")
    stack = auto.create_or_select_stack(stack_name="hub", project_name="edgefm", program=program, opts=options)
    findings = Findings()
    with pytest.raises(auto.CommandError):
        plan(stack, PACK, findings=findings)
    mandatory = findings.mandatory
    assert any(
        line.startswith("[identity-site-read-only] site bad's identity") and "wildcard actions s3:*" in line
        for line in mandatory
    ), mandatory
