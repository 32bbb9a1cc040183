"""Network policies admit only the site network: every workload a Service fronts is selected by a NetworkPolicy
that restricts ingress (CIS Kubernetes Benchmark 5.3.2), and no ingress rule admits a source outside the site
network (a rule without `from`, or an `ipBlock` beyond the site's CIDR). Peers chosen by pod or namespace
selectors are pods of the site's own cluster and are admitted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from edgefm_guardrails.facts import FactsError, SiteFacts, read_facts
from edgefm_guardrails.kube import is_kind, namespace, pod_template
from edgefm_guardrails.model import (
    UNKNOWN,
    NotApplicable,
    Resource,
    Violation,
    as_list,
    as_mapping,
    get,
    is_site_stack,
    stack_of,
)


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool | None:
    """Whether a LabelSelector selects these labels; None if the selector is unknown during preview."""
    if selector is UNKNOWN:
        return None
    sel = as_mapping(selector)
    for key, value in as_mapping(sel.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in as_list(sel.get("matchExpressions")):
        key, op, values = get(expr, "key"), get(expr, "operator"), as_list(get(expr, "values"))
        have = key in labels
        if op == "In" and not (have and labels[key] in values):
            return False
        if op == "NotIn" and have and labels[key] in values:
            return False
        if op == "Exists" and not have:
            return False
        if op == "DoesNotExist" and have:
            return False
    return True


def _restricts_ingress(policy: Resource) -> bool:
    types = as_list(get(policy.props, "spec", "policyTypes"))
    # Without policyTypes a policy restricts ingress always (and egress only if it has egress rules).
    return "Ingress" in types or not types


def _pod_labels(r: Resource) -> Mapping[str, Any]:
    kind = r.kind
    if kind == "Pod":
        return as_mapping(get(r.props, "metadata", "labels"))
    if kind == "CronJob":
        return as_mapping(get(r.props, "spec", "jobTemplate", "spec", "template", "metadata", "labels"))
    return as_mapping(get(r.props, "spec", "template", "metadata", "labels"))


def rule_problems(policy: Resource, facts: SiteFacts) -> Iterator[str]:
    for i, rule in enumerate(as_list(get(policy.props, "spec", "ingress"))):
        peers = get(rule, "from")
        if peers is UNKNOWN:
            continue
        if not as_list(peers):
            yield f"ingress[{i}] has no `from`, so it admits every source, off-site ones included"
            continue
        for j, peer in enumerate(as_list(peers)):
            cidr = get(peer, "ipBlock", "cidr")
            if cidr is None or cidr is UNKNOWN:
                continue
            where = f"ingress[{i}].from[{j}].ipBlock {cidr}"
            try:
                block = ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                yield f"{where} is not a CIDR block"
                continue
            if facts.network is None:
                yield f"{where} cannot be checked: the site facts give no network"
            elif block.version != facts.network.version or not block.subnet_of(facts.network):  # type: ignore[arg-type]
                yield f"{where} reaches beyond the site network {facts.network}"


def check_network_policies(resources: Sequence[Resource]) -> list[Violation]:
    stack = stack_of(resources)
    if not is_site_stack(stack):
        raise NotApplicable("network policies are judged against a site's network, on site stacks")
    try:
        facts = read_facts(resources)
    except FactsError as exc:
        raise NotApplicable(f"site facts unavailable ({exc}); see policy site-facts") from None
    policies = [r for r in resources if is_kind(r, "networking.k8s.io", "NetworkPolicy")]
    out: list[Violation] = []
    for p in policies:
        problems = list(rule_problems(p, facts))
        if problems:
            out.append(Violation(f"{p.label} admits sources outside site {facts.site}: {'; '.join(problems)}", p.urn))
    workloads = [r for r in resources if pod_template(r) is not None]
    for svc in (r for r in resources if is_kind(r, "core", "Service")):
        selector = get(svc.props, "spec", "selector")
        ns = get(svc.props, "metadata", "namespace")
        if selector is UNKNOWN or ns is UNKNOWN or not as_mapping(selector):
            continue  # a Service without a selector fronts no pods of this stack
        fronted = [
            w
            for w in workloads
            if namespace(w) == namespace(svc) and selector_matches({"matchLabels": selector}, _pod_labels(w))
        ]
        for w in fronted:
            covered = [
                p
                for p in policies
                if namespace(p) == namespace(w)
                and _restricts_ingress(p)
                and selector_matches(get(p.props, "spec", "podSelector"), _pod_labels(w)) is not False
            ]
            if not covered:
                out.append(
                    Violation(
                        f"{svc.label} fronts {w.label}, but no NetworkPolicy in namespace {namespace(w)} selects "
                        f"its pods and restricts ingress, so any source can reach them (CIS 5.3.2)",
                        svc.urn,
                    )
                )
    return out
