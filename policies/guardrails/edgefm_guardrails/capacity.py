"""Capacity: the GPUs a site's workloads may hold at once (replicas x per-pod `nvidia.com/gpu`) fit the
appliance. Counts every workload in the stack, as if all ran together: a fine-tuning Job that starts while
Triton holds every GPU would sit Pending until its deadline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from edgefm_guardrails.config import CapacityConfig
from edgefm_guardrails.facts import FactsError, read_facts
from edgefm_guardrails.kube import containers, helm_values, pod_template
from edgefm_guardrails.kubernetes import parse_quantity
from edgefm_guardrails.model import (
    UNKNOWN,
    NotApplicable,
    Resource,
    Violation,
    as_mapping,
    get,
    is_site_stack,
    stack_of,
)

GPU_RESOURCE: Final = "nvidia.com/gpu"
# MIG "mixed" strategy advertises one resource per profile; each instance is one schedulable slice.
MIG_RESOURCE_PREFIX: Final = "nvidia.com/mig-"


@dataclass(frozen=True)
class GpuDemand:
    resource: Resource
    replicas: int
    per_pod: int
    where: str = ""  # for chart values: which block of the values

    @property
    def total(self) -> int:
        return self.replicas * self.per_pod

    def describe(self) -> str:
        where = f" {self.where}" if self.where else ""
        return f"{self.resource.label}{where} {self.replicas}x{self.per_pod}"


def _is_gpu(key: Any) -> bool:
    return key == GPU_RESOURCE or str(key).startswith(MIG_RESOURCE_PREFIX)


def resource_gpus(resources: Any) -> int | None:
    """GPUs a `resources` block holds: limits, or requests where a limit is missing (the API makes extended
    resources' requests equal their limits, so either names the count); None if unknown during preview."""
    if resources is UNKNOWN:
        return None
    counts: dict[str, Decimal] = {}
    for part in ("requests", "limits"):
        block = get(resources, part)
        if block is UNKNOWN:
            return None
        for key, value in as_mapping(block).items():
            if not _is_gpu(key):
                continue
            if value is UNKNOWN:
                return None
            q = parse_quantity(value)
            if q is not None:
                counts[str(key)] = max(counts.get(str(key), Decimal(0)), q)
    return int(sum(counts.values(), Decimal(0)))


def _gpus(spec: Mapping[str, Any]) -> int | None:
    """GPUs one container holds; None if unknown during preview."""
    return resource_gpus(get(spec, "resources"))


def pod_gpus(spec: Mapping[str, Any]) -> int | None:
    """A pod's effective GPU need: init containers run one at a time before the app containers start."""
    init: list[int] = []
    app: list[int] = []
    for c in containers(spec):
        n = _gpus(c.spec)
        if n is None:
            return None
        if c.field == "initContainers":
            init.append(n)
        elif c.field == "containers":
            app.append(n)
    return max([sum(app), *init])


_REPLICA_KEYS: Final = ("replicaCount", "replicas")


def _replicas(node: Mapping[str, Any]) -> int | None:
    for key in _REPLICA_KEYS:
        value = node.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def chart_gpus(values: Any) -> list[tuple[str, int, int]]:
    """(path, replicas, per pod) for every `resources` block in a chart's values that holds GPUs.

    Replicas come from `replicaCount`/`replicas` beside the block, else from the values' top level, else 1.
    """
    top = _replicas(values) if isinstance(values, Mapping) else None
    found: list[tuple[str, int, int]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            gpus = resource_gpus(node.get("resources")) if isinstance(node.get("resources"), Mapping) else 0
            if gpus:
                replicas = _replicas(node) or top or 1
                found.append((f"{path}.resources" if path else "resources", replicas, gpus))
            for key, child in node.items():
                if key != "resources":
                    walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}[{i}]")

    walk(values, "")
    return found


def gpu_demands(resources: Sequence[Resource], nodes_per_site: int) -> tuple[list[GpuDemand], list[Resource]]:
    """(known demands, workloads whose demand is unknown during preview)."""
    demands: list[GpuDemand] = []
    unknown: list[Resource] = []
    for r in resources:
        for where, values in helm_values(r):
            for path, count, gpus in chart_gpus(values):
                demands.append(GpuDemand(r, count, gpus, f"{where} {path}"))
        tmpl = pod_template(r)
        if tmpl is None:
            continue
        per_pod = pod_gpus(tmpl.spec)
        if per_pod is None or tmpl.replicas is None:
            unknown.append(r)
            continue
        if per_pod == 0:
            continue
        replicas = nodes_per_site if tmpl.per_node else tmpl.replicas
        demands.append(GpuDemand(r, replicas, per_pod))
    return demands, unknown


def check_gpu_capacity(resources: Sequence[Resource], cfg: CapacityConfig) -> list[Violation]:
    stack = stack_of(resources)
    if not is_site_stack(stack):
        raise NotApplicable("GPU capacity is checked on site stacks only")
    try:
        facts = read_facts(resources)
    except FactsError as exc:
        raise NotApplicable(f"site facts unavailable ({exc}); see policy site-facts") from None
    demands, _unknown = gpu_demands(resources, cfg.nodes_per_site)
    wanted = sum(d.total for d in demands)
    capacity = facts.gpu_capacity
    if wanted <= capacity:
        return []
    physical = facts.physical_gpus
    slices = f" ({physical} physical, shared)" if physical is not None and physical != capacity else ""
    detail = ", ".join(d.describe() for d in sorted(demands, key=lambda d: -d.total))
    message = (
        f"site {facts.site}: workloads request {wanted} GPUs ({detail}) but the appliance has "
        f"{capacity} schedulable GPUs{slices}"
    )
    # Attach to the largest consumer so the preview shows it beside a resource that has to shrink.
    largest = max(demands, key=lambda d: d.total)
    return [Violation(message, largest.resource.urn)]
