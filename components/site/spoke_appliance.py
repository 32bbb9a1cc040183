"""SpokeAppliance: one edge site — its cluster, storage, GPU operator, model sync, fine-tuning, serving and
monitoring — composed from the site spec and its resolved placement profile."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.kube import SYSTEM_NAMESPACE, WORKLOAD_NAMESPACE, meta
from components.site.appliance_cluster import ApplianceCluster, ApplianceClusterArgs, ApplianceNode
from components.site.fine_tuning import FINETUNED_PREFIX, FineTuning, FineTuningArgs
from components.site.gpu_operator import GpuOperator, GpuOperatorArgs
from components.site.model_serving import ModelServing, ModelServingArgs
from components.site.model_sync import MIRROR_PREFIX, ModelSync, ModelSyncArgs, RegistryAccess
from components.site.monitoring import Monitoring, MonitoringArgs
from components.site.site_storage import SiteStorage, SiteStorageArgs, StorageTls
from components.site.site_tls import SiteTls, SiteTlsArgs
from edgefm.model.config import SiteSpec
from edgefm.model.profile import SiteProfile

FACTS_CONFIGMAP = "edgefm-site-facts"


@dataclass
class SpokeApplianceArgs:
    site: SiteSpec
    profile: SiteProfile
    registry: RegistryAccess
    remote_write_url: pulumi.Input[str]
    ssh_private_key: pulumi.Input[str] | None = None
    kubeconfig: pulumi.Input[str] | None = None
    render_dir: str | None = None
    # How the cluster is reached; None: as the site spec says. The fleet lab passes "existing" with its kubeconfig.
    cluster_mode: Literal["k3s", "existing"] | None = None


class SpokeAppliance(pulumi.ComponentResource):
    cluster: ApplianceCluster
    storage: SiteStorage
    gpu_operator: GpuOperator | None
    fine_tuning: FineTuning | None
    serving: ModelServing

    def __init__(self, name: str, args: SpokeApplianceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:SpokeAppliance", name, None, opts)
        site, prof = args.site, args.profile
        dist = site.cluster.distribution
        self.cluster = ApplianceCluster(
            f"{name}-cluster",
            ApplianceClusterArgs(
                site=site.name,
                mode=args.cluster_mode or site.cluster.mode,
                distribution=dist,
                nodes=[ApplianceNode(n.name, str(n.address)) for n in site.nodes],
                api_address=site.api_address,
                k3s=prof.cluster.k3s,
                helm_controller_image=prof.cluster.helm_controller_image,
                ssh_user=site.ssh_user,
                ssh_private_key=args.ssh_private_key,
                kubeconfig=args.kubeconfig,
                render_dir=args.render_dir,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        on_site = pulumi.ResourceOptions(parent=self, providers=[self.cluster.provider])
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=self.cluster.provider)
        system_ns = k8s.core.v1.Namespace(
            f"{name}-ns-system", metadata=meta(SYSTEM_NAMESPACE, site.name, "platform"), opts=k8s_opts
        )
        workload_ns = k8s.core.v1.Namespace(
            f"{name}-ns-workloads", metadata=meta(WORKLOAD_NAMESPACE, site.name, "platform"), opts=k8s_opts
        )
        system, workloads = system_ns.metadata.name, workload_ns.metadata.name

        tls = None
        if dist != "openshift":
            site_tls = SiteTls(
                f"{name}-tls", SiteTlsArgs(site=site.name, cert_manager_chart=prof.storage.cert_manager_chart), on_site
            )
            tls = StorageTls(site_tls.issuer, site_tls.ca_certificate)
        self.storage = SiteStorage(
            f"{name}-storage",
            SiteStorageArgs(
                site=site.name,
                distribution=dist,
                settings=prof.storage,
                node_count=len(site.nodes),
                tls=tls,
                workload_namespace=workloads,
                system_namespace=system,
            ),
            on_site,
        )
        buckets = self.storage.buckets

        self.gpu_operator = None
        if prof.gpu_operator.enabled:
            self.gpu_operator = GpuOperator(
                f"{name}-gpu",
                GpuOperatorArgs(
                    site=site.name,
                    distribution=dist,
                    settings=prof.gpu_operator,
                    gpu_nodes=[n.name for n in site.nodes if n.gpus],
                ),
                on_site,
            )
        gpu_slices = site.gpu_total * (prof.gpu_operator.sharing.replicas if prof.gpu_operator.enabled else 1)
        k8s.core.v1.ConfigMap(
            f"{name}-facts",
            metadata=meta(FACTS_CONFIGMAP, site.name, "platform", system),
            # What the site is, for in-cluster tools and the guardrail policies.
            data={
                "facts.json": json.dumps(
                    {
                        "site": site.name,
                        "region": site.region,
                        "jurisdiction": site.jurisdiction,
                        "physicalGpus": site.gpu_total,
                        "gpuCapacity": gpu_slices,
                        "allowExternalServices": site.allow_external_services,
                        "storageEndpoint": self.storage.endpoint,
                        "buckets": {p: b.bucket for p, b in buckets.items()},
                        "network": str(site.network),
                    },
                    sort_keys=True,
                )
            },
            opts=k8s_opts,
        )

        sync = ModelSync(
            f"{name}-model-sync",
            ModelSyncArgs(
                site=site.name,
                model=prof.model,
                settings=prof.model_sync,
                registry=args.registry,
                storage_endpoint=self.storage.endpoint,
                trust=self.storage.trust,
                models_bucket=buckets["models"],
                namespace=workloads,
            ),
            on_site,
        )
        self.fine_tuning = None
        repository_prefix = sync.prefix
        if prof.fine_tuning.enabled:
            self.fine_tuning = FineTuning(
                f"{name}-finetune",
                FineTuningArgs(
                    site=site.name,
                    settings=prof.fine_tuning,
                    model=prof.model,
                    base_prefix=sync.prefix,
                    mirror_prefix=MIRROR_PREFIX,
                    serving_model_name=prof.serving.model_name,
                    storage_endpoint=self.storage.endpoint,
                    trust=self.storage.trust,
                    datasets=buckets["datasets"],
                    models=buckets["models"],
                    checkpoints=buckets["checkpoints"],
                    tools_image=prof.model_sync.image,
                    namespace=workloads,
                ),
                on_site,
            )
            # Sites that fine-tune serve their own model; the others serve the hub's published one.
            repository_prefix = FINETUNED_PREFIX
        self.serving = ModelServing(
            f"{name}-triton",
            ModelServingArgs(
                site=site.name,
                settings=prof.serving,
                storage_endpoint=self.storage.endpoint,
                trust=self.storage.trust,
                models=buckets["models"],
                repository_prefix=repository_prefix,
                site_network=str(site.network),
                namespace=workloads,
            ),
            on_site,
        )
        Monitoring(
            f"{name}-monitoring",
            MonitoringArgs(
                site=site.name,
                region=site.region,
                tier=site.labels.get("tier", "unlabelled"),
                jurisdiction=site.jurisdiction,
                distribution=dist,
                settings=prof.monitoring,
                remote_write_url=args.remote_write_url,
                remote_write_username=args.registry.access_key_id,
                remote_write_password=args.registry.secret_access_key,
                dcgm_namespace=self.gpu_operator.namespace if self.gpu_operator else None,
                namespace=system,
            ),
            on_site,
        )
        self.register_outputs(
            {
                "kubeconfig": self.cluster.kubeconfig,
                "storageEndpoint": self.storage.endpoint,
                "tritonService": self.serving.service_name,
                "modelRepository": self.serving.repository,
            }
        )
