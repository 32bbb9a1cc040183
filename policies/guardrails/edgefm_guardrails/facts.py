"""Site facts: what a site stack states about its appliance, read from the `edgefm-site-facts` ConfigMap.

Stack policies need facts the resources alone do not show (how many GPUs the nodes have, whether the site
may expose Services, which bucket holds the labelled data); the program publishes them in one ConfigMap
per site stack so the pack never has to re-derive placement.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from edgefm_guardrails.kube import is_kind
from edgefm_guardrails.model import (
    HUB_STACK,
    UNKNOWN,
    NotApplicable,
    Resource,
    Violation,
    as_mapping,
    get,
    site_of_stack,
    stack_of,
)

FACTS_NAME: Final = "edgefm-site-facts"
FACTS_NAMESPACE: Final = "edgefm-system"
FACTS_KEY: Final = "facts.json"
BUCKET_PURPOSES: Final = ("datasets", "models", "checkpoints")


@dataclass(frozen=True)
class SiteFacts:
    site: str
    region: str
    jurisdiction: str
    # Schedulable `nvidia.com/gpu` units: physical GPUs times time-slicing replicas or MIG instances.
    gpu_capacity: int
    allow_external_services: bool
    storage_endpoint: str
    buckets: Mapping[str, str] = field(default_factory=dict)
    physical_gpus: int | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    urn: str | None = None

    @property
    def storage_host(self) -> str:
        return (urlsplit(self.storage_endpoint).hostname or "").lower()


class FactsError(ValueError):
    """The facts ConfigMap is missing, unreadable or incomplete; the message says which."""


def find_facts_resource(resources: Sequence[Resource]) -> Resource | None:
    for r in resources:
        # The namespace may be another resource's output, unknown while that namespace is being created.
        if (
            is_kind(r, "core", "ConfigMap")
            and get(r.props, "metadata", "name") == FACTS_NAME
            and get(r.props, "metadata", "namespace") in (FACTS_NAMESPACE, UNKNOWN)
        ):
            return r
    return None


def _require(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], problems: list[str]) -> Any:
    value = doc.get(key)
    # bool is an int in Python; a count given as true/false is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        problems.append(f"{key} must be {expected}, got {value!r}")
        return None
    return value


def parse_facts(doc: Mapping[str, Any], urn: str | None = None) -> SiteFacts:
    problems: list[str] = []
    site = _require(doc, "site", str, problems)
    region = _require(doc, "region", str, problems)
    jurisdiction = _require(doc, "jurisdiction", str, problems)
    gpus = _require(doc, "gpuCapacity", int, problems)
    allow = _require(doc, "allowExternalServices", bool, problems)
    endpoint = _require(doc, "storageEndpoint", str, problems)
    buckets_raw = _require(doc, "buckets", Mapping, problems)
    buckets: dict[str, str] = {}
    if buckets_raw is not None:
        for purpose in BUCKET_PURPOSES:
            name = buckets_raw.get(purpose)
            if isinstance(name, str) and name:
                buckets[purpose] = name
            else:
                problems.append(f"buckets.{purpose} must name a bucket, got {name!r}")
    physical = doc.get("physicalGpus")
    if physical is not None and (not isinstance(physical, int) or isinstance(physical, bool) or physical < 0):
        problems.append(f"physicalGpus must be a non-negative integer, got {physical!r}")
        physical = None
    network = None
    if doc.get("network") is not None:
        try:
            network = ipaddress.ip_network(str(doc["network"]), strict=False)
        except ValueError:
            problems.append(f"network must be a CIDR block, got {doc['network']!r}")
    if isinstance(gpus, int) and gpus < 0:
        problems.append(f"gpuCapacity must not be negative, got {gpus}")
    if problems:
        raise FactsError("; ".join(problems))
    return SiteFacts(
        site=site,
        region=region,
        jurisdiction=jurisdiction,
        gpu_capacity=gpus,
        allow_external_services=allow,
        storage_endpoint=endpoint,
        buckets=buckets,
        physical_gpus=physical,
        network=network,
        urn=urn,
    )


def read_facts(resources: Sequence[Resource]) -> SiteFacts:
    """The site facts of a site stack; FactsError says why they cannot be read."""
    r = find_facts_resource(resources)
    if r is None:
        raise FactsError(f"no ConfigMap {FACTS_NAMESPACE}/{FACTS_NAME} in the stack")
    raw = get(r.props, "data", FACTS_KEY)
    if raw is UNKNOWN:
        raise FactsError(f"ConfigMap {FACTS_NAMESPACE}/{FACTS_NAME} data.{FACTS_KEY} is not known during preview")
    if not isinstance(raw, str):
        raise FactsError(f"ConfigMap {FACTS_NAMESPACE}/{FACTS_NAME} has no data.{FACTS_KEY}")
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FactsError(f"data.{FACTS_KEY} is not JSON: {exc}") from None
    return parse_facts(as_mapping(doc), r.urn)


def check_site_facts(resources: Sequence[Resource]) -> list[Violation]:
    """Site stacks publish readable facts for their own site; other policies depend on them."""
    stack = stack_of(resources)
    site = site_of_stack(stack)
    if site is None or site == HUB_STACK:
        raise NotApplicable("site facts are published by site stacks only")
    try:
        facts = read_facts(resources)
    except FactsError as exc:
        r = find_facts_resource(resources)
        return [
            Violation(f"site stack {stack}: {exc}; guardrails that need site facts cannot run", r.urn if r else None)
        ]
    out: list[Violation] = []
    if facts.site != site:
        out.append(
            Violation(
                f"ConfigMap {FACTS_NAMESPACE}/{FACTS_NAME} names site {facts.site!r}, but the stack is {stack}",
                facts.urn,
            )
        )
    return out
