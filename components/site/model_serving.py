"""ModelServing: NVIDIA Triton Inference Server reading its model repository from the site bucket, on GPU or
CPU, with health probes, a PodDisruptionBudget and a NetworkPolicy limited to the site network."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.kube import (
    SYSTEM_NAMESPACE,
    WORKLOAD_NAMESPACE,
    container_security,
    meta,
    pod_security,
    selector,
)
from components.site.site_storage import BucketAccess, TrustBundle
from edgefm.model.profile import ServingSettings

HTTP, GRPC, METRICS = 8000, 8001, 8002
# The NGC Triton image's unprivileged triton-server user.
TRITON_UID = 1000


def triton_repository(endpoint: str, bucket: str, prefix: str) -> str:
    """Triton's S3 form for a non-AWS endpoint keeps the scheme: s3://http://host:port/bucket/prefix."""
    return f"s3://{endpoint}/{bucket}/{prefix.rstrip('/')}"


@dataclass
class ModelServingArgs:
    site: str
    settings: ServingSettings
    storage_endpoint: str
    trust: TrustBundle
    models: BucketAccess
    repository_prefix: str
    site_network: str
    namespace: pulumi.Input[str] = WORKLOAD_NAMESPACE
    monitoring_namespace: str = SYSTEM_NAMESPACE


class ModelServing(pulumi.ComponentResource):
    service_name: str
    repository: str

    def __init__(self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:ModelServing", name, None, opts)
        site, comp, s = args.site, "model-serving", args.settings
        child = pulumi.ResourceOptions(parent=self)
        match = selector(site, comp)
        self.repository = triton_repository(args.storage_endpoint, args.models.bucket, args.repository_prefix)
        self.service_name = name

        requests: dict[str, str] = {"cpu": s.cpu, "memory": s.memory}
        limits = dict(requests)
        if s.gpus_per_replica:
            limits["nvidia.com/gpu"] = str(s.gpus_per_replica)
        secret = k8s.core.v1.SecretKeySelectorArgs
        env = [
            k8s.core.v1.EnvVarArgs(
                name="AWS_ACCESS_KEY_ID",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=secret(name=args.models.secret_name, key=args.models.access_key_field)
                ),
            ),
            k8s.core.v1.EnvVarArgs(
                name="AWS_SECRET_ACCESS_KEY",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=secret(name=args.models.secret_name, key=args.models.secret_key_field)
                ),
            ),
            k8s.core.v1.EnvVarArgs(name="AWS_DEFAULT_REGION", value="us-east-1"),
        ]

        def probe(path: str, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
            return k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=HTTP),
                period_seconds=period,
                failure_threshold=failures,
                timeout_seconds=5,
            )

        # Triton's S3 client (libcurl) reads the system CA bundle only: an init container appends the site CA
        # to the image's own bundle, and Triton sees the result in place of the system file.
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        trust_init = k8s.core.v1.ContainerArgs(
            name="trust-site-ca",
            image=s.image,
            command=["/bin/sh", "-ec", f"cat {bundle} {args.trust.path} > /trust/ca-certificates.crt"],
            volume_mounts=[
                args.trust.mount(),
                k8s.core.v1.VolumeMountArgs(name="trust", mount_path="/trust"),
            ],
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "50m", "memory": "32Mi"}, limits={"cpu": "200m", "memory": "64Mi"}
            ),
            security_context=container_security(),
        )
        container = k8s.core.v1.ContainerArgs(
            name="triton",
            image=s.image,
            command=["tritonserver"],
            args=[
                f"--model-repository={self.repository}",
                # Poll so a fine-tuning run's new model version goes live without a restart.
                "--model-control-mode=poll",
                "--repository-poll-secs=60",
                "--strict-readiness=true",
                "--exit-on-error=false",
            ],
            env=env,
            ports=[
                k8s.core.v1.ContainerPortArgs(name="http", container_port=HTTP),
                k8s.core.v1.ContainerPortArgs(name="grpc", container_port=GRPC),
                k8s.core.v1.ContainerPortArgs(name="metrics", container_port=METRICS),
            ],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests=requests, limits=limits),
            # Loading a ViT from S3 can take minutes; the startup probe holds liveness off until then.
            startup_probe=probe("/v2/health/live", 10, 60),
            liveness_probe=probe("/v2/health/live", 15, 4),
            readiness_probe=probe("/v2/health/ready", 5, 3),
            security_context=container_security(),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(
                    name="trust", mount_path=bundle, sub_path="ca-certificates.crt", read_only=True
                )
            ],
        )
        annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS)}
        self.deployment = k8s.apps.v1.Deployment(
            name,
            metadata=meta(name, site, comp, args.namespace),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=s.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    # GPUs are scarce on an appliance: replace pods one at a time rather than surging.
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=0, max_unavailable=1),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=meta(name, site, comp, annotations=annotations),
                    spec=k8s.core.v1.PodSpecArgs(
                        # Triton never calls the Kubernetes API; it runs as the image's triton-server user.
                        automount_service_account_token=False,
                        security_context=pod_security(TRITON_UID),
                        init_containers=[trust_init],
                        containers=[container],
                        volumes=[
                            args.trust.volume(),
                            k8s.core.v1.VolumeArgs(name="trust", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                        ],
                        # Spread replicas over the appliance nodes so one node failure keeps serving.
                        topology_spread_constraints=[
                            k8s.core.v1.TopologySpreadConstraintArgs(
                                max_skew=1,
                                topology_key="kubernetes.io/hostname",
                                when_unsatisfiable="ScheduleAnyway",
                                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match),
                            )
                        ],
                    ),
                ),
            ),
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            f"{name}-svc",
            metadata=meta(name, site, comp, args.namespace),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer" if s.expose == "loadbalancer" else "ClusterIP",
                selector=match,
                ports=[
                    k8s.core.v1.ServicePortArgs(name="http", port=HTTP, target_port=HTTP),
                    k8s.core.v1.ServicePortArgs(name="grpc", port=GRPC, target_port=GRPC),
                    k8s.core.v1.ServicePortArgs(name="metrics", port=METRICS, target_port=METRICS),
                ],
            ),
            opts=child,
        )
        budget = (
            k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                min_available=s.replicas - 1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match)
            )
            if s.replicas > 1
            # With one replica a minAvailable budget would block node drains forever.
            else k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match)
            )
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=meta(name, site, comp, args.namespace), spec=budget, opts=child
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=meta(name, site, comp, args.namespace),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=match),
                policy_types=["Ingress"],
                ingress=[
                    # Inference clients (drones' ground stations, site apps) on the site network and in-cluster.
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                ip_block=k8s.networking.v1.IPBlockArgs(cidr=args.site_network)
                            ),
                            k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs()),
                        ],
                        ports=[
                            k8s.networking.v1.NetworkPolicyPortArgs(port=HTTP, protocol="TCP"),
                            k8s.networking.v1.NetworkPolicyPortArgs(port=GRPC, protocol="TCP"),
                        ],
                    ),
                    # Metrics only to the site's Prometheus agent.
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                                    match_labels={"kubernetes.io/metadata.name": args.monitoring_namespace}
                                )
                            )
                        ],
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=METRICS, protocol="TCP")],
                    ),
                ],
            ),
            opts=child,
        )
        self.register_outputs({"service": self.service_name, "repository": self.repository})
