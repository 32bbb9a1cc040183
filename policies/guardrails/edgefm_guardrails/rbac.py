"""RBAC least privilege for workloads (CIS Kubernetes Benchmark section 5.1), no workloads in the `default`
namespace (5.7.4), and service-account tokens mounted only into pods whose account is granted something (5.1.6).

A "workload" here is whatever runs as a service account: RBAC subjects of kind ServiceAccount and the groups
that stand for all of them (`system:serviceaccounts[:<namespace>]`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edgefm_guardrails.config import RbacConfig
from edgefm_guardrails.kube import is_kind, kube_type, namespace, pod_template
from edgefm_guardrails.model import UNKNOWN, NotApplicable, Resource, Violation, as_list, as_mapping, get

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
CLUSTER_ADMIN: Final = "cluster-admin"
# Built-in aggregated roles that grant write on nearly every namespaced resource, Secrets included.
BROAD_BUILTIN_ROLES: Final = frozenset({"admin", "edit"})
SA_GROUP: Final = "system:serviceaccounts"
EVERYONE_GROUPS: Final = frozenset({"system:anonymous", "system:unauthenticated", "system:authenticated"})
# Verbs that let a holder grant itself more than it has (CIS 5.1.8).
ESCALATING_VERBS: Final = frozenset({"bind", "escalate", "impersonate"})
SECRET_READ_VERBS: Final = frozenset({"get", "list", "watch"})
# Kinds edgefm creates that belong in a namespace; a missing namespace means the provider's `default`.
NAMESPACED_KINDS: Final = frozenset(
    {
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
        "Service",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "Role",
        "RoleBinding",
        "Ingress",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "HelmChart",
    }
)


@dataclass(frozen=True)
class Subject:
    kind: str
    name: Any
    namespace: Any

    @property
    def label(self) -> str:
        if self.kind == "ServiceAccount":
            return f"service account {self.namespace}/{self.name}"
        return f"{self.kind.lower()} {self.name}"

    def is_workload(self) -> bool:
        return self.kind == "ServiceAccount" or (
            self.kind == "Group" and isinstance(self.name, str) and self.name.startswith(SA_GROUP)
        )


def subjects(binding: Resource) -> list[Subject]:
    ns = get(binding.props, "metadata", "namespace")
    out = []
    for s in as_list(get(binding.props, "subjects")):
        kind = get(s, "kind")
        if isinstance(kind, str):
            # A ServiceAccount subject without a namespace is the binding's own (RoleBinding) namespace.
            out.append(Subject(kind, get(s, "name"), get(s, "namespace") or ns))
    return out


def _rules(role: Resource) -> list[Mapping[str, Any]]:
    return [as_mapping(r) for r in as_list(get(role.props, "rules"))]


def _strings(value: Any) -> list[str]:
    return [str(v) for v in as_list(value) if isinstance(v, str)]


def role_problems(role: Resource, cluster_wide: bool) -> Iterator[str]:
    for i, rule in enumerate(_rules(role)):
        where = f"rules[{i}]"
        for key in ("apiGroups", "resources", "verbs"):
            if "*" in _strings(rule.get(key)):
                yield f"{where} grants the wildcard {key}: ['*'] (CIS 5.1.3)"
        verbs = set(_strings(rule.get("verbs")))
        escalating = sorted(verbs & ESCALATING_VERBS)
        if escalating:
            yield f"{where} grants {', '.join(escalating)}, which let the holder grant itself more (CIS 5.1.8)"
        if cluster_wide and "secrets" in _strings(rule.get("resources")) and verbs & SECRET_READ_VERBS:
            yield f"{where} reads Secrets in every namespace (CIS 5.1.2)"


def _role_ref(binding: Resource) -> tuple[Any, Any]:
    return get(binding.props, "roleRef", "kind"), get(binding.props, "roleRef", "name")


def _find_role(resources: Sequence[Resource], binding: Resource, kind: Any, name: Any) -> Resource | None:
    for r in resources:
        if not is_kind(r, RBAC_GROUP, str(kind)):
            continue
        if r.urn in binding.property_dependencies.get("roleRef", ()) or get(r.props, "metadata", "name") == name:
            return r
    return None


def bindings(resources: Sequence[Resource]) -> list[Resource]:
    return [
        r for r in resources if is_kind(r, RBAC_GROUP, "RoleBinding") or is_kind(r, RBAC_GROUP, "ClusterRoleBinding")
    ]


def check_rbac(resources: Sequence[Resource], cfg: RbacConfig) -> list[Violation]:
    out: list[Violation] = []
    allowed = set(cfg.cluster_admin_subjects)
    bound_roles: dict[str, bool] = {}  # role URN → bound cluster-wide to a workload
    for b in bindings(resources):
        kind, name = _role_ref(b)
        cluster_wide = b.kind == "ClusterRoleBinding"
        for s in subjects(b):
            if isinstance(s.name, str) and s.name in EVERYONE_GROUPS:
                out.append(Violation(f"{b.label} grants {kind} {name!r} to {s.label}: everyone (CIS 5.1.1)", b.urn))
                continue
            if not s.is_workload():
                continue
            if s.kind == "ServiceAccount" and s.name == "default":
                out.append(
                    Violation(
                        f"{b.label} grants {kind} {name!r} to the default service account of namespace "
                        f"{s.namespace}; give the workload its own account (CIS 5.1.5)",
                        b.urn,
                    )
                )
            if kind == "ClusterRole" and name == CLUSTER_ADMIN:
                if s.kind == "ServiceAccount" and f"{s.namespace}/{s.name}" in allowed:
                    continue
                out.append(
                    Violation(
                        f"{b.label} binds cluster-admin to {s.label}; workloads get only the verbs and resources "
                        f"they use (CIS 5.1.1; allowed only for {', '.join(sorted(allowed)) or 'none'})",
                        b.urn,
                    )
                )
            elif kind == "ClusterRole" and name in BROAD_BUILTIN_ROLES and cluster_wide:
                out.append(
                    Violation(
                        f"{b.label} grants the built-in role {name!r} in every namespace to {s.label} (CIS 5.1.1)",
                        b.urn,
                    )
                )
            role = _find_role(resources, b, kind, name)
            if role is not None:
                bound_roles[role.urn] = bound_roles.get(role.urn, False) or cluster_wide
    for r in resources:
        if is_kind(r, RBAC_GROUP, "Role") or is_kind(r, RBAC_GROUP, "ClusterRole"):
            if get(r.props, "rules") is UNKNOWN:
                continue
            cluster_wide = bound_roles.get(r.urn, False)
            problems = list(role_problems(r, cluster_wide))
            if problems:
                out.append(Violation(f"{r.label}: {'; '.join(problems)}", r.urn))
    return out


def check_default_namespace(r: Resource) -> list[Violation]:
    t = kube_type(r.type)
    if t is None or t.kind not in NAMESPACED_KINDS:
        return []
    ns = get(r.props, "metadata", "namespace")
    if ns is UNKNOWN:
        return []
    out: list[Violation] = []
    if namespace(r) == "default":
        out.append(
            Violation(
                f"{r.kind} '{r.name}' is in the default namespace (metadata.namespace "
                f"{'unset' if ns in (None, '') else repr(ns)}); put it in its component's namespace (CIS 5.7.4)",
                r.urn,
            )
        )
    if t.kind == "HelmChart" and get(r.props, "spec", "targetNamespace") == "default":
        out.append(Violation(f"{r.label} installs its chart into the default namespace (CIS 5.7.4)", r.urn))
    return out


def check_helm_release_namespace(r: Resource) -> list[Violation]:
    if r.type != "kubernetes:helm.sh/v3:Release":
        return []
    ns = r.get("namespace")
    if ns in (None, "", "default"):
        return [Violation(f"Release '{r.name}' installs its chart into the default namespace (CIS 5.7.4)", r.urn)]
    return []


def _service_account(resources: Sequence[Resource], name: str, ns: str) -> Resource | None:
    for r in resources:
        if is_kind(r, "core", "ServiceAccount") and get(r.props, "metadata", "name") == name and namespace(r) == ns:
            return r
    return None


def _granted(resources: Sequence[Resource], name: str, ns: str) -> bool:
    for b in bindings(resources):
        for s in subjects(b):
            if s.kind == "ServiceAccount" and s.name in (name, UNKNOWN) and s.namespace in (ns, UNKNOWN):
                return True
    return False


def check_service_account_tokens(resources: Sequence[Resource]) -> list[Violation]:
    """A pod mounts its service account's API token only if the account is granted something (CIS 5.1.6)."""
    if not any(pod_template(r) is not None for r in resources):
        raise NotApplicable("no workloads in this stack")
    out: list[Violation] = []
    for r in resources:
        tmpl = pod_template(r)
        if tmpl is None:
            continue
        ns = get(r.props, "metadata", "namespace")
        automount = tmpl.spec.get("automountServiceAccountToken")
        account = tmpl.spec.get("serviceAccountName") or tmpl.spec.get("serviceAccount") or "default"
        if automount is False or UNKNOWN in (automount, account, ns) or not isinstance(account, str):
            continue
        sa = _service_account(resources, account, namespace(r))
        if automount is None and sa is not None and get(sa.props, "automountServiceAccountToken") is False:
            continue
        if _granted(resources, account, namespace(r)):
            continue
        out.append(
            Violation(
                f"{r.label} mounts the API token of service account {account!r}, which no RoleBinding or "
                "ClusterRoleBinding in the stack grants anything; set automountServiceAccountToken: false "
                "(CIS 5.1.6)",
                r.urn,
            )
        )
    return out
