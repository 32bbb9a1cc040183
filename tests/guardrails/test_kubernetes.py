from __future__ import annotations

from decimal import Decimal

import pytest
from edgefm_guardrails.config import ExternalServicesConfig, PrivilegedConfig, ResourcesConfig
from edgefm_guardrails.kubernetes import (
    check_external_services,
    check_privileged,
    check_requests_and_limits,
    parse_quantity,
)
from edgefm_guardrails.model import NotApplicable

from tests.guardrails.guardrail_builders import (
    HUB,
    SITE_STACK,
    container,
    daemonset,
    deployment,
    facts,
    job,
    service,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("2", "2"), ("16Gi", str(16 * 2**30)), ("1.5G", "1.5E+9"), ("1e3", "1E+3"), (4, "4")],
)
def test_parse_quantity(text: object, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "lots", "5 Gi", True, None])
def test_parse_quantity_rejects_non_quantities(text: object) -> None:
    assert parse_quantity(text) is None


def test_requests_and_limits_compliant() -> None:
    assert check_requests_and_limits(deployment("triton", [container("triton")]), ResourcesConfig()) == []


def test_missing_requests_and_limits_are_reported_per_container() -> None:
    bare = container("bare")
    del bare["resources"]
    half = container("half")
    half["resources"] = {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}
    found = check_requests_and_limits(job("finetune", [bare], init=[half]), ResourcesConfig())
    messages = [v.message for v in found]
    assert (
        "Job 'finetune' in namespace edgefm: container 'bare' declares no resource requests for cpu, memory" in messages
    )
    assert (
        "Job 'finetune' in namespace edgefm: container 'bare' declares no resource limits for cpu, memory" in messages
    )
    assert any("init container 'half' declares no resource requests for memory" in m for m in messages)
    assert any("init container 'half' declares no resource limits for cpu" in m for m in messages)
    assert len(found) == 4


def test_request_above_limit() -> None:
    c = container("app", cpu="2", memory="2Gi")  # limits are 1 CPU / 1Gi
    messages = [v.message for v in check_requests_and_limits(deployment("app", [c]), ResourcesConfig())]
    assert any("requests cpu 2 above its limit 1" in m for m in messages)
    assert any("requests memory 2Gi above its limit 1Gi" in m for m in messages)


def test_required_resources_are_configurable() -> None:
    c = container("app")
    c["resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert check_requests_and_limits(deployment("a", [c]), ResourcesConfig()) != []
    relaxed = ResourcesConfig.from_config({"requiredLimits": ["memory"]})
    assert check_requests_and_limits(deployment("a", [c]), relaxed) == []


def test_privileged_only_in_the_gpu_operator_namespace() -> None:
    priv = container("driver", security_context={"privileged": True})
    for ns in ("gpu-operator", "nvidia-gpu-operator"):
        assert check_privileged(daemonset("driver", [priv], namespace=ns), PrivilegedConfig()) == []
    found = check_privileged(deployment("triton", [priv]), PrivilegedConfig())
    assert [v.message for v in found] == [
        "Deployment 'triton' in namespace edgefm: container 'driver' runs privileged; privileged containers "
        "are allowed only in namespaces gpu-operator, nvidia-gpu-operator"
    ]


def test_sys_admin_counts_as_privileged() -> None:
    c = container("x", security_context={"capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}})
    found = check_privileged(deployment("x", [c]), PrivilegedConfig())
    assert len(found) == 1 and "adds capabilities SYS_ADMIN" in found[0].message
    unprivileged = container("y", security_context={"privileged": False, "allowPrivilegeEscalation": False})
    assert check_privileged(deployment("y", [unprivileged]), PrivilegedConfig()) == []


def test_privileged_namespaces_are_configurable() -> None:
    c = container("x", security_context={"privileged": True})
    assert check_privileged(deployment("x", [c]), PrivilegedConfig(("edgefm",))) == []


@pytest.mark.parametrize("type_", ["LoadBalancer", "NodePort"])
def test_external_services_need_the_sites_permission(type_: str) -> None:
    svc = service("triton", type_)
    found = check_external_services([facts(), svc, service("internal")], ExternalServicesConfig())
    assert [(v.message, v.urn) for v in found] == [
        (
            f"Service 'triton' in namespace edgefm is of type {type_} but site bridge-north does not allow "
            "external services; use ClusterIP",
            svc.urn,
        )
    ]
    assert check_external_services([facts(allowExternalServices=True), svc], ExternalServicesConfig()) == []


def test_external_services_on_the_hub_follow_pack_config() -> None:
    svc = service("ingress", "LoadBalancer", stack=HUB)
    assert len(check_external_services([svc], ExternalServicesConfig())) == 1
    assert check_external_services([svc], ExternalServicesConfig.from_config({"allowOnHub": True})) == []


def test_external_services_without_facts_defer_to_site_facts_policy() -> None:
    with pytest.raises(NotApplicable, match="site-facts"):
        check_external_services([service("triton", "LoadBalancer", stack=SITE_STACK)], ExternalServicesConfig())
