"""NetworkPolicies admit only the site network, and every Service's pods are behind one."""

from __future__ import annotations

from typing import Any

import pytest
from edgefm_guardrails.model import UNKNOWN, NotApplicable, Resource
from edgefm_guardrails.network import check_network_policies, selector_matches

from tests.guardrails.guardrail_builders import HUB, SITE_STACK, container, deployment, facts, meta, resource

SELECT = {"app.kubernetes.io/component": "model-serving"}


def triton() -> Resource:
    d = deployment("triton", [container("triton")])
    d.props["spec"]["template"]["metadata"]["labels"].update(SELECT)
    return d


def svc(selector: dict[str, str] | None = None) -> Resource:
    props = {"metadata": meta("triton"), "spec": {"selector": SELECT if selector is None else selector}}
    return resource(SITE_STACK, "kubernetes:core/v1:Service", "triton-svc", props)


def netpol(ingress: list[dict[str, Any]], pod_selector: Any = None, types: list[str] | None = None) -> Resource:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": SELECT} if pod_selector is None else pod_selector}
    spec["ingress"] = ingress
    spec["policyTypes"] = ["Ingress"] if types is None else types
    return resource(
        SITE_STACK, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "triton", {"metadata": meta("t"), "spec": spec}
    )


# What ModelServing declares: the site network and the cluster's own pods on the serving ports.
SITE_RULE = {"from": [{"ipBlock": {"cidr": "10.20.0.0/24"}}, {"podSelector": {}}], "ports": [{"port": 8000}]}
MONITORING_RULE = {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edgefm-system"}}}]}


def test_the_serving_policy_passes() -> None:
    assert check_network_policies([facts(), triton(), svc(), netpol([SITE_RULE, MONITORING_RULE])]) == []


def test_a_narrower_block_inside_the_site_network_passes() -> None:
    rule = {"from": [{"ipBlock": {"cidr": "10.20.0.128/25", "except": ["10.20.0.200/32"]}}]}
    assert check_network_policies([facts(), triton(), svc(), netpol([rule])]) == []


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"ports": [{"port": 8000}]}, "ingress[0] has no `from`, so it admits every source"),
        ({"from": []}, "ingress[0] has no `from`"),
        ({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}, "ingress[0].from[0].ipBlock 0.0.0.0/0 reaches beyond"),
        ({"from": [{"podSelector": {}}, {"ipBlock": {"cidr": "10.20.0.0/16"}}]}, "from[1].ipBlock 10.20.0.0/16"),
        ({"from": [{"ipBlock": {"cidr": "2001:db8::/64"}}]}, "ipBlock 2001:db8::/64 reaches beyond the site network"),
        ({"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}, "is not a CIDR block"),
    ],
)
def test_rules_that_admit_off_site_sources(rule: dict[str, Any], fragment: str) -> None:
    policy = netpol([rule])
    found = check_network_policies([facts(), triton(), svc(), policy])
    assert len(found) == 1 and found[0].urn == policy.urn
    assert found[0].message.startswith("NetworkPolicy 'triton' in namespace edgefm admits sources outside site")
    assert fragment in found[0].message


def test_without_a_site_network_ip_blocks_cannot_be_shown_on_site() -> None:
    rule = {"from": [{"ipBlock": {"cidr": "10.20.0.0/24"}}]}
    found = check_network_policies([facts(network=None), triton(), svc(), netpol([rule])])
    assert "cannot be checked: the site facts give no network" in found[0].message


def test_a_service_whose_pods_no_policy_guards() -> None:
    s = svc()
    found = check_network_policies([facts(), triton(), s])
    assert [(v.message, v.urn) for v in found] == [
        (
            "Service 'triton-svc' in namespace edgefm fronts Deployment 'triton' in namespace edgefm, but no "
            "NetworkPolicy in namespace edgefm selects its pods and restricts ingress, so any source can reach "
            "them (CIS 5.3.2)",
            s.urn,
        )
    ]
    # A policy for other pods, or one that restricts only egress, does not cover them.
    other = netpol([SITE_RULE], pod_selector={"matchLabels": {"app.kubernetes.io/component": "other"}})
    egress_only = netpol([], types=["Egress"])
    assert len(check_network_policies([facts(), triton(), s, other, egress_only])) == 1
    # A namespace-wide default deny (empty podSelector) covers them.
    assert check_network_policies([facts(), triton(), s, netpol([], pod_selector={})]) == []


def test_services_without_pods_here_need_no_policy() -> None:
    assert check_network_policies([facts(), triton(), svc(selector={})]) == []
    assert check_network_policies([facts(), triton(), svc(selector={"app": "elsewhere"})]) == []


def test_selectors() -> None:
    labels = {"app": "triton", "tier": "serving"}
    assert selector_matches({"matchLabels": {"app": "triton"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "x"}}, labels)
    assert selector_matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["serving"]}]}, labels)
    assert not selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["serving"]}]}, labels
    )
    assert not selector_matches({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, labels)
    assert selector_matches({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, labels)
    assert selector_matches(UNKNOWN, labels) is None


def test_network_policies_are_judged_on_site_stacks() -> None:
    hub_svc = resource(HUB, "kubernetes:core/v1:Service", "s", {"metadata": meta("s", HUB), "spec": {}})
    with pytest.raises(NotApplicable):
        check_network_policies([hub_svc])
    with pytest.raises(NotApplicable, match="site-facts"):
        check_network_policies([triton(), svc()])
