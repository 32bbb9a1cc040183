"""Kubernetes object helpers: type tokens, metadata, and the pod templates inside workload kinds."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from edgefm_guardrails.model import UNKNOWN, Resource, as_list, as_mapping, get

PART_OF: Final = "app.kubernetes.io/part-of"
COMPONENT: Final = "app.kubernetes.io/component"
SITE_LABEL: Final = "edgefm.io/site"
BUCKET_LABEL: Final = "edgefm.io/bucket"

_TYPE = re.compile(r"^kubernetes:(?P<group>[a-z0-9.-]+)/(?P<version>v[0-9a-z]+):(?P<kind>[A-Za-z0-9]+)$")
# Pulumi component resources and Helm releases share the `kubernetes:` prefix but are not API objects.
_NOT_OBJECTS: Final = frozenset({"helm.sh", "yaml", "kustomize"})


@dataclass(frozen=True)
class KubeType:
    group: str  # "core" for the legacy group, as Pulumi spells it
    version: str
    kind: str


def kube_type(type_token: str) -> KubeType | None:
    """Parses `kubernetes:apps/v1:Deployment`; None for other providers and for non-object resources."""
    m = _TYPE.match(type_token)
    if m is None or m.group("group") in _NOT_OBJECTS:
        return None
    kind = m.group("kind")
    # Patch resources and lists do not carry a full object.
    if kind.endswith(("Patch", "List")):
        return None
    return KubeType(m.group("group"), m.group("version"), kind)


def is_kube_object(r: Resource) -> bool:
    return kube_type(r.type) is not None


def is_kind(r: Resource, group: str, kind: str) -> bool:
    t = kube_type(r.type)
    return t is not None and t.group == group and t.kind == kind


def labels_of(r: Resource) -> Mapping[str, Any]:
    return as_mapping(get(r.props, "metadata", "labels"))


def annotations_of(r: Resource) -> Mapping[str, Any]:
    return as_mapping(get(r.props, "metadata", "annotations"))


def namespace(r: Resource) -> str:
    ns = get(r.props, "metadata", "namespace")
    # Objects without a namespace land in the provider's default, which edgefm never changes.
    return ns if isinstance(ns, str) and ns else "default"


@dataclass(frozen=True)
class PodTemplate:
    """The pod spec of a workload and how many pods of it may run at once."""

    spec: Mapping[str, Any]
    replicas: int | None  # None: unknown during preview
    per_node: bool  # DaemonSets run one pod per node


_POD_SPEC_PATHS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("core", "Pod"): ("spec",),
    ("core", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _count(value: Any, default: int) -> int | None:
    if value is None:
        return default
    if value is UNKNOWN:
        return None
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        return int(value)
    return default


def pod_template(r: Resource) -> PodTemplate | None:
    t = kube_type(r.type)
    if t is None:
        return None
    path = _POD_SPEC_PATHS.get((t.group, t.kind))
    if path is None:
        return None
    spec = as_mapping(get(r.props, *path))
    if t.kind in ("Job",):
        replicas = _count(get(r.props, "spec", "parallelism"), 1)
    elif t.kind == "CronJob":
        replicas = _count(get(r.props, "spec", "jobTemplate", "spec", "parallelism"), 1)
    elif t.kind in ("Pod", "DaemonSet"):
        replicas = 1
    else:
        replicas = _count(get(r.props, "spec", "replicas"), 1)
    return PodTemplate(spec, replicas, per_node=t.kind == "DaemonSet")


@dataclass(frozen=True)
class Container:
    field: str  # containers, initContainers, ephemeralContainers
    name: str
    spec: Mapping[str, Any]

    @property
    def label(self) -> str:
        kind = {"initContainers": "init container", "ephemeralContainers": "ephemeral container"}
        return f"{kind.get(self.field, 'container')} '{self.name}'"


def containers(spec: Mapping[str, Any]) -> Iterator[Container]:
    for field_name in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(as_list(spec.get(field_name))):
            c = as_mapping(c)
            name = c.get("name")
            yield Container(field_name, name if isinstance(name, str) else f"#{i}", c)


def workload_containers(r: Resource) -> Iterator[tuple[PodTemplate, Container]]:
    tmpl = pod_template(r)
    if tmpl is None:
        return
    for c in containers(tmpl.spec):
        yield tmpl, c


def env_values(c: Container) -> dict[str, Any]:
    """Literal env values of a container (valueFrom references cannot be read at preview time)."""
    out: dict[str, Any] = {}
    for e in as_list(c.spec.get("env")):
        e = as_mapping(e)
        name = e.get("name")
        if isinstance(name, str) and "value" in e:
            out[name] = e["value"]
    return out


def helm_values(r: Resource) -> Iterator[tuple[str, Any]]:
    """(where, values) of a Helm install: HelmChart valuesContent (YAML text) or a helm Release's values."""
    t = kube_type(r.type)
    if t is not None and t.group == "helm.cattle.io" and t.kind == "HelmChart":
        content = get(r.props, "spec", "valuesContent")
        if isinstance(content, str) and content.strip():
            try:
                yield "spec.valuesContent", yaml.safe_load(content)
            except yaml.YAMLError:
                return
    elif r.type == "kubernetes:helm.sh/v3:Release":
        yield "values", get(r.props, "values")


def helm_chart_name(r: Resource) -> Any:
    t = kube_type(r.type)
    if t is not None and t.group == "helm.cattle.io" and t.kind == "HelmChart":
        return get(r.props, "spec", "chart")
    if r.type == "kubernetes:helm.sh/v3:Release":
        return get(r.props, "chart")
    return None
