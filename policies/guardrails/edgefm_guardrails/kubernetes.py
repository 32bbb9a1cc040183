"""Kubernetes workload hygiene: resource requests and limits, and exposure outside the cluster (LoadBalancer and
NodePort Services, externalIPs, Ingresses, Routes, Gateways) only where the site allows it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from edgefm_guardrails.config import ExternalServicesConfig, ResourcesConfig
from edgefm_guardrails.facts import FactsError, read_facts
from edgefm_guardrails.kube import is_kind, workload_containers
from edgefm_guardrails.model import (
    HUB_STACK,
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

_SUFFIXES: Final = {
    **{s: Decimal(2) ** (10 * (i + 1)) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("K", 3), ("M", 6))},
    **{s: Decimal(10) ** e for s, e in (("G", 9), ("T", 12), ("P", 15), ("E", 18))},
}
_QUANTITY = re.compile(r"^(?P<num>[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)(?P<suffix>[KMGTPE]i|[numkKMGTPE])?$")
EXTERNAL_SERVICE_TYPES: Final = ("LoadBalancer", "NodePort")


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity (`500m`, `16Gi`, `2`, `1e3`) as a number; None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    m = _QUANTITY.match(value.strip())
    if m is None:
        return None
    try:
        number = Decimal(m.group("num"))
    except InvalidOperation:
        return None
    suffix = m.group("suffix")
    return number * _SUFFIXES[suffix] if suffix else number


def check_requests_and_limits(r: Resource, cfg: ResourcesConfig) -> list[Violation]:
    out: list[Violation] = []
    for _tmpl, c in workload_containers(r):
        if c.field == "ephemeralContainers":
            continue  # debugging containers may not set resources (the API forbids it)
        resources = get(c.spec, "resources")
        if resources is UNKNOWN:
            continue
        requests = as_mapping(get(resources, "requests"))
        limits = as_mapping(get(resources, "limits"))
        missing_req = [k for k in cfg.required_requests if requests.get(k) in (None, "")]
        missing_lim = [k for k in cfg.required_limits if limits.get(k) in (None, "")]
        if missing_req:
            out.append(
                Violation(f"{r.label}: {c.label} declares no resource requests for {', '.join(missing_req)}", r.urn)
            )
        if missing_lim:
            out.append(
                Violation(f"{r.label}: {c.label} declares no resource limits for {', '.join(missing_lim)}", r.urn)
            )
        for key, req in requests.items():
            lim = limits.get(key)
            req_q, lim_q = parse_quantity(req), parse_quantity(lim)
            if req_q is not None and lim_q is not None and req_q > lim_q:
                out.append(Violation(f"{r.label}: {c.label} requests {key} {req} above its limit {lim}", r.urn))
    return out


# Objects that publish a Service outside the cluster by name (HTTP routing at the edge of the cluster).
INGRESS_KINDS: Final = (
    ("networking.k8s.io", "Ingress"),
    ("route.openshift.io", "Route"),
    ("gateway.networking.k8s.io", "Gateway"),
)


def _service_exposure(svc: Resource) -> list[str]:
    how: list[str] = []
    svc_type = get(svc.props, "spec", "type")
    if svc_type in EXTERNAL_SERVICE_TYPES:
        how.append(f"is of type {svc_type}")
    ips = [ip for ip in as_list(get(svc.props, "spec", "externalIPs")) if isinstance(ip, str)]
    if ips:
        how.append(f"lists externalIPs {', '.join(ips)}")
    return how


def check_external_services(resources: Sequence[Resource], cfg: ExternalServicesConfig) -> list[Violation]:
    """Stack check: exposure is a site fact (allowExternalServices), so it needs the facts ConfigMap."""
    stack = stack_of(resources)
    if stack == HUB_STACK:
        allow_services, why = cfg.allow_on_hub, "the pack's allowOnHub setting is false"
        allow_ingress, why_ingress = cfg.allow_ingress_on_hub, "the pack's allowIngressOnHub setting is false"
    elif is_site_stack(stack):
        try:
            facts = read_facts(resources)
        except FactsError as exc:
            raise NotApplicable(f"site facts unavailable ({exc}); see policy site-facts") from None
        allow_services = allow_ingress = facts.allow_external_services
        why = why_ingress = f"site {facts.site} does not allow external services"
    else:
        raise NotApplicable(f"stack {stack!r} is neither the hub nor a site-<name> stack")
    out: list[Violation] = []
    if not allow_services:
        for svc in (r for r in resources if is_kind(r, "core", "Service")):
            for how in _service_exposure(svc):
                out.append(Violation(f"{svc.label} {how} but {why}; use ClusterIP", svc.urn))
    if not allow_ingress:
        for r in resources:
            if any(is_kind(r, group, kind) for group, kind in INGRESS_KINDS):
                out.append(Violation(f"{r.label} exposes Services outside the cluster but {why_ingress}", r.urn))
    return out
