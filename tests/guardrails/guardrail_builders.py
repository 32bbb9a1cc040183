"""Builders for synthetic resources shaped as the engine hands them to policies (camelCase properties),
modelled on what edgefm's components register. Tests start from a compliant object and break one thing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from edgefm_guardrails.model import Resource

SITE = "bridge-north"
SITE_STACK = f"site-{SITE}"
HUB = "hub"
ENDPOINT = "https://site-storage-minio.edgefm-system.svc:9000"
BUCKETS = {"datasets": f"{SITE}-datasets", "models": f"{SITE}-models", "checkpoints": f"{SITE}-checkpoints"}
HUB_REGISTRY_ENDPOINT = "https://hub.edgefm.example.net"


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::edgefm::{type_}::{name}"


def resource(
    stack: str,
    type_: str,
    name: str,
    props: Mapping[str, Any],
    property_dependencies: Mapping[str, Sequence[str]] | None = None,
) -> Resource:
    deps = {k: tuple(v) for k, v in (property_dependencies or {}).items()}
    return Resource(urn(stack, type_, name), type_, name, dict(props), deps)


def site_of(stack: str) -> str:
    return stack.removeprefix("site-")


def meta(
    name: str,
    stack: str = SITE_STACK,
    component: str = "test",
    namespace: str | None = "edgefm",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "labels": {
            "app.kubernetes.io/part-of": "edgefm",
            "app.kubernetes.io/managed-by": "pulumi",
            "app.kubernetes.io/component": component,
            "edgefm.io/site": site_of(stack),
            **(labels or {}),
        },
    }
    if namespace is not None:
        out["namespace"] = namespace
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def container(
    name: str = "app",
    image: str = "ghcr.io/edgefm/edgefm-tools:0.1.0",
    *,
    cpu: str = "250m",
    memory: str = "256Mi",
    gpus: int = 0,
    env: Mapping[str, str] | None = None,
    secret_env: Sequence[str] = (),
    args: Sequence[str] | None = None,
    command: Sequence[str] | None = None,
    security_context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    limits: dict[str, str] = {"cpu": "1", "memory": "1Gi"}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits},
    }
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in (env or {}).items()]
    env_list += [{"name": k, "valueFrom": {"secretKeyRef": {"name": "s", "key": k}}} for k in secret_env]
    if env_list:
        c["env"] = env_list
    if args is not None:
        c["args"] = list(args)
    if command is not None:
        c["command"] = list(command)
    # What the components declare: the Pod Security Standard restricted (a test breaks one thing at a time).
    c["securityContext"] = dict(RESTRICTED_CONTAINER if security_context is None else security_context)
    return c


RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}
RESTRICTED_POD: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_spec(containers: Sequence[Mapping[str, Any]], init: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [dict(c) for c in containers],
        "securityContext": dict(RESTRICTED_POD),
        # Workloads without RBAC grants mount no API token.
        "automountServiceAccountToken": False,
    }
    if init:
        spec["initContainers"] = [dict(c) for c in init]
    return spec


def deployment(
    name: str,
    containers: Sequence[Mapping[str, Any]],
    *,
    stack: str = SITE_STACK,
    replicas: Any = 1,
    namespace: str = "edgefm",
    init: Sequence[Mapping[str, Any]] = (),
) -> Resource:
    props = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, stack, namespace=namespace),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": meta(name, stack, namespace=None), "spec": pod_spec(containers, init)},
        },
    }
    return resource(stack, "kubernetes:apps/v1:Deployment", name, props)


def daemonset(
    name: str, containers: Sequence[Mapping[str, Any]], *, stack: str = SITE_STACK, namespace: str = "edgefm"
) -> Resource:
    props = {
        "metadata": meta(name, stack, namespace=namespace),
        "spec": {"template": {"metadata": meta(name, stack, namespace=None), "spec": pod_spec(containers)}},
    }
    return resource(stack, "kubernetes:apps/v1:DaemonSet", name, props)


def job(
    name: str,
    containers: Sequence[Mapping[str, Any]],
    *,
    stack: str = SITE_STACK,
    namespace: str = "edgefm",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    parallelism: int | None = None,
    init: Sequence[Mapping[str, Any]] = (),
) -> Resource:
    spec: dict[str, Any] = {
        "template": {"metadata": meta(name, stack, namespace=None), "spec": pod_spec(containers, init)}
    }
    if parallelism is not None:
        spec["parallelism"] = parallelism
    props = {
        "metadata": meta(name, stack, namespace=namespace, labels=labels, annotations=annotations),
        "spec": spec,
    }
    return resource(stack, "kubernetes:batch/v1:Job", name, props)


def cronjob(name: str, containers: Sequence[Mapping[str, Any]], *, stack: str = SITE_STACK) -> Resource:
    props = {
        "metadata": meta(name, stack),
        "spec": {
            "schedule": "5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": pod_spec(containers)}}},
        },
    }
    return resource(stack, "kubernetes:batch/v1:CronJob", name, props)


def service(name: str, type_: str = "ClusterIP", *, stack: str = SITE_STACK) -> Resource:
    props = {"metadata": meta(name, stack), "spec": {"type": type_, "ports": [{"port": 8000}]}}
    return resource(stack, "kubernetes:core/v1:Service", name, props)


def facts_doc(stack: str = SITE_STACK, **over: Any) -> dict[str, Any]:
    site = site_of(stack)
    doc: dict[str, Any] = {
        "site": site,
        "region": "eu-central-1",
        "jurisdiction": "DE",
        "physicalGpus": 3,
        "gpuCapacity": 3,
        "network": "10.20.0.0/24",
        "allowExternalServices": False,
        "storageEndpoint": ENDPOINT,
        "buckets": {p: f"{site}-{p}" for p in ("datasets", "models", "checkpoints")},
    }
    doc.update(over)
    return doc


def facts(stack: str = SITE_STACK, raw: str | None = None, **over: Any) -> Resource:
    props = {
        "metadata": meta("edgefm-site-facts", stack, component="site", namespace="edgefm-system"),
        "data": {"facts.json": raw if raw is not None else json.dumps(facts_doc(stack, **over))},
    }
    return resource(stack, "kubernetes:core/v1:ConfigMap", "site-facts", props)


BUCKET_ANNOTATIONS = {
    "edgefm.io/bucket-versioning": "true",
    "edgefm.io/bucket-encryption": "sse-s3",
    "edgefm.io/bucket-public": "false",
    "edgefm.io/bucket-replication": "none",
}


def bucket_job(
    purpose: str,
    *,
    stack: str = SITE_STACK,
    name: str | None = None,
    annotations: Mapping[str, str | None] | None = None,
    steps: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Resource:
    """A MinIO bucket-provisioning Job as components/site_storage.py registers it."""
    bucket = name or f"{site_of(stack)}-{purpose}"
    ann: dict[str, str] = {"edgefm.io/bucket-name": bucket, **BUCKET_ANNOTATIONS}
    for k, v in (annotations or {}).items():
        if v is None:
            ann.pop(k, None)
        else:
            ann[k] = v
    script = [
        'mc alias set site "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"',
        f"mc mb --ignore-existing site/{bucket}",
        f"mc anonymous set none site/{bucket}",
        f"mc encrypt set sse-s3 site/{bucket}",
        *steps,
    ]
    mc = container(
        "mc",
        "quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z",
        command=["/bin/sh", "-ec", "\n".join(script)],
        env={"MINIO_URL": ENDPOINT, **(env or {})},
        secret_env=("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"),
    )
    return job(
        f"site-storage-bucket-{purpose}",
        [mc],
        stack=stack,
        namespace="edgefm-system",
        labels={"edgefm.io/bucket": purpose},
        annotations=ann,
    )


def object_bucket_claim(
    purpose: str, *, stack: str = SITE_STACK, annotations: Mapping[str, str] | None = None, **spec: Any
) -> Resource:
    bucket = f"{site_of(stack)}-{purpose}"
    ann = {"edgefm.io/bucket-name": bucket, **BUCKET_ANNOTATIONS, **(annotations or {})}
    props = {
        "apiVersion": "objectbucket.io/v1alpha1",
        "kind": "ObjectBucketClaim",
        "metadata": meta(f"storage-{purpose}", stack, labels={"edgefm.io/bucket": purpose}, annotations=ann),
        "spec": {"bucketName": bucket, "storageClassName": "openshift-storage.noobaa.io", **spec},
    }
    return resource(stack, "kubernetes:objectbucket.io/v1alpha1:ObjectBucketClaim", f"storage-{purpose}", props)


def helm_chart(name: str, values_yaml: str, *, stack: str = SITE_STACK) -> Resource:
    props = {
        "metadata": meta(name, stack, namespace="kube-system"),
        "spec": {
            "repo": "https://charts.min.io/",
            "chart": "minio",
            "version": "5.4.0",
            "valuesContent": values_yaml,
        },
    }
    return resource(stack, "kubernetes:helm.cattle.io/v1:HelmChart", name, props)
