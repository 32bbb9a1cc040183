"""Monitoring: a Prometheus agent that scrapes the site (node exporter, Triton, DCGM on GPU sites) and
remote-writes to the hub with external labels naming the site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.k8s.addons import helm_chart
from components.k8s.kube import SYSTEM_NAMESPACE, container_security, meta, pod_security, selector
from edgefm.model.profile import MonitoringSettings

AGENT_SECRET = "prometheus-remote-write"


@dataclass
class MonitoringArgs:
    site: str
    region: str
    tier: str
    jurisdiction: str
    distribution: Literal["k3s", "kubernetes", "openshift"]
    settings: MonitoringSettings
    remote_write_url: pulumi.Input[str]
    remote_write_username: pulumi.Input[str]
    remote_write_password: pulumi.Input[str]
    # Namespace of the GPU operator's DCGM exporter, or None on CPU-only sites.
    dcgm_namespace: str | None
    namespace: pulumi.Input[str] = SYSTEM_NAMESPACE


def agent_config(args: MonitoringArgs, remote_write_url: str) -> dict[str, Any]:
    """prometheus.yml for agent mode: scrape locally, keep nothing, forward everything to the hub."""

    def pods(job: str, namespaces: list[str] | None = None) -> dict[str, Any]:
        sd: dict[str, Any] = {"role": "pod"}
        if namespaces:
            sd["namespaces"] = {"names": namespaces}
        return {
            "job_name": job,
            "kubernetes_sd_configs": [sd],
            "relabel_configs": [
                {
                    "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                    "regex": "true",
                    "action": "keep",
                },
                {
                    "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                    "regex": r"([^:]+)(?::\d+)?;(\d+)",
                    "replacement": "$1:$2",
                    "target_label": "__address__",
                },
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            ],
        }

    scrape = [
        pods("edgefm-pods"),
        _endpoints_job("node-exporter", "prometheus-node-exporter", SYSTEM_NAMESPACE),
    ]
    if args.dcgm_namespace:
        scrape.append(_endpoints_job("dcgm-exporter", "nvidia-dcgm-exporter", args.dcgm_namespace))
    return {
        "global": {
            "scrape_interval": args.settings.scrape_interval,
            "external_labels": {
                "site": args.site,
                "region": args.region,
                "tier": args.tier,
                "jurisdiction": args.jurisdiction,
            },
        },
        "scrape_configs": scrape,
        "remote_write": [
            {
                "url": remote_write_url,
                "basic_auth": {
                    "username_file": "/etc/edgefm/remote-write/username",
                    "password_file": "/etc/edgefm/remote-write/password",
                },
                # Sites ride flaky uplinks: queue generously and retry rather than drop samples.
                "queue_config": {
                    "capacity": 20000,
                    "max_shards": 10,
                    "max_samples_per_send": 2000,
                    "min_backoff": "1s",
                    "max_backoff": "2m",
                },
            }
        ],
    }


def _endpoints_job(job: str, service: str, namespace: str) -> dict[str, Any]:
    return {
        "job_name": job,
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": [namespace]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_service_name"], "regex": service, "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
        ],
    }


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:Monitoring", name, None, opts)
        site, comp, ns = args.site, "monitoring", args.namespace
        child = pulumi.ResourceOptions(parent=self)
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta(name, site, comp, ns), opts=child)
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-role",
            metadata=meta(f"{name}-{site}", site, comp),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""],
                    resources=["nodes", "nodes/metrics", "services", "endpoints", "pods"],
                    verbs=["get", "list", "watch"],
                ),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["discovery.k8s.io"],
                    resources=["endpointslices"],
                    verbs=["get", "list", "watch"],
                ),
            ],
            opts=child,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-binding",
            metadata=meta(f"{name}-{site}", site, comp),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role.metadata.name
            ),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=sa.metadata.name, namespace=ns)],
            opts=child,
        )
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta(f"{name}-config", site, comp, ns),
            data={
                "prometheus.yml": pulumi.Output.from_input(args.remote_write_url).apply(
                    lambda url: yaml.safe_dump(agent_config(args, url), sort_keys=True)
                )
            },
            opts=child,
        )
        creds = k8s.core.v1.Secret(
            f"{name}-remote-write",
            metadata=meta(AGENT_SECRET, site, comp, ns),
            string_data={
                "username": args.remote_write_username,
                "password": pulumi.Output.secret(args.remote_write_password),
            },
            opts=child,
        )
        match = selector(site, comp)
        s = args.settings
        k8s.apps.v1.Deployment(
            f"{name}-agent",
            metadata=meta(f"{name}-agent", site, comp, ns),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=meta(f"{name}-agent", site, comp),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=sa.metadata.name,
                        # The Prometheus image's own user (nobody); its token is used for service discovery.
                        security_context=pod_security(65534),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="prometheus",
                                image=s.prometheus_image,
                                args=[
                                    "--agent",
                                    "--config.file=/etc/prometheus/prometheus.yml",
                                    "--storage.agent.path=/prometheus",
                                ],
                                ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=9090)],
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "100m", "memory": "256Mi"},
                                    limits={"cpu": "1", "memory": "1Gi"},
                                ),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(name="config", mount_path="/etc/prometheus"),
                                    k8s.core.v1.VolumeMountArgs(
                                        name="remote-write",
                                        mount_path="/etc/edgefm/remote-write",
                                        read_only=True,
                                    ),
                                    k8s.core.v1.VolumeMountArgs(name="wal", mount_path="/prometheus"),
                                ],
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    http_get=k8s.core.v1.HTTPGetActionArgs(path="/-/ready", port=9090)
                                ),
                                security_context=container_security(),
                            )
                        ],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="config",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=config.metadata.name),
                            ),
                            k8s.core.v1.VolumeArgs(
                                name="remote-write",
                                secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=AGENT_SECRET),
                            ),
                            # The WAL buffers samples while the uplink is down.
                            k8s.core.v1.VolumeArgs(
                                name="wal", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="5Gi")
                            ),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[creds]),
        )
        if args.distribution != "openshift":
            # OpenShift runs its own node exporter in openshift-monitoring.
            helm_chart(
                f"{name}-node-exporter",
                chart=s.node_exporter_chart,
                target_namespace=SYSTEM_NAMESPACE,
                site=site,
                component=comp,
                values={
                    "fullnameOverride": "prometheus-node-exporter",
                    "podLabels": {"edgefm.io/site": site, "app.kubernetes.io/part-of": "edgefm"},
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "250m", "memory": "128Mi"},
                    },
                },
                opts=child,
            )
        self.register_outputs({})
