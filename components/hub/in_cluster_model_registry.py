"""InClusterModelRegistry: the hub's model registry on its own Kubernetes cluster (MinIO), versioned and
encrypted, reached over TLS through the hub ingress, with one read-only MinIO user per site."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.hub.site_credential import SiteCredential, derive_secret, site_read_statements
from components.k8s.addons import helm_chart
from components.k8s.kube import ingress_rule, meta
from edgefm.model.profile import ChartRef
from edgefm.model.stacks import HUB_STACK, site_stack

SITE_POLICY = "edgefm-site-read"
POLICY_CONFIGMAP = "edgefm-registry-site-policy"


@dataclass
class InClusterModelRegistryArgs:
    bucket: str
    host: str
    namespace: pulumi.Input[str]
    sites: Sequence[str]
    credential_seed: pulumi.Input[str]
    chart: ChartRef
    image: str
    size_gi: int
    noncurrent_version_days: int
    tls_secret: str = "edgefm-hub-tls"


def site_policy_document(bucket: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": site_read_statements(f"arn:aws:s3:::{bucket}")}


class InClusterModelRegistry(pulumi.ComponentResource):
    endpoint: str
    site_credentials: dict[str, SiteCredential]

    def __init__(self, name: str, args: InClusterModelRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:hub:InClusterModelRegistry", name, None, opts)
        comp = "model-registry"
        child = pulumi.ResourceOptions(parent=self)
        seed = pulumi.Output.secret(args.credential_seed)
        release = f"{name}-minio"
        self.endpoint = f"https://{args.host}"
        self.site_credentials = {}

        def derived(purpose: str) -> pulumi.Output[str]:
            return pulumi.Output.secret(seed.apply(lambda s: derive_secret(s, purpose)))

        root = k8s.core.v1.Secret(
            f"{name}-root",
            metadata=meta("registry-root", HUB_STACK, comp, args.namespace),
            string_data={
                "rootUser": "edgefm-registry-admin",
                "rootPassword": derived("registry-root"),
                # Static KMS key for SSE-S3 at rest; 32 bytes derived from the seed, base64 as MinIO wants.
                "config.env": seed.apply(
                    lambda s: (
                        "export MINIO_KMS_SECRET_KEY=edgefm-registry-key:"
                        + base64.b64encode(hashlib.sha256(f"{s}:kms".encode()).digest()).decode()
                        + "\n"
                    )
                ),
            },
            opts=child,
        )
        policy = site_policy_document(args.bucket)
        # The policy as data, so guardrails (and auditors) can read exactly what sites may do.
        k8s.core.v1.ConfigMap(
            f"{name}-site-policy",
            metadata=meta(POLICY_CONFIGMAP, HUB_STACK, comp, args.namespace),
            data={"policy.json": json.dumps(policy, sort_keys=True), "policyName": SITE_POLICY},
            opts=child,
        )
        users = []
        for site in args.sites:
            key_id = site_stack(site)
            secret_key = derived(f"site:{site}")
            k8s.core.v1.Secret(
                f"{name}-site-{site}",
                metadata=meta(
                    f"registry-site-{site}",
                    HUB_STACK,
                    comp,
                    args.namespace,
                    extra_labels={"edgefm.io/for-site": site},
                ),
                string_data={"secretKey": secret_key},
                opts=child,
            )
            users.append(
                {
                    "accessKey": key_id,
                    "existingSecret": f"registry-site-{site}",
                    "existingSecretKey": "secretKey",
                    "policy": SITE_POLICY,
                }
            )
            self.site_credentials[site] = SiteCredential(key_id, secret_key)
        image_repo, image_tag = args.image.rsplit(":", 1)
        target = f"myminio/{args.bucket}"  # the chart's mc alias for its own server
        helm_chart(
            release,
            chart=args.chart,
            target_namespace=args.namespace,
            site=HUB_STACK,
            component=comp,
            values={
                "image": {"repository": image_repo, "tag": image_tag},
                "mode": "distributed",
                "replicas": 4,
                "existingSecret": "registry-root",
                "extraSecret": "registry-root",
                "persistence": {"size": f"{max(10, args.size_gi // 4)}Gi"},
                "resources": {
                    "requests": {"cpu": "1", "memory": "4Gi"},
                    "limits": {"cpu": "4", "memory": "8Gi"},
                },
                "buckets": [
                    {
                        "name": args.bucket,
                        "policy": "none",
                        "purge": False,
                        "versioning": True,
                        "objectlocking": False,
                    }
                ],
                "policies": [
                    {
                        "name": SITE_POLICY,
                        "statements": [
                            {"resources": s["Resource"], "actions": s["Action"]} for s in policy["Statement"]
                        ],
                    }
                ],
                "users": users,
                "service": {"type": "ClusterIP"},
                "consoleService": {"type": "ClusterIP"},
                "customCommands": [
                    # Same retention as the AWS flavor: old object versions expire, unfinished uploads are aborted.
                    {"command": f"ilm rule add --noncurrent-expire-days {args.noncurrent_version_days} {target}"},
                    {"command": f"encrypt set sse-s3 {target}"},
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[root]),
        )
        k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata=meta(
                "registry",
                HUB_STACK,
                comp,
                args.namespace,
                # Model files are GBs; the ingress must not cap or buffer request bodies.
                annotations={
                    "nginx.ingress.kubernetes.io/proxy-body-size": "0",
                    "nginx.ingress.kubernetes.io/ssl-redirect": "true",
                },
            ),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name="nginx",
                tls=[k8s.networking.v1.IngressTLSArgs(hosts=[args.host], secret_name=args.tls_secret)],
                rules=[ingress_rule(args.host, release, 9000)],
            ),
            opts=child,
        )
        self.register_outputs({"endpoint": self.endpoint})
