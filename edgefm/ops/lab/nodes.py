"""What each lab cluster looks like: the fake nodes kwok runs for a site (mirroring its `nodes`), and the
controller stand-ins kwok plays besides the kubelet."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgefm.model.config import SiteSpec
from edgefm.model.placement import ResolvedSite

# The appliance spec names each node's GPUs but not its size; the lab gives every node this much.
NODE_CPU = "32"
NODE_MEMORY = "128Gi"
NODE_PODS = "110"
HUB_NODES = ("hub-1", "hub-2", "hub-3")
GPU_RESOURCE = "nvidia.com/gpu"
# The labels NVIDIA's GPU feature discovery puts on a node (the product name as the driver reports it).
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_REPLICAS_LABEL = "nvidia.com/gpu.replicas"
SITE_LABEL = "edgefm.io/site"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass(frozen=True)
class LabNode:
    name: str
    address: str
    labels: dict[str, str]
    gpus: int = 0
    # Schedulable `nvidia.com/gpu` the device plugin advertises: physical GPUs times sharing replicas.
    gpu_allocatable: int = 0

    def manifest(self) -> dict[str, Any]:
        resources = {"cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": NODE_PODS}
        if self.gpu_allocatable:
            resources[GPU_RESOURCE] = str(self.gpu_allocatable)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self.labels,
                # kwok manages nodes carrying this annotation; the kubelet's TTL annotation keeps lookups cheap.
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [
                    {"type": "InternalIP", "address": self.address},
                    {"type": "Hostname", "address": self.name},
                ],
            },
        }


@dataclass(frozen=True)
class ClusterPlan:
    stack: str
    nodes: list[LabNode] = field(default_factory=list)


def _base_labels(name: str, site: str, region: str) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/control-plane": "",
        "topology.kubernetes.io/region": region,
        SITE_LABEL: site,
        "type": "kwok",
    }


def gpu_product(model: str, shared: bool) -> str:
    """`nvidia.com/gpu.product` as GPU feature discovery writes it; time-sliced GPUs get `-SHARED`."""
    return f"NVIDIA-{model}" + ("-SHARED" if shared else "")


def site_plan(resolved: ResolvedSite) -> ClusterPlan:
    site: SiteSpec = resolved.site
    gpu = resolved.profile.gpu_operator
    # The device plugin advertises each physical GPU `replicas` times under time-slicing or MIG.
    replicas = gpu.sharing.replicas if gpu.enabled else 1
    shared = gpu.enabled and gpu.sharing.mode == "time-slicing"
    nodes: list[LabNode] = []
    for node in site.nodes:
        labels = _base_labels(node.name, site.name, site.region)
        if node.gpus and node.gpu_model:
            labels.update(
                {
                    "nvidia.com/gpu.present": "true",
                    GPU_PRODUCT_LABEL: gpu_product(node.gpu_model, shared),
                    GPU_COUNT_LABEL: str(node.gpus),
                    GPU_REPLICAS_LABEL: str(replicas),
                }
            )
        nodes.append(LabNode(node.name, str(node.address), labels, node.gpus, node.gpus * replicas))
    return ClusterPlan(resolved.stack, nodes)


def hub_plan(stack: str, region: str) -> ClusterPlan:
    nodes = [LabNode(n, f"10.255.0.{i + 1}", _base_labels(n, "hub", region)) for i, n in enumerate(HUB_NODES)]
    return ClusterPlan(stack, nodes)


# What a real cluster's controllers would write and the lab has no process for: the address of the ingress
# controller on Ingresses, and of the service load balancer (k3s's servicelb) on LoadBalancer Services. kwok
# plays them through stages, as it plays the kubelet; the address is the lab's own loopback.
CONTROLLER_STAGES = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: edgefm-lab-ingress-address
spec:
  resourceRef:
    apiGroup: networking.k8s.io/v1
    kind: Ingress
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.loadBalancer.ingress'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      loadBalancer:
        ingress:
        - ip: 127.0.0.1
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: edgefm-lab-service-load-balancer
spec:
  resourceRef:
    apiGroup: v1
    kind: Service
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.spec.type'
      operator: 'In'
      values:
      - 'LoadBalancer'
    - key: '.status.loadBalancer.ingress'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      loadBalancer:
        ingress:
        - ip: 127.0.0.1
"""
