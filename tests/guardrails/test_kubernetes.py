from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from edgefm_guardrails.config import ExternalServicesConfig, ResourcesConfig
from edgefm_guardrails.kubernetes import check_external_services, check_requests_and_limits, parse_quantity
from edgefm_guardrails.model import NotApplicable

from tests.guardrails.guardrail_builders import (
    HUB,
    SITE_STACK,
    container,
    deployment,
    facts,
    job,
    meta,
    resource,
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


def test_external_ips_are_exposure_too() -> None:
    svc = service("triton")
    svc.props["spec"]["externalIPs"] = ["192.0.2.10"]
    found = check_external_services([facts(), svc], ExternalServicesConfig())
    assert [v.message for v in found] == [
        "Service 'triton' in namespace edgefm lists externalIPs 192.0.2.10 but site bridge-north does not allow "
        "external services; use ClusterIP"
    ]
    assert check_external_services([facts(allowExternalServices=True), svc], ExternalServicesConfig()) == []


def ingress(name: str, stack: str = SITE_STACK, kind: str = "networking.k8s.io/v1:Ingress") -> Any:
    props = {"metadata": meta(name, stack), "spec": {"rules": [{"host": f"{name}.example.net"}]}}
    return resource(stack, f"kubernetes:{kind}", name, props)


@pytest.mark.parametrize(
    "kind", ["networking.k8s.io/v1:Ingress", "route.openshift.io/v1:Route", "gateway.networking.k8s.io/v1:Gateway"]
)
def test_ingresses_and_routes_at_a_site_need_its_permission(kind: str) -> None:
    r = ingress("triton", kind=kind)
    found = check_external_services([facts(), r], ExternalServicesConfig())
    assert [(v.message, v.urn) for v in found] == [
        (
            f"{kind.rsplit(':', 1)[1]} 'triton' in namespace edgefm exposes Services outside the cluster but "
            "site bridge-north does not allow external services",
            r.urn,
        )
    ]
    assert check_external_services([facts(allowExternalServices=True), r], ExternalServicesConfig()) == []


def test_hub_ingresses_follow_their_own_setting() -> None:
    r = ingress("registry", stack=HUB)
    assert check_external_services([r], ExternalServicesConfig()) == []
    found = check_external_services([r], ExternalServicesConfig.from_config({"allowIngressOnHub": False}))
    assert len(found) == 1 and "allowIngressOnHub setting is false" in found[0].message
