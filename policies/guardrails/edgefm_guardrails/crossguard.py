"""Thin CrossGuard wrappers: turn the engine's arguments into plain `Resource`s, parse the policy's config,
run the check, report what it found. All judgement lives in the `check_*` functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, Self, TypeVar

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

from edgefm_guardrails.capacity import check_gpu_capacity
from edgefm_guardrails.config import (
    CapacityConfig,
    ExternalServicesConfig,
    IdentityConfig,
    ImagesConfig,
    LabelsConfig,
    PodSecurityConfig,
    RbacConfig,
    ResourcesConfig,
    SovereigntyConfig,
    StorageConfig,
)
from edgefm_guardrails.credentials import check_plaintext_credentials
from edgefm_guardrails.facts import check_site_facts
from edgefm_guardrails.identity import check_site_identities
from edgefm_guardrails.images import check_images
from edgefm_guardrails.kubernetes import check_external_services, check_requests_and_limits
from edgefm_guardrails.labels import check_labels
from edgefm_guardrails.model import UNKNOWN, NotApplicable, Resource, Violation
from edgefm_guardrails.network import check_network_policies
from edgefm_guardrails.podsecurity import check_pod_security_baseline, check_pod_security_restricted
from edgefm_guardrails.rbac import (
    check_default_namespace,
    check_helm_release_namespace,
    check_rbac,
    check_service_account_tokens,
)
from edgefm_guardrails.sovereignty import check_datasets_protected, check_sovereignty
from edgefm_guardrails.storage import check_aws_buckets, check_onsite_buckets, check_tls_endpoints

PACK_NAME: Final = "edgefm-guardrails"
_SENTINELS: Final = frozenset(
    {
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_OBJECT_VALUE,
        UNKNOWN_STRING_VALUE,
    }
)


def plain(value: Any) -> Any:
    """Copies the engine's property proxies into dicts and lists, with UNKNOWN where a value is unknown.

    pulumi_policy raises UnknownValueError when an unknown is read, which would abort the whole policy for
    the stack; reading item by item instead lets each check skip just the unknown value.
    """
    if isinstance(value, Secret):
        return plain(value.value)
    if isinstance(value, str):
        return UNKNOWN if value in _SENTINELS else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                item = value[key]
            except UnknownValueError:
                item = UNKNOWN
            out[str(key)] = plain(item)
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        items: list[Any] = []
        for i in range(len(value)):
            try:
                item = value[i]
            except UnknownValueError:
                item = UNKNOWN
            items.append(plain(item))
        return items
    return value


def resource_from_args(args: ResourceValidationArgs) -> Resource:
    return Resource(args.urn, args.resource_type, args.name, plain(args.props), protect=bool(args.opts.protect))


def resource_from_stack(r: PolicyResource) -> Resource:
    deps = {k: tuple(d.urn for d in v) for k, v in r.property_dependencies.items()}
    depends_on = tuple(d.urn for d in r.dependencies)
    return Resource(r.urn, r.resource_type, r.name, plain(r.props), deps, depends_on, protect=bool(r.opts.protect))


class Settings(Protocol):
    PROPERTIES: ClassVar[dict[str, dict[str, Any]]]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Self: ...


C = TypeVar("C", bound=Settings)


@dataclass(frozen=True)
class Guardrail:
    """One policy of the pack: its name, what it guards, how it runs and how strictly.

    `evaluate` runs the same check on plain resources, without CrossGuard (tests, rendered manifests).
    """

    name: str
    description: str
    level: EnforcementLevel
    policy: Policy
    evaluate: Callable[[Sequence[Resource], Mapping[str, Any]], list[Violation]]


def _report(violations: Sequence[Violation], report: ReportViolation, with_urn: bool) -> None:
    for v in violations:
        # Resource policies attach findings to the resource under validation; the engine ignores a URN.
        report(v.message, v.urn if with_urn else None)


def resource_policy(
    name: str,
    description: str,
    check: Callable[[Resource, C], list[Violation]],
    settings: type[C],
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
) -> Guardrail:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        cfg = settings.from_config(args.get_config())
        try:
            found = check(resource_from_args(args), cfg)
        except NotApplicable as exc:
            args.not_applicable(exc.reason)
            return
        _report(found, report, with_urn=False)

    def evaluate(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Violation]:
        cfg = settings.from_config(config)
        out: list[Violation] = []
        for r in resources:
            try:
                out += check(r, cfg)
            except NotApplicable:
                continue
        return out

    schema = PolicyConfigSchema(settings.PROPERTIES) if settings.PROPERTIES else None
    policy = ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level, config_schema=schema
    )
    return Guardrail(name, description, level, policy, evaluate)


def stack_policy(
    name: str,
    description: str,
    check: Callable[[Sequence[Resource], C], list[Violation]],
    settings: type[C],
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
) -> Guardrail:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        cfg = settings.from_config(args.get_config())
        try:
            found = check([resource_from_stack(r) for r in args.resources], cfg)
        except NotApplicable as exc:
            args.not_applicable(exc.reason)
            return
        _report(found, report, with_urn=True)

    def evaluate(resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Violation]:
        try:
            return check(resources, settings.from_config(config))
        except NotApplicable:
            return []

    schema = PolicyConfigSchema(settings.PROPERTIES) if settings.PROPERTIES else None
    policy = StackValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level, config_schema=schema
    )
    return Guardrail(name, description, level, policy, evaluate)


class NoSettings:
    """For policies without configuration."""

    PROPERTIES: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> NoSettings:
        return cls()


def guardrails() -> list[Guardrail]:
    """Every policy of the pack, in the order `pulumi preview` lists them."""
    advisory = EnforcementLevel.ADVISORY
    return [
        stack_policy(
            "site-facts",
            "Site stacks publish their own facts in ConfigMap edgefm-system/edgefm-site-facts.",
            lambda rs, _cfg: check_site_facts(rs),
            NoSettings,
        ),
        stack_policy(
            "storage-aws-bucket-hardening",
            "S3 buckets block public access, encrypt at rest, deny plain HTTP; the registry is versioned.",
            check_aws_buckets,
            StorageConfig,
        ),
        resource_policy(
            "storage-onsite-bucket-hardening",
            "On-site buckets (MinIO Jobs, ObjectBucketClaims): private, encrypted, registry versioned.",
            check_onsite_buckets,
            StorageConfig,
        ),
        resource_policy(
            "storage-tls-only",
            "Object storage is reached over https only (workload endpoints, site facts, Ingresses).",
            lambda r, _cfg: check_tls_endpoints(r),
            NoSettings,
        ),
        stack_policy(
            "data-sovereignty",
            "A site's datasets never leave it: no replication, tiering or workload that moves them off-site.",
            check_sovereignty,
            SovereigntyConfig,
        ),
        stack_policy(
            "storage-datasets-protected",
            "A site's datasets bucket is protected from deletion and replacement (resource options).",
            lambda rs, _cfg: check_datasets_protected(rs),
            NoSettings,
        ),
        resource_policy(
            "images-pinned-allowed-registries",
            "Container images are pinned (non-floating tag or digest) and come from allowed registries.",
            check_images,
            ImagesConfig,
        ),
        resource_policy(
            "k8s-requests-and-limits",
            "Containers declare resource requests and limits.",
            check_requests_and_limits,
            ResourcesConfig,
        ),
        resource_policy(
            "k8s-pod-security-baseline",
            "Pods meet the Pod Security Standard baseline (outside the GPU operator's namespaces).",
            check_pod_security_baseline,
            PodSecurityConfig,
        ),
        resource_policy(
            "k8s-pod-security-restricted",
            "Pods meet the Pod Security Standard restricted (outside the GPU operator's namespaces).",
            check_pod_security_restricted,
            PodSecurityConfig,
        ),
        stack_policy(
            "k8s-rbac-least-privilege",
            "No cluster-admin, wildcard, escalating or cluster-wide Secret grants to workloads.",
            check_rbac,
            RbacConfig,
        ),
        resource_policy(
            "k8s-no-default-namespace",
            "Workloads and their objects live in named namespaces, never in default.",
            lambda r, _cfg: check_default_namespace(r) + check_helm_release_namespace(r),
            NoSettings,
        ),
        stack_policy(
            "k8s-service-account-tokens",
            "Pods mount a service-account token only when the account is granted something.",
            lambda rs, _cfg: check_service_account_tokens(rs),
            NoSettings,
        ),
        resource_policy(
            "k8s-no-plaintext-credentials",
            "No credentials in ConfigMaps, literal environment values, command lines or chart values.",
            lambda r, _cfg: check_plaintext_credentials(r),
            NoSettings,
        ),
        stack_policy(
            "k8s-network-policies",
            "Every Service's pods are behind a NetworkPolicy that admits only the site network.",
            lambda rs, _cfg: check_network_policies(rs),
            NoSettings,
        ),
        stack_policy(
            "k8s-no-external-services",
            "No LoadBalancer/NodePort Services, externalIPs, Ingresses or Routes unless the site allows them.",
            check_external_services,
            ExternalServicesConfig,
        ),
        stack_policy(
            "gpu-capacity",
            "The GPUs a site's workloads request (replicas x per-pod nvidia.com/gpu) fit the appliance.",
            check_gpu_capacity,
            CapacityConfig,
        ),
        stack_policy(
            "identity-site-read-only",
            "Site identities cannot write to the model registry and hold no wildcard actions.",
            check_site_identities,
            IdentityConfig,
        ),
        resource_policy(
            "k8s-required-labels",
            "Kubernetes objects carry app.kubernetes.io/part-of=edgefm and edgefm.io/site=<site>.",
            check_labels,
            LabelsConfig,
            advisory,
        ),
    ]


def policies() -> list[Policy]:
    return [g.policy for g in guardrails()]


def evaluate(
    resources: Sequence[Resource], config: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, list[Violation]]:
    """Every guardrail over one stack's resources, as `pulumi preview --policy-pack` would judge them:
    policy name → findings (only policies with findings). `config` is the pack config, per policy."""
    config = config or {}
    found = {g.name: g.evaluate(resources, config.get(g.name, {})) for g in guardrails()}
    return {name: violations for name, violations in found.items() if violations}
