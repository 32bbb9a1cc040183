"""GpuOperator: NVIDIA GPU Operator (driver, container toolkit, device plugin, DCGM exporter, MIG manager),
with time-slicing or MIG as the profile says. HelmChart on k3s/Kubernetes, OLM on OpenShift."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.k8s.addons import helm_chart, namespace, olm_subscription
from components.k8s.kube import meta
from edgefm.model.profile import GpuOperatorSettings, OlmRef

GPU_OPERATOR_NAMESPACE = "gpu-operator"
OPENSHIFT_NAMESPACE = "nvidia-gpu-operator"
SHARING_CONFIG = "edgefm-gpu-sharing"
NFD = OlmRef(package="nfd", channel="stable", source="redhat-operators", starting_csv="nfd.4.17.0-202501140935")

MIG_CONFIG_LABEL = "nvidia.com/mig.config"

# k3s runs its own containerd; the toolkit must write k3s's config template and use k3s's socket.
K3S_TOOLKIT_ENV = [
    {"name": "CONTAINERD_CONFIG", "value": "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl"},
    {"name": "CONTAINERD_SOCKET", "value": "/run/k3s/containerd/containerd.sock"},
    {"name": "CONTAINERD_RUNTIME_CLASS", "value": "nvidia"},
    {"name": "CONTAINERD_SET_AS_DEFAULT", "value": "true"},
]


@dataclass
class GpuOperatorArgs:
    site: str
    distribution: Literal["k3s", "kubernetes", "openshift"]
    settings: GpuOperatorSettings
    # The site's GPU nodes: in MIG mode each is labelled with the layout the MIG manager applies to it.
    gpu_nodes: Sequence[str] = ()


def sharing_config(settings: GpuOperatorSettings) -> dict[str, Any] | None:
    """Device-plugin config for time-slicing: each GPU advertised as `replicas` schedulable GPUs."""
    sharing = settings.sharing
    if sharing.mode != "time-slicing":
        return None
    return {
        "version": "v1",
        "flags": {"migStrategy": "none"},
        "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": sharing.replicas}]}},
    }


def _mig_manager(s: GpuOperatorSettings) -> dict[str, Any]:
    if s.sharing.mode != "mig":
        return {"enabled": False}
    # The operator's own schema allows only `all-disabled` or "" as the default layout: the layout itself is
    # chosen per node by its `nvidia.com/mig.config` label, which the component sets on every GPU node.
    return {"enabled": True, "config": {"default": "all-disabled"}}


def chart_values(args: GpuOperatorArgs) -> dict[str, Any]:
    s = args.settings
    values: dict[str, Any] = {
        "operator": {"defaultRuntime": "containerd"},
        "driver": {"enabled": s.driver.enabled, "version": s.driver.version},
        "toolkit": {"enabled": s.toolkit_enabled},
        "dcgmExporter": {"enabled": True, "serviceMonitor": {"enabled": False}},
        "nfd": {"enabled": True},
        "mig": {"strategy": "single" if s.sharing.mode == "mig" else "none"},
        "migManager": _mig_manager(s),
    }
    if args.distribution == "k3s":
        values["toolkit"]["env"] = K3S_TOOLKIT_ENV
    if s.sharing.mode == "time-slicing":
        values["devicePlugin"] = {"config": {"name": SHARING_CONFIG, "default": "any"}}
    return values


def cluster_policy_spec(args: GpuOperatorArgs) -> dict[str, Any]:
    """The same choices as ClusterPolicy fields, for the OLM-installed operator on OpenShift."""
    s = args.settings
    spec: dict[str, Any] = {
        "operator": {"defaultRuntime": "crio"},
        "driver": {"enabled": s.driver.enabled},
        "toolkit": {"enabled": s.toolkit_enabled},
        "dcgm": {"enabled": True},
        "dcgmExporter": {"enabled": True},
        "devicePlugin": {"enabled": True},
        "gfd": {"enabled": True},
        "nodeStatusExporter": {"enabled": True},
        "daemonsets": {"updateStrategy": "RollingUpdate"},
        "mig": {"strategy": "single" if s.sharing.mode == "mig" else "none"},
        "migManager": _mig_manager(s),
    }
    if s.sharing.mode == "time-slicing":
        spec["devicePlugin"]["config"] = {"name": SHARING_CONFIG, "default": "any"}
    return spec


class GpuOperator(pulumi.ComponentResource):
    namespace: str

    def __init__(self, name: str, args: GpuOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:GpuOperator", name, None, opts)
        site, comp = args.site, "gpu-operator"
        child = pulumi.ResourceOptions(parent=self)
        openshift = args.distribution == "openshift"
        self.namespace = OPENSHIFT_NAMESPACE if openshift else GPU_OPERATOR_NAMESPACE
        ns = namespace(self.namespace, site, comp, child, privileged=True)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])

        config = sharing_config(args.settings)
        if config is not None:
            k8s.core.v1.ConfigMap(
                f"{name}-sharing",
                metadata=meta(SHARING_CONFIG, site, comp, self.namespace),
                data={"any": yaml.safe_dump(config, sort_keys=True)},
                opts=in_ns,
            )
        if openshift:
            nfd_ns = namespace("openshift-nfd", site, comp, child)
            nfd = olm_subscription(
                f"{name}-nfd",
                operator=NFD,
                namespace="openshift-nfd",
                site=site,
                component=comp,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[nfd_ns]),
            )
            sub = olm_subscription(
                f"{name}-subscription",
                operator=args.settings.olm,
                namespace=self.namespace,
                site=site,
                component=comp,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, nfd]),
            )
            k8s.apiextensions.CustomResource(
                f"{name}-cluster-policy",
                api_version="nvidia.com/v1",
                kind="ClusterPolicy",
                metadata=meta("gpu-cluster-policy", site, comp),
                spec=cluster_policy_spec(args),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[sub]),
            )
        else:
            helm_chart(
                f"{name}-chart",
                chart=args.settings.chart,
                target_namespace=self.namespace,
                values=chart_values(args),
                site=site,
                component=comp,
                opts=in_ns,
            )
        layout = args.settings.sharing.mig_profile  # set exactly when the mode is mig (the profile checks)
        if args.settings.sharing.mode == "mig" and layout is not None:
            for node in args.gpu_nodes:
                # A server-side-apply patch: only this label is owned here; the node stays the cluster's.
                k8s.core.v1.NodePatch(
                    f"{name}-mig-{node}",
                    metadata=k8s.meta.v1.ObjectMetaPatchArgs(name=node, labels={MIG_CONFIG_LABEL: layout}),
                    opts=child,
                )
        self.register_outputs({"namespace": self.namespace})
