"""RBAC least privilege, the default namespace, and service-account tokens mounted only where used."""

from __future__ import annotations

from typing import Any

import pytest
from edgefm_guardrails.config import RbacConfig
from edgefm_guardrails.model import UNKNOWN, NotApplicable, Resource, Violation
from edgefm_guardrails.rbac import (
    check_default_namespace,
    check_helm_release_namespace,
    check_rbac,
    check_service_account_tokens,
)

from tests.guardrails.guardrail_builders import HUB, SITE_STACK, container, deployment, meta, resource

CFG = RbacConfig()
RBAC = "kubernetes:rbac.authorization.k8s.io/v1"


def sa_subject(name: str = "monitoring", namespace: str = "edgefm-system") -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def cluster_role(name: str, rules: list[dict[str, Any]], stack: str = SITE_STACK) -> Resource:
    props = {"metadata": meta(name, stack, namespace=None), "rules": rules}
    return resource(stack, f"{RBAC}:ClusterRole", name, props)


def role(name: str, rules: list[dict[str, Any]]) -> Resource:
    return resource(SITE_STACK, f"{RBAC}:Role", name, {"metadata": meta(name), "rules": rules})


def binding(
    name: str, role_name: str, subjects: list[dict[str, str]], *, cluster: bool = True, stack: str = SITE_STACK
) -> Resource:
    props = {
        "metadata": meta(name, stack, namespace=None if cluster else "edgefm"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": subjects,
    }
    return resource(stack, f"{RBAC}:{'ClusterRoleBinding' if cluster else 'RoleBinding'}", name, props)


READ_PODS = [{"apiGroups": [""], "resources": ["pods", "endpoints"], "verbs": ["get", "list", "watch"]}]


def messages(found: list[Violation]) -> list[str]:
    return [v.message for v in found]


def test_the_monitoring_agents_read_only_grant_passes() -> None:
    stack = [cluster_role("monitoring", READ_PODS), binding("monitoring", "monitoring", [sa_subject()])]
    assert check_rbac(stack, CFG) == []


def test_cluster_admin_to_a_workload() -> None:
    b = binding("agent-admin", "cluster-admin", [sa_subject()])
    assert messages(check_rbac([b], CFG)) == [
        "ClusterRoleBinding 'agent-admin' binds cluster-admin to service account edgefm-system/monitoring; "
        "workloads get only the verbs and resources they use (CIS 5.1.1; allowed only for "
        "helm-controller/helm-controller)"
    ]
    # Even inside a namespace (RoleBinding), and to every service account at once.
    rb = binding(
        "ns-admin", "cluster-admin", [{"kind": "Group", "name": "system:serviceaccounts:edgefm"}], cluster=False
    )
    assert len(check_rbac([rb], CFG)) == 1


def test_the_named_chart_controller_may_hold_cluster_admin_and_nobody_else() -> None:
    b = binding("helm", "cluster-admin", [sa_subject("helm-controller", "helm-controller")], stack=HUB)
    assert check_rbac([b], CFG) == []
    assert len(check_rbac([b], RbacConfig.from_config({"clusterAdminSubjects": []}))) == 1
    # The same name in another namespace is another account.
    other = binding("helm", "cluster-admin", [sa_subject("helm-controller", "edgefm")], stack=HUB)
    assert len(check_rbac([other], CFG)) == 1


def test_people_may_be_bound_but_everyone_may_not() -> None:
    admins = binding("ops", "cluster-admin", [{"kind": "Group", "name": "edgefm-operators"}])
    assert check_rbac([admins], CFG) == []
    everyone = binding("all", "view", [{"kind": "Group", "name": "system:authenticated"}])
    assert "to group system:authenticated: everyone" in messages(check_rbac([everyone], CFG))[0]


def test_broad_builtin_roles_cluster_wide() -> None:
    b = binding("edit-all", "edit", [sa_subject()])
    assert "grants the built-in role 'edit' in every namespace" in messages(check_rbac([b], CFG))[0]
    # Inside one namespace `edit` is the built-in way to give a deployer its namespace.
    assert check_rbac([binding("edit-ns", "edit", [sa_subject()], cluster=False)], CFG) == []


def test_default_service_account_must_not_be_granted() -> None:
    b = binding("d", "monitoring", [sa_subject("default", "edgefm")])
    assert "the default service account of namespace edgefm" in messages(check_rbac([b], CFG))[0]


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}, "wildcard apiGroups"),
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, "wildcard resources"),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}, "wildcard verbs"),
        ({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"]}, "grants bind"),
        ({"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}, "grants impersonate"),
    ],
)
def test_wildcards_and_escalating_verbs(rule: dict[str, Any], fragment: str) -> None:
    found = check_rbac([role("r", [rule])], CFG)
    assert len(found) == 1 and fragment in found[0].message and "rules[0]" in found[0].message


def test_reading_secrets_everywhere() -> None:
    rules = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]
    wide = [cluster_role("reader", rules), binding("reader", "reader", [sa_subject()])]
    assert "reads Secrets in every namespace (CIS 5.1.2)" in messages(check_rbac(wide, CFG))[0]
    # The same ClusterRole bound in one namespace only reads that namespace's Secrets.
    narrow = [cluster_role("reader", rules), binding("reader", "reader", [sa_subject()], cluster=False)]
    assert check_rbac(narrow, CFG) == []


def test_objects_in_the_default_namespace() -> None:
    d = deployment("triton", [container()])
    assert check_default_namespace(d) == []
    del d.props["metadata"]["namespace"]
    assert messages(check_default_namespace(d)) == [
        "Deployment 'triton' is in the default namespace (metadata.namespace unset); put it in its component's "
        "namespace (CIS 5.7.4)"
    ]
    d.props["metadata"]["namespace"] = "default"
    assert "(metadata.namespace 'default')" in messages(check_default_namespace(d))[0]
    d.props["metadata"]["namespace"] = UNKNOWN
    assert check_default_namespace(d) == []


def test_cluster_scoped_objects_have_no_namespace() -> None:
    assert check_default_namespace(cluster_role("r", READ_PODS)) == []
    ns = resource(SITE_STACK, "kubernetes:core/v1:Namespace", "edgefm", {"metadata": meta("edgefm", namespace=None)})
    assert check_default_namespace(ns) == []


def test_charts_installed_into_default() -> None:
    chart = resource(
        SITE_STACK,
        "kubernetes:helm.cattle.io/v1:HelmChart",
        "c",
        {"metadata": meta("c", namespace="kube-system"), "spec": {"chart": "x", "targetNamespace": "default"}},
    )
    assert "installs its chart into the default namespace" in messages(check_default_namespace(chart))[0]
    release = resource(SITE_STACK, "kubernetes:helm.sh/v3:Release", "r", {"chart": "x"})
    assert len(check_helm_release_namespace(release)) == 1
    release.props["namespace"] = "edgefm"  # type: ignore[index]
    assert check_helm_release_namespace(release) == []


def workload(automount: Any = None, account: str | None = None) -> Resource:
    d = deployment("agent", [container()], namespace="edgefm-system")
    spec = d.props["spec"]["template"]["spec"]
    spec.pop("automountServiceAccountToken")
    if automount is not None:
        spec["automountServiceAccountToken"] = automount
    if account is not None:
        spec["serviceAccountName"] = account
    return d


def service_account(name: str, automount: bool | None = None) -> Resource:
    props: dict[str, Any] = {"metadata": meta(name, namespace="edgefm-system")}
    if automount is not None:
        props["automountServiceAccountToken"] = automount
    return resource(SITE_STACK, "kubernetes:core/v1:ServiceAccount", name, props)


def test_a_token_nobody_granted_anything_is_not_mounted() -> None:
    d = workload()
    assert messages(check_service_account_tokens([d])) == [
        "Deployment 'agent' in namespace edgefm-system mounts the API token of service account 'default', which "
        "no RoleBinding or ClusterRoleBinding in the stack grants anything; set automountServiceAccountToken: "
        "false (CIS 5.1.6)"
    ]
    assert check_service_account_tokens([workload(automount=False)]) == []


def test_a_granted_account_uses_its_token() -> None:
    d = workload(account="monitoring")
    assert len(check_service_account_tokens([d, service_account("monitoring")])) == 1
    granted = binding("monitoring", "monitoring", [sa_subject("monitoring", "edgefm-system")])
    assert check_service_account_tokens([d, service_account("monitoring"), granted]) == []
    # A grant to the same name in another namespace is another account's.
    elsewhere = binding("monitoring", "monitoring", [sa_subject("monitoring", "edgefm")])
    assert len(check_service_account_tokens([d, elsewhere])) == 1


def test_the_account_can_turn_mounting_off_for_its_pods() -> None:
    d = workload(account="quiet")
    assert check_service_account_tokens([d, service_account("quiet", automount=False)]) == []
    # The pod can still ask for the token explicitly, and then it is judged.
    assert len(check_service_account_tokens([workload(True, "quiet"), service_account("quiet", False)])) == 1


def test_token_check_needs_workloads() -> None:
    with pytest.raises(NotApplicable):
        check_service_account_tokens([service_account("x")])
