"""HubCluster: the hub — model registry (S3 in an AWS account, or MinIO on the hub's own cluster) with
read-only access per site, and the fleet telemetry receiver with Grafana on the hub cluster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components.fleet_telemetry import FleetTelemetry, FleetTelemetryArgs
from components.helm_controller import HelmController, HelmControllerArgs
from components.in_cluster_model_registry import InClusterModelRegistry, InClusterModelRegistryArgs
from components.kube import kubernetes_provider, meta
from components.registry_access import SiteCredential
from components.s3_model_registry import S3ModelRegistry, S3ModelRegistryArgs
from edgefm.profile import HubProfile

HUB_NAMESPACE = "edgefm-hub"


@dataclass
class HubClusterArgs:
    flavor: Literal["aws", "datacenter"]
    distribution: Literal["k3s", "kubernetes"]
    region: str
    # DNS suffix of the hub ingress: registry.<endpoint>, telemetry.<endpoint>, grafana.<endpoint>.
    endpoint: str
    registry_bucket: str
    noncurrent_version_days: int
    registry_size_gi: int
    telemetry_retention_days: int
    telemetry_size_gi: int
    versions: HubProfile
    sites: Sequence[str]
    grafana_admin_password: pulumi.Input[str]
    credential_seed: pulumi.Input[str] | None = None
    kubeconfig: pulumi.Input[str] | None = None
    render_dir: str | None = None


class HubCluster(pulumi.ComponentResource):
    registry_endpoint: str
    registry_bucket: pulumi.Input[str]
    remote_write_url: str
    grafana_url: str
    site_credentials: dict[str, SiteCredential]

    def __init__(self, name: str, args: HubClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:hub:HubCluster", name, None, opts)
        provider = kubernetes_provider(name, self, render_dir=args.render_dir, kubeconfig=args.kubeconfig)
        on_hub = pulumi.ResourceOptions(parent=self, providers=[provider])
        if args.distribution == "kubernetes":
            HelmController(
                f"{name}-helm-controller",
                HelmControllerArgs(site="hub", image=args.versions.helm_controller_image),
                on_hub,
            )
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=meta(HUB_NAMESPACE, "hub", "platform"),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )

        if args.flavor == "aws":
            s3 = S3ModelRegistry(
                f"{name}-registry",
                S3ModelRegistryArgs(
                    bucket=args.registry_bucket,
                    region=args.region,
                    sites=args.sites,
                    noncurrent_version_days=args.noncurrent_version_days,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            self.registry_endpoint, self.registry_bucket, self.site_credentials = (
                s3.endpoint,
                s3.bucket_name,
                s3.site_credentials,
            )
        else:
            if args.credential_seed is None:
                raise ValueError(f"{name}: the datacenter flavor derives site keys from a credential seed")
            minio = InClusterModelRegistry(
                f"{name}-registry",
                InClusterModelRegistryArgs(
                    bucket=args.registry_bucket,
                    host=f"registry.{args.endpoint}",
                    namespace=ns.metadata.name,
                    sites=args.sites,
                    credential_seed=args.credential_seed,
                    chart=args.versions.minio_chart,
                    image=args.versions.minio_image,
                    size_gi=args.registry_size_gi,
                    noncurrent_version_days=args.noncurrent_version_days,
                ),
                on_hub,
            )
            self.registry_endpoint, self.registry_bucket, self.site_credentials = (
                minio.endpoint,
                args.registry_bucket,
                minio.site_credentials,
            )

        telemetry = FleetTelemetry(
            f"{name}-telemetry",
            FleetTelemetryArgs(
                namespace=ns.metadata.name,
                telemetry_host=f"telemetry.{args.endpoint}",
                grafana_host=f"grafana.{args.endpoint}",
                prometheus_chart=args.versions.prometheus_chart,
                grafana_chart=args.versions.grafana_chart,
                retention_days=args.telemetry_retention_days,
                size_gi=args.telemetry_size_gi,
                grafana_admin_password=args.grafana_admin_password,
                site_credentials=self.site_credentials,
            ),
            on_hub,
        )
        self.remote_write_url, self.grafana_url = telemetry.remote_write_url, telemetry.grafana_url
        self.register_outputs(
            {
                "registryEndpoint": self.registry_endpoint,
                "registryBucket": self.registry_bucket,
                "remoteWriteUrl": self.remote_write_url,
                "grafanaUrl": self.grafana_url,
            }
        )
