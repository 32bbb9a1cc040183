"""Pod Security Standards, baseline and restricted, over pod specs wherever a workload declares one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from edgefm_guardrails.config import PodSecurityConfig
from edgefm_guardrails.model import UNKNOWN, Resource, Violation
from edgefm_guardrails.podsecurity import check_pod_security_baseline, check_pod_security_restricted

from tests.guardrails.guardrail_builders import (
    SITE_STACK,
    container,
    cronjob,
    daemonset,
    deployment,
    job,
    meta,
    pod_spec,
    resource,
)

CFG = PodSecurityConfig()


def pod(c: dict[str, Any], namespace: str = "edgefm") -> Resource:
    props = {"metadata": meta("p", namespace=namespace), "spec": pod_spec([c])}
    return resource(SITE_STACK, "kubernetes:core/v1:Pod", "p", props)


def statefulset(c: dict[str, Any]) -> Resource:
    props = {"metadata": meta("s"), "spec": {"replicas": 1, "template": {"spec": pod_spec([c])}}}
    return resource(SITE_STACK, "kubernetes:apps/v1:StatefulSet", "s", props)


# Every kind that carries a pod spec, built around one container.
KINDS: dict[str, Callable[[dict[str, Any]], Resource]] = {
    "Deployment": lambda c: deployment("w", [c]),
    "DaemonSet": lambda c: daemonset("w", [c]),
    "StatefulSet": statefulset,
    "Job": lambda c: job("w", [c]),
    "CronJob": lambda c: cronjob("w", [c]),
    "Pod": pod,
}


def only(found: list[Violation]) -> str:
    assert len(found) == 1, [v.message for v in found]
    return found[0].message


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_components_pod_shape_meets_both_levels(kind: str) -> None:
    r = KINDS[kind](container())
    assert check_pod_security_baseline(r, CFG) == []
    assert check_pod_security_restricted(r, CFG) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_privileged_is_refused_in_every_workload_kind(kind: str) -> None:
    c = container(security_context={"privileged": True, "allowPrivilegeEscalation": True})
    message = only(check_pod_security_baseline(KINDS[kind](c), CFG))
    assert "breaks the Pod Security Standard baseline" in message
    assert "container 'app' runs privileged (Privileged Containers)" in message


def spec_with(**over: Any) -> Resource:
    d = deployment("w", [container()])
    d.props["spec"]["template"]["spec"].update(over)
    return d


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"hostNetwork": True}, "sets hostNetwork: true (Host Namespaces)"),
        ({"hostPID": True}, "sets hostPID: true (Host Namespaces)"),
        ({"hostIPC": True}, "sets hostIPC: true (Host Namespaces)"),
        (
            {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
            "mounts hostPath volume 'root' (HostPath Volumes)",
        ),
        (
            {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
            "sets the unsafe sysctl kernel.msgmax (Sysctls)",
        ),
        (
            {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            "the pod sets seccompProfile Unconfined (Seccomp)",
        ),
        (
            {"securityContext": {"seLinuxOptions": {"type": "spc_t"}}},
            "the pod sets SELinux type 'spc_t' (SELinux)",
        ),
        (
            {"securityContext": {"windowsOptions": {"hostProcess": True}}},
            "runs as a Windows HostProcess pod (HostProcess)",
        ),
    ],
)
def test_baseline_pod_level_controls(over: dict[str, Any], fragment: str) -> None:
    assert fragment in only(check_pod_security_baseline(spec_with(**over), CFG))


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"capabilities": {"add": ["NET_ADMIN"]}}, "adds capabilities NET_ADMIN (Capabilities)"),
        ({"capabilities": {"add": ["CAP_SYS_ADMIN"]}}, "adds capabilities SYS_ADMIN (Capabilities)"),
        ({"procMount": "Unmasked"}, "sets procMount 'Unmasked' (/proc Mount Type)"),
        ({"appArmorProfile": {"type": "Unconfined"}}, "sets appArmorProfile Unconfined (AppArmor)"),
        ({"seLinuxOptions": {"user": "system_u"}}, "sets a custom SELinux user (SELinux)"),
    ],
)
def test_baseline_container_controls(context: dict[str, Any], fragment: str) -> None:
    c = container(security_context=context)
    assert fragment in only(check_pod_security_baseline(deployment("w", [c]), CFG))


def test_baseline_allows_its_own_capability_list_and_safe_sysctls() -> None:
    c = container(security_context={"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]}})
    d = deployment("w", [c])
    d.props["spec"]["template"]["spec"]["securityContext"]["sysctls"] = [{"name": "net.ipv4.tcp_syncookies"}]
    assert check_pod_security_baseline(d, CFG) == []


def test_host_ports_and_apparmor_annotations() -> None:
    c = container()
    c["ports"] = [{"containerPort": 8000, "hostPort": 8000}]
    d = deployment("w", [c])
    d.props["spec"]["template"]["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/app": "unconfined"
    }
    message = only(check_pod_security_baseline(d, CFG))
    assert "binds host port 8000 (Host Ports)" in message and "(AppArmor)" in message


@pytest.mark.parametrize("namespace", ["gpu-operator", "nvidia-gpu-operator"])
def test_only_the_gpu_operator_namespaces_are_exempt(namespace: str) -> None:
    driver = container("driver", security_context={"privileged": True})
    ds = daemonset("driver", [driver], namespace=namespace)
    ds.props["spec"]["template"]["spec"].update(hostPID=True, volumes=[{"name": "host", "hostPath": {"path": "/"}}])
    assert check_pod_security_baseline(ds, CFG) == []
    assert check_pod_security_restricted(ds, CFG) == []
    elsewhere = daemonset("driver", [driver], namespace="kube-system")
    assert check_pod_security_baseline(elsewhere, CFG) != []
    # The exemption is a setting: an empty list exempts nothing.
    assert check_pod_security_baseline(ds, PodSecurityConfig.from_config({"exemptNamespaces": []})) != []


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}, "does not set allowPrivilegeEscalation: false"),
        ({"allowPrivilegeEscalation": False, "runAsNonRoot": True}, "does not drop ALL capabilities"),
        (
            {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": False},
            "does not set runAsNonRoot: true",
        ),
        (
            {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsUser": 0},
            "sets runAsUser: 0",
        ),
        (
            {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}},
            "adds capabilities CHOWN; only NET_BIND_SERVICE may be added",
        ),
    ],
)
def test_restricted_container_controls(context: dict[str, Any], fragment: str) -> None:
    message = only(check_pod_security_restricted(deployment("w", [container(security_context=context)]), CFG))
    assert "breaks the Pod Security Standard restricted" in message and fragment in message


def test_restricted_pod_level_controls() -> None:
    d = spec_with(securityContext={}, volumes=[{"name": "data", "nfs": {"server": "nas", "path": "/x"}}])
    message = only(check_pod_security_restricted(d, CFG))
    assert "volume 'data' is of type nfs (Volume Types)" in message
    # Neither the pod nor the container says runAsNonRoot or seccomp: both are reported.
    c = container(security_context={"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}})
    bare = deployment("w", [c])
    bare.props["spec"]["template"]["spec"]["securityContext"] = {}
    message = only(check_pod_security_restricted(bare, CFG))
    assert "does not set runAsNonRoot: true" in message and "no seccompProfile RuntimeDefault" in message


def test_container_settings_can_replace_the_pods() -> None:
    c = container(
        security_context={
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "edgefm.json"},
        }
    )
    d = deployment("w", [c])
    d.props["spec"]["template"]["spec"]["securityContext"] = {}
    assert check_pod_security_restricted(d, CFG) == []


def test_init_containers_are_held_to_the_same_levels() -> None:
    init = container("init", security_context={"runAsNonRoot": True})
    message = only(check_pod_security_restricted(deployment("w", [container()], init=[init]), CFG))
    assert "init container 'init' does not set allowPrivilegeEscalation: false" in message


def test_unknown_contexts_wait_for_the_update() -> None:
    c = container()
    c["securityContext"] = {"allowPrivilegeEscalation": UNKNOWN, "runAsNonRoot": True}
    assert check_pod_security_restricted(deployment("w", [c]), CFG) == []
    d = deployment("w", [container(security_context={"privileged": True})])
    d.props["metadata"]["namespace"] = UNKNOWN
    assert check_pod_security_baseline(d, CFG) == []


def test_objects_without_pods_are_not_judged() -> None:
    svc = resource(SITE_STACK, "kubernetes:core/v1:Service", "s", {"metadata": meta("s"), "spec": {}})
    assert check_pod_security_baseline(svc, CFG) == check_pod_security_restricted(svc, CFG) == []
