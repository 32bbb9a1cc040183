"""The pack's configuration: one typed settings object per policy, each with its JSON schema and defaults.

CrossGuard configures policies individually (`{"<policy>": {"enforcementLevel": ..., "<key>": ...}}` in the
file given to `--policy-pack-config`); the schema below is what `pulumi policy` validates that file against,
and `from_config` applies the same defaults, so a pack run without a config file behaves as documented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

# Registries (and organisations within them) the components pull from; see README.md for the list's origin.
DEFAULT_ALLOWED_REGISTRIES: Final = (
    "nvcr.io/nvidia",
    "quay.io/minio",
    "quay.io/prometheus",
    "docker.io/minio",
    "docker.io/rancher",
    "registry.k8s.io",
    "ghcr.io/edgefm",
)
# The same list edgefm's config models reject (edgefm/fields.py FLOATING_TAGS).
DEFAULT_FLOATING_TAGS: Final = ("latest", "stable", "main", "master", "edge", "nightly", "dev")
# The GPU operator installs into gpu-operator (Helm) or nvidia-gpu-operator (OLM on OpenShift).
DEFAULT_PRIVILEGED_NAMESPACES: Final = ("gpu-operator", "nvidia-gpu-operator")
# The chart controller (k3s's helm-controller, run by edgefm on other distributions) binds cluster-admin to each
# chart's install job, so it must hold cluster-admin itself; it is the only workload allowed to.
DEFAULT_CLUSTER_ADMIN_SUBJECTS: Final = ("helm-controller/helm-controller",)
DEFAULT_REQUIRED_RESOURCES: Final = ("cpu", "memory")
# Read-only S3 calls a site needs to mirror models from the registry; anything else is treated as a write.
DEFAULT_READ_ONLY_ACTIONS: Final = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:GetBucketLocation",
    "s3:GetBucketVersioning",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListAllMyBuckets",
)
DEFAULT_SSE_ALGORITHMS: Final = ("AES256", "aws:kms", "aws:kms:dsse")
DEFAULT_ADDITIONAL_LABELS: Final = ("app.kubernetes.io/managed-by", "app.kubernetes.io/component")
DEFAULT_CLUSTER_LOCAL_SUFFIXES: Final = (".svc", ".svc.cluster.local", ".cluster.local")
DEFAULT_NODES_PER_SITE: Final = 3


def _string_list(description: str, default: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "description": description,
        "default": list(default),
    }


def _strings(cfg: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = cfg.get(key)
    if value is None:
        return default
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"policy config {key} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _bool(cfg: Mapping[str, Any], key: str, default: bool) -> bool:
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"policy config {key} must be true or false, got {value!r}")
    return value


def _int(cfg: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = cfg.get(key)
    if value is None:
        return default
    # JSON numbers arrive as floats through protobuf Structs.
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < minimum:
        raise ValueError(f"policy config {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ImagesConfig:
    allowed_registries: tuple[str, ...] = DEFAULT_ALLOWED_REGISTRIES
    floating_tags: tuple[str, ...] = DEFAULT_FLOATING_TAGS

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "allowedRegistries": _string_list(
            "Registry hosts or registry/organisation prefixes images may come from "
            "(docker.io is implied for short names: `rancher/x` is docker.io/rancher/x).",
            DEFAULT_ALLOWED_REGISTRIES,
        ),
        "floatingTags": _string_list("Tags treated as unpinned (case-insensitive).", DEFAULT_FLOATING_TAGS),
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ImagesConfig:
        return cls(
            _strings(cfg, "allowedRegistries", DEFAULT_ALLOWED_REGISTRIES),
            _strings(cfg, "floatingTags", DEFAULT_FLOATING_TAGS),
        )


@dataclass(frozen=True)
class ResourcesConfig:
    required_requests: tuple[str, ...] = DEFAULT_REQUIRED_RESOURCES
    required_limits: tuple[str, ...] = DEFAULT_REQUIRED_RESOURCES

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "requiredRequests": _string_list("Resources every container must request.", DEFAULT_REQUIRED_RESOURCES),
        "requiredLimits": _string_list("Resources every container must limit.", DEFAULT_REQUIRED_RESOURCES),
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ResourcesConfig:
        return cls(
            _strings(cfg, "requiredRequests", DEFAULT_REQUIRED_RESOURCES),
            _strings(cfg, "requiredLimits", DEFAULT_REQUIRED_RESOURCES),
        )


@dataclass(frozen=True)
class PodSecurityConfig:
    exempt_namespaces: tuple[str, ...] = DEFAULT_PRIVILEGED_NAMESPACES

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "exemptNamespaces": _string_list(
            "Namespaces exempt from the Pod Security Standards (the GPU operator's driver and toolkit load "
            "kernel modules and mount the host).",
            DEFAULT_PRIVILEGED_NAMESPACES,
        )
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PodSecurityConfig:
        return cls(_strings(cfg, "exemptNamespaces", DEFAULT_PRIVILEGED_NAMESPACES))


@dataclass(frozen=True)
class RbacConfig:
    cluster_admin_subjects: tuple[str, ...] = DEFAULT_CLUSTER_ADMIN_SUBJECTS

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "clusterAdminSubjects": _string_list(
            "Service accounts (`<namespace>/<name>`) that may be bound to cluster-admin: the chart controller, "
            "which installs charts that create cluster-scoped objects.",
            DEFAULT_CLUSTER_ADMIN_SUBJECTS,
        )
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> RbacConfig:
        return cls(_strings(cfg, "clusterAdminSubjects", DEFAULT_CLUSTER_ADMIN_SUBJECTS))


@dataclass(frozen=True)
class ExternalServicesConfig:
    allow_on_hub: bool = False
    allow_ingress_on_hub: bool = True

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "allowOnHub": {
            "type": "boolean",
            "default": False,
            "description": "Whether the hub stack may expose Services (LoadBalancer, NodePort, externalIPs) "
            "(sites decide through allowExternalServices in their facts).",
        },
        "allowIngressOnHub": {
            "type": "boolean",
            "default": True,
            "description": "Whether the hub stack may declare Ingresses (the sites reach the registry and "
            "telemetry through them; storage-tls-only holds them to TLS).",
        },
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ExternalServicesConfig:
        return cls(_bool(cfg, "allowOnHub", False), _bool(cfg, "allowIngressOnHub", True))


@dataclass(frozen=True)
class CapacityConfig:
    nodes_per_site: int = DEFAULT_NODES_PER_SITE

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "nodesPerSite": {
            "type": "integer",
            "minimum": 1,
            "default": DEFAULT_NODES_PER_SITE,
            "description": "Nodes a DaemonSet's GPU request is multiplied by (the appliance size).",
        }
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> CapacityConfig:
        return cls(_int(cfg, "nodesPerSite", DEFAULT_NODES_PER_SITE, 1))


@dataclass(frozen=True)
class StorageConfig:
    registry_buckets: tuple[str, ...] = ()
    sse_algorithms: tuple[str, ...] = DEFAULT_SSE_ALGORITHMS

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "registryBuckets": _string_list(
            "Bucket names that hold the model registry, besides buckets tagged/labelled "
            "edgefm.io/bucket=models in the hub stack.",
            (),
        ),
        "sseAlgorithms": _string_list("Accepted S3 default-encryption algorithms.", DEFAULT_SSE_ALGORITHMS),
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> StorageConfig:
        return cls(_strings(cfg, "registryBuckets", ()), _strings(cfg, "sseAlgorithms", DEFAULT_SSE_ALGORITHMS))


@dataclass(frozen=True)
class SovereigntyConfig:
    cluster_local_suffixes: tuple[str, ...] = DEFAULT_CLUSTER_LOCAL_SUFFIXES

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "clusterLocalSuffixes": _string_list(
            "Host name suffixes that stay inside the site's cluster; URLs to any other host (except the "
            "site's own storage endpoint) count as leaving the site.",
            DEFAULT_CLUSTER_LOCAL_SUFFIXES,
        )
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SovereigntyConfig:
        return cls(_strings(cfg, "clusterLocalSuffixes", DEFAULT_CLUSTER_LOCAL_SUFFIXES))


@dataclass(frozen=True)
class IdentityConfig:
    read_only_actions: tuple[str, ...] = DEFAULT_READ_ONLY_ACTIONS
    registry_buckets: tuple[str, ...] = ()

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "readOnlyActions": _string_list(
            "S3 actions a site identity may hold on the registry; any other action there is a write.",
            DEFAULT_READ_ONLY_ACTIONS,
        ),
        "registryBuckets": _string_list("Extra registry bucket names (see storage policies).", ()),
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> IdentityConfig:
        return cls(
            _strings(cfg, "readOnlyActions", DEFAULT_READ_ONLY_ACTIONS),
            _strings(cfg, "registryBuckets", ()),
        )


@dataclass(frozen=True)
class LabelsConfig:
    additional_labels: tuple[str, ...] = DEFAULT_ADDITIONAL_LABELS

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {
        "additionalLabels": _string_list(
            "Labels required besides app.kubernetes.io/part-of=edgefm and edgefm.io/site=<site>.",
            DEFAULT_ADDITIONAL_LABELS,
        )
    }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> LabelsConfig:
        return cls(_strings(cfg, "additionalLabels", DEFAULT_ADDITIONAL_LABELS))
