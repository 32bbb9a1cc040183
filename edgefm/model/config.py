"""Stack config models: what a user writes in `stacks/Pulumi.<stack>.yaml`, validated at the edge."""

from __future__ import annotations

from typing import Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from edgefm.model.fields import (
    BUCKET_NAME,
    HOST_NAME,
    LABEL_VALUE,
    DnsLabel,
    IpAddress,
    IpNetwork,
    Jurisdiction,
    Model,
    Region,
)
from edgefm.model.problems import KeyedError, Loc

# GPUs the appliances ship with: the model name a node declares, and whether it can be split with MIG.
GPU_MODELS: dict[str, bool] = {
    "A2": False,
    "A10": False,
    "A16": False,
    "A30": True,
    "A40": False,
    "A100": True,
    "H100": True,
    "H200": True,
    "L4": False,
    "L40": False,
    "L40S": False,
    "T4": False,
    "RTX-6000-ADA": False,
}
MAX_GPUS_PER_NODE = 16
# Site names the hub keeps for itself: `hub` is the hub's stack and the `edgefm.io/site` value of its objects
# (a site of that name would be taken for the hub by the guardrails), and `edgefm` prefixes the hub's own
# namespaces and buckets (`edgefm-hub`, `edgefm-models`), which a site's `<name>-models` would shadow.
RESERVED_SITE_NAMES: Final = {
    "hub": "it names the hub's stack and the site label of the hub's objects",
    "edgefm": "it prefixes the hub's own namespaces and buckets (edgefm-hub, edgefm-models)",
}


class Node(Model):
    """One appliance node."""

    name: DnsLabel
    address: IpAddress
    gpus: int = Field(default=0, ge=0, le=MAX_GPUS_PER_NODE)
    gpu_model: str | None = None

    @field_validator("gpu_model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None and value not in GPU_MODELS:
            raise ValueError(f"unknown GPU model {value!r}; known: {', '.join(sorted(GPU_MODELS))}")
        return value

    @model_validator(mode="after")
    def _count_and_model_together(self) -> Self:
        if self.gpus and self.gpu_model is None:
            raise KeyedError([(("gpuModel",), f"node {self.name} has {self.gpus} GPUs but no gpuModel")])
        if self.gpu_model is not None and not self.gpus:
            raise KeyedError([(("gpus",), f"node {self.name} names gpuModel {self.gpu_model} but gpus is 0")])
        return self


class ClusterSpec(Model):
    """How the site's Kubernetes comes to be: bootstrapped k3s on the nodes, or an existing cluster."""

    mode: Literal["k3s", "existing"] = "k3s"
    distribution: Literal["k3s", "kubernetes", "openshift"] = "k3s"
    # Address the API server is reached on; defaults to the first node.
    api_address: IpAddress | None = None

    @model_validator(mode="after")
    def _mode_matches_distribution(self) -> Self:
        if self.mode == "k3s" and self.distribution != "k3s":
            message = f"mode k3s bootstraps k3s; distribution {self.distribution} needs mode existing"
            raise KeyedError([(("distribution",), message)])
        return self


class SiteSpec(Model):
    """`edgefm:site`: the few lines that onboard a site; placement decides the rest."""

    name: DnsLabel
    region: Region
    jurisdiction: Jurisdiction
    labels: dict[DnsLabel, LABEL_VALUE] = Field(default_factory=dict)
    network: IpNetwork
    nodes: list[Node] = Field(min_length=1, max_length=9)
    cluster: ClusterSpec = ClusterSpec()
    ssh_user: DnsLabel = "edgefm"
    # Whether this site's network team allows Services exposed outside the cluster (LoadBalancer/NodePort).
    allow_external_services: bool = False
    # Dotted profile keys the site sets itself; allowed only where a matching profile marks them overridable.
    overrides: dict[str, object] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        why = RESERVED_SITE_NAMES.get(value)
        if why is not None:
            raise ValueError(f"site name {value!r} is reserved by the hub: {why}")
        return value

    @model_validator(mode="after")
    def _nodes_consistent(self) -> Self:
        # Each problem at the key that has to change: the later duplicate, the address outside the network.
        problems: list[tuple[Loc, str]] = []
        seen_names: dict[str, int] = {}
        seen_addresses: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.name in seen_names:
                problems.append(
                    (("nodes", i, "name"), f"duplicate node name {node.name} (also nodes[{seen_names[node.name]}])")
                )
            seen_names.setdefault(node.name, i)
            address = str(node.address)
            if address in seen_addresses:
                problems.append(
                    (
                        ("nodes", i, "address"),
                        f"duplicate node address {address} (also nodes[{seen_addresses[address]}])",
                    )
                )
            seen_addresses.setdefault(address, i)
            if node.address not in self.network:
                problems.append(
                    (
                        ("nodes", i, "address"),
                        f"node {node.name} address {node.address} is outside the site network {self.network}",
                    )
                )
        if self.cluster.mode == "k3s" and len(self.nodes) % 2 == 0:
            # Embedded etcd needs an odd number of servers to keep quorum through one failure.
            problems.append(
                (("nodes",), f"k3s with embedded etcd needs an odd number of server nodes, got {len(self.nodes)}")
            )
        if self.cluster.api_address is not None and self.cluster.api_address not in self.network:
            problems.append(
                (("cluster", "apiAddress"), f"{self.cluster.api_address} is outside the site network {self.network}")
            )
        if problems:
            raise KeyedError(problems)
        return self

    @property
    def gpu_total(self) -> int:
        return sum(n.gpus for n in self.nodes)

    @property
    def gpu_models(self) -> list[str]:
        return sorted({n.gpu_model for n in self.nodes if n.gpu_model})

    @property
    def api_address(self) -> str:
        return str(self.cluster.api_address or self.nodes[0].address)


class RegistrySpec(Model):
    bucket: str = Field(pattern=BUCKET_NAME)
    # Old object versions are kept this long, so a bad publish can be rolled back and then expires.
    noncurrent_version_days: int = Field(default=90, ge=1, le=3650)
    size_gi: int = Field(default=500, ge=10, le=100_000)


class TelemetrySpec(Model):
    retention_days: int = Field(default=30, ge=1, le=3650)
    size_gi: int = Field(default=200, ge=10, le=100_000)


class HubSpec(Model):
    """`edgefm:hub`: where the model registry and the fleet's telemetry live."""

    flavor: Literal["aws", "datacenter"]
    # The hub's own Kubernetes (telemetry on both flavors, the registry on datacenter).
    distribution: Literal["k3s", "kubernetes"] = "kubernetes"
    region: Region
    jurisdiction: Jurisdiction
    registry: RegistrySpec
    telemetry: TelemetrySpec = TelemetrySpec()
    # Public address sites use to reach the hub's ingress (registry for datacenter flavor, remote-write).
    endpoint: str = Field(pattern=HOST_NAME, max_length=253)
