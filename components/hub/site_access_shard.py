"""SiteAccessShard: the hub-side access of the sites in one access shard — each site's read-only registry
identity, its telemetry login and its own remote-write path — and each site's credential sealed to the site's
public key, so the shard's outputs can be read by anyone and opened by that site only.

Every object belongs to one site: adding or removing a site creates or deletes that site's objects and changes
nothing another site uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.hub.fleet_telemetry import site_write_path, site_write_url
from components.hub.site_credential import (
    FOR_SITE_LABEL,
    SITE_ACCESS_LABEL,
    derive_secret,
    site_read_statements,
    ssha_entry,
)
from components.k8s.kube import kubernetes_provider, meta
from edgefm.model.config import HubSpec
from edgefm.model.sealing import seal
from edgefm.model.stacks import HUB_STACK, site_stack

COMPONENT = "site-access"


@dataclass
class SiteAccessShardArgs:
    hub: HubSpec
    # Site name → its public key (base64 X25519), from the site's stack file.
    sites: Mapping[str, str]
    namespace: str
    # The hub's Prometheus Service every site's remote-write path leads to.
    prometheus_service: str
    # Datacenter flavor: site keys are derived from the hub's credential seed.
    credential_seed: pulumi.Input[str] | None = None
    # AWS flavor: the registry's KMS key, which site identities may decrypt with.
    registry_key_arn: pulumi.Input[str] | None = None
    kubeconfig: pulumi.Input[str] | None = None
    render_dir: str | None = None
    tls_secret: str = "edgefm-hub-tls"


def _derived_key(seed: pulumi.Input[str] | None, site: str) -> pulumi.Output[str]:
    def derive(value: str) -> str:
        return derive_secret(value, f"site:{site}")

    return pulumi.Output.secret(pulumi.Output.from_input(seed or "").apply(derive))


def _htpasswd(key_id: pulumi.Input[str], secret: pulumi.Output[str]) -> pulumi.Output[str]:
    def line(kv: list[str]) -> str:
        return ssha_entry(kv[0], kv[1]) + "\n"

    return pulumi.Output.secret(pulumi.Output.all(key_id, secret).apply(line))


def _sealed(site: str, public_key: str, key_id: pulumi.Input[str], secret: pulumi.Output[str]) -> pulumi.Output[str]:
    def sealed(kv: list[str]) -> str:
        return seal(public_key, {"site": site, "accessKeyId": kv[0], "secretAccessKey": kv[1]})

    return pulumi.Output.unsecret(pulumi.Output.all(key_id, secret).apply(sealed))


class SiteAccessShard(pulumi.ComponentResource):
    # Site name → its credential sealed to its public key (base64), and its remote-write URL.
    sealed: dict[str, pulumi.Output[str]]
    remote_write_urls: dict[str, str]

    def __init__(self, name: str, args: SiteAccessShardArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:hub:SiteAccessShard", name, None, opts)
        if args.hub.flavor == "datacenter" and args.credential_seed is None:
            raise ValueError(f"{name}: the datacenter flavor derives site keys from a credential seed")
        if args.hub.flavor == "aws" and args.registry_key_arn is None:
            raise ValueError(f"{name}: the aws flavor needs the registry's KMS key ARN")
        provider = kubernetes_provider(name, self, render_dir=args.render_dir, kubeconfig=args.kubeconfig)
        on_hub = pulumi.ResourceOptions(parent=self, provider=provider)
        telemetry_host = f"telemetry.{args.hub.endpoint}"
        self.sealed, self.remote_write_urls = {}, {}
        for site, public_key in sorted(args.sites.items()):
            key_id: pulumi.Input[str]
            if args.hub.flavor == "aws":
                key_id, secret = self._aws_identity(f"{name}-{site}", site, args)
                registry_keys: dict[str, pulumi.Input[str]] = {}
            else:
                key_id = site_stack(site)
                secret = _derived_key(args.credential_seed, site)
                # The registry's reconciler makes a read-only MinIO user of these two keys.
                registry_keys = {"accessKey": key_id, "secretKey": secret}
            auth = _htpasswd(key_id, secret)
            access = k8s.core.v1.Secret(
                f"{name}-{site}",
                metadata=meta(
                    f"site-access-{site}",
                    HUB_STACK,
                    COMPONENT,
                    args.namespace,
                    extra_labels={SITE_ACCESS_LABEL: "true", FOR_SITE_LABEL: site},
                ),
                string_data={**registry_keys, "auth": auth},
                opts=on_hub,
            )
            self._remote_write(f"{name}-{site}-write", site, telemetry_host, access, args, provider)
            self.remote_write_urls[site] = site_write_url(telemetry_host, site)
            # Sealed: readable by every stack, openable by the site's private key only.
            self.sealed[site] = _sealed(site, public_key, key_id, secret)
        self.register_outputs({"sites": sorted(args.sites)})

    def _remote_write(
        self,
        name: str,
        site: str,
        host: str,
        access: k8s.core.v1.Secret,
        args: SiteAccessShardArgs,
        provider: k8s.Provider,
    ) -> None:
        """The site's own write path: its login only, rewritten to the receiver's one write endpoint."""
        k8s.networking.v1.Ingress(
            name,
            metadata=meta(
                f"remote-write-{site}",
                HUB_STACK,
                COMPONENT,
                args.namespace,
                extra_labels={FOR_SITE_LABEL: site},
                annotations={
                    "nginx.ingress.kubernetes.io/auth-type": "basic",
                    "nginx.ingress.kubernetes.io/auth-secret": f"site-access-{site}",
                    "nginx.ingress.kubernetes.io/auth-realm": f"edgefm remote write {site}",
                    "nginx.ingress.kubernetes.io/rewrite-target": "/api/v1/write",
                    "nginx.ingress.kubernetes.io/proxy-body-size": "16m",
                },
            ),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name="nginx",
                tls=[k8s.networking.v1.IngressTLSArgs(hosts=[host], secret_name=args.tls_secret)],
                rules=[
                    k8s.networking.v1.IngressRuleArgs(
                        host=host,
                        http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                            paths=[
                                k8s.networking.v1.HTTPIngressPathArgs(
                                    path=site_write_path(site),
                                    path_type="Exact",
                                    backend=k8s.networking.v1.IngressBackendArgs(
                                        service=k8s.networking.v1.IngressServiceBackendArgs(
                                            name=args.prometheus_service,
                                            port=k8s.networking.v1.ServiceBackendPortArgs(number=80),
                                        )
                                    ),
                                )
                            ]
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[access]),
        )

    def _aws_identity(
        self, name: str, site: str, args: SiteAccessShardArgs
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """An IAM user that may read the registry bucket and decrypt with its key, and nothing more."""
        child = pulumi.ResourceOptions(parent=self)
        tags = {"edgefm.io/part-of": "edgefm", "edgefm.io/component": "model-registry", "edgefm.io/site": site}
        user = aws.iam.User(name, name=f"edgefm-{site_stack(site)}", path="/edgefm/sites/", tags=tags, opts=child)
        bucket_arn = f"arn:aws:s3:::{args.hub.registry.bucket}"
        policy = pulumi.Output.from_input(args.registry_key_arn).apply(
            lambda key_arn: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        *site_read_statements(bucket_arn),
                        # Reading SSE-KMS objects needs decrypt on the registry key, and nothing more.
                        {
                            "Sid": "DecryptRegistryObjects",
                            "Effect": "Allow",
                            "Action": ["kms:Decrypt"],
                            "Resource": [key_arn],
                        },
                    ],
                },
                sort_keys=True,
            )
        )
        aws.iam.UserPolicy(f"{name}-read", user=user.name, policy=policy, opts=child)
        key = aws.iam.AccessKey(
            f"{name}-key",
            user=user.name,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["secret"]),
        )
        return key.id, pulumi.Output.secret(key.secret)
