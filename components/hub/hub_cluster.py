"""HubCluster: the hub — model registry (S3 in an AWS account, or MinIO on the hub's own cluster) and the fleet
telemetry receiver with Grafana on the hub cluster. Nothing here depends on the list of sites: their access
(identity, telemetry login) belongs to the access shards (SiteAccessShard), so onboarding never changes the hub."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.hub.fleet_telemetry import FleetTelemetry, FleetTelemetryArgs
from components.hub.in_cluster_model_registry import InClusterModelRegistry, InClusterModelRegistryArgs
from components.hub.s3_model_registry import S3ModelRegistry, S3ModelRegistryArgs
from components.k8s.helm_controller import HelmController, HelmControllerArgs
from components.k8s.kube import kubernetes_provider, meta
from edgefm.model.config import HubSpec
from edgefm.model.profile import HubProfile
from edgefm.model.stacks import HUB_STACK

HUB_NAMESPACE = "edgefm-hub"


@dataclass
class HubClusterArgs:
    # The hub's validated spec, whole; `endpoint` is the DNS suffix of the hub ingress (registry.<endpoint>,
    # telemetry.<endpoint>, grafana.<endpoint>).
    hub: HubSpec
    versions: HubProfile
    grafana_admin_password: pulumi.Input[str]
    credential_seed: pulumi.Input[str] | None = None
    kubeconfig: pulumi.Input[str] | None = None
    render_dir: str | None = None


class HubCluster(pulumi.ComponentResource):
    registry_endpoint: str
    registry_bucket: pulumi.Input[str]
    # The AWS flavor's KMS key (sites may decrypt with it); None on the datacenter flavor.
    registry_key_arn: pulumi.Output[str] | None
    telemetry_host: str
    prometheus_service: str
    grafana_url: str
    namespace: str

    def __init__(self, name: str, args: HubClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:hub:HubCluster", name, None, opts)
        provider = kubernetes_provider(name, self, render_dir=args.render_dir, kubeconfig=args.kubeconfig)
        on_hub = pulumi.ResourceOptions(parent=self, providers=[provider])
        if args.hub.distribution == "kubernetes":
            HelmController(
                f"{name}-helm-controller",
                HelmControllerArgs(site=HUB_STACK, image=args.versions.helm_controller_image),
                on_hub,
            )
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=meta(HUB_NAMESPACE, HUB_STACK, "platform"),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )

        if args.hub.flavor == "aws":
            s3 = S3ModelRegistry(
                f"{name}-registry",
                S3ModelRegistryArgs(
                    bucket=args.hub.registry.bucket,
                    region=args.hub.region,
                    noncurrent_version_days=args.hub.registry.noncurrent_version_days,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            self.registry_endpoint, self.registry_bucket, self.registry_key_arn = (
                s3.endpoint,
                s3.bucket_name,
                s3.key_arn,
            )
        else:
            if args.credential_seed is None:
                raise ValueError(f"{name}: the datacenter flavor derives site keys from a credential seed")
            minio = InClusterModelRegistry(
                f"{name}-registry",
                InClusterModelRegistryArgs(
                    bucket=args.hub.registry.bucket,
                    host=f"registry.{args.hub.endpoint}",
                    namespace=ns.metadata.name,
                    credential_seed=args.credential_seed,
                    chart=args.versions.minio_chart,
                    image=args.versions.minio_image,
                    kubectl_image=args.versions.kubectl_image,
                    mc_image=args.versions.mc_image,
                    size_gi=args.hub.registry.size_gi,
                    noncurrent_version_days=args.hub.registry.noncurrent_version_days,
                ),
                on_hub,
            )
            self.registry_endpoint, self.registry_bucket = minio.endpoint, args.hub.registry.bucket
            self.registry_key_arn = None

        telemetry = FleetTelemetry(
            f"{name}-telemetry",
            FleetTelemetryArgs(
                namespace=ns.metadata.name,
                telemetry_host=f"telemetry.{args.hub.endpoint}",
                grafana_host=f"grafana.{args.hub.endpoint}",
                prometheus_chart=args.versions.prometheus_chart,
                grafana_chart=args.versions.grafana_chart,
                retention_days=args.hub.telemetry.retention_days,
                size_gi=args.hub.telemetry.size_gi,
                grafana_admin_password=args.grafana_admin_password,
            ),
            on_hub,
        )
        self.telemetry_host, self.grafana_url = telemetry.telemetry_host, telemetry.grafana_url
        self.prometheus_service = telemetry.prometheus_service
        self.namespace = HUB_NAMESPACE
        self.register_outputs(
            {
                "registryEndpoint": self.registry_endpoint,
                "registryBucket": self.registry_bucket,
                "telemetryHost": self.telemetry_host,
                "grafanaUrl": self.grafana_url,
            }
        )
