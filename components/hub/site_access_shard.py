"""SiteAccessShard: the hub-side access of the sites in one access shard — each site's read-only registry
identity, its telemetry login and its own remote-write path — and each site's credential sealed to the site's
public key, so the shard's outputs can be read by anyone and opened by that site only.

The shard's sites share two objects, not two each: one Secret (every site's telemetry login, and on the datacenter
flavor every site's registry key for the reconciler) and one Ingress (a write path per site). The engine's cost
of a stack grows with its resources, so onboarding a site costs one shard's fixed engine cost; adding or removing
a site updates its own shard's two objects in place and nothing any other shard's sites use.
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
    ACCESS_SHARD_LABEL,
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


Credential = tuple[str, str]  # (access key id, secret access key)


def shard_files(
    sites: Mapping[str, str], credentials: Mapping[str, Credential], registry_users: bool
) -> dict[str, str]:
    """The shard Secret's two files: `auth`, one htpasswd line per site (nginx reads it for the write paths),
    and, on the datacenter flavor, `users`, one "<access key> <secret>" line per site for the reconciler."""
    auth = "".join(ssha_entry(*credentials[site]) + "\n" for site in sorted(sites))
    files = {"auth": auth}
    if registry_users:
        files["users"] = "".join(f"{key} {secret}\n" for key, secret in (credentials[s] for s in sorted(sites)))
    return files


def sealed_entries(sites: Mapping[str, str], credentials: Mapping[str, Credential]) -> dict[str, str]:
    """Each site's credential sealed to its public key: readable by every stack, openable by that site only."""
    out = {}
    for site, public_key in sorted(sites.items()):
        key_id, secret = credentials[site]
        out[site] = seal(public_key, {"site": site, "accessKeyId": key_id, "secretAccessKey": secret})
    return out


class SiteAccessShard(pulumi.ComponentResource):
    # Site name → its credential sealed to its public key (base64), one output for the whole shard.
    sealed: pulumi.Output[dict[str, str]]
    remote_write_urls: dict[str, str]

    def __init__(self, name: str, args: SiteAccessShardArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:hub:SiteAccessShard", name, None, opts)
        if args.hub.flavor == "datacenter" and args.credential_seed is None:
            raise ValueError(f"{name}: the datacenter flavor derives site keys from a credential seed")
        if args.hub.flavor == "aws" and args.registry_key_arn is None:
            raise ValueError(f"{name}: the aws flavor needs the registry's KMS key ARN")
        telemetry_host = f"telemetry.{args.hub.endpoint}"
        sites = dict(sorted(args.sites.items()))
        self.remote_write_urls = {site: site_write_url(telemetry_host, site) for site in sites}
        if args.hub.flavor == "aws":
            identities = {site: self._aws_identity(f"{name}-{site}", site, args) for site in sites}
            # Every site's key, resolved together: one computation for the shard, not a chain per site.
            credentials: pulumi.Output[dict[str, Credential]] = pulumi.Output.all(
                *(pulumi.Output.all(key_id, secret) for key_id, secret in identities.values())
            ).apply(lambda pairs: {site: (pair[0], pair[1]) for site, pair in zip(identities, pairs, strict=True)})
        else:

            def derive(seed: str) -> dict[str, Credential]:
                return {site: (site_stack(site), derive_secret(seed, f"site:{site}")) for site in sites}

            credentials = pulumi.Output.from_input(args.credential_seed or "").apply(derive)
        credentials = pulumi.Output.secret(credentials)
        self.sealed = pulumi.Output.unsecret(credentials.apply(lambda c: sealed_entries(sites, c)))
        if sites:
            # No site, no objects: an empty shard leaves nothing on the hub (an Ingress needs at least one path).
            # nginx and the reconciler read the shard's Secret as it changes: onboarding updates it, never replaces it.
            provider = kubernetes_provider(
                name, self, render_dir=args.render_dir, kubeconfig=args.kubeconfig, mutable_secrets=True
            )
            # Derived from the secret credentials, so secret too.
            files = credentials.apply(lambda c: shard_files(sites, c, registry_users=args.hub.flavor == "datacenter"))
            access = k8s.core.v1.Secret(
                name,
                metadata=meta(
                    name,
                    HUB_STACK,
                    COMPONENT,
                    args.namespace,
                    extra_labels={SITE_ACCESS_LABEL: "true", ACCESS_SHARD_LABEL: name},
                ),
                string_data=files,
                opts=pulumi.ResourceOptions(parent=self, provider=provider),
            )
            self._remote_write(name, sorted(sites), telemetry_host, access, args, provider)
        self.register_outputs({"sites": sorted(sites)})

    def _remote_write(
        self,
        name: str,
        sites: list[str],
        host: str,
        access: k8s.core.v1.Secret,
        args: SiteAccessShardArgs,
        provider: k8s.Provider,
    ) -> None:
        """Each site's own write path, behind the shard's logins (the Secret `name`), rewritten to the receiver's one
        write endpoint."""
        backend = k8s.networking.v1.IngressBackendArgs(
            service=k8s.networking.v1.IngressServiceBackendArgs(
                name=args.prometheus_service, port=k8s.networking.v1.ServiceBackendPortArgs(number=80)
            )
        )
        k8s.networking.v1.Ingress(
            f"{name}-write",
            metadata=meta(
                f"{name}-write",
                HUB_STACK,
                COMPONENT,
                args.namespace,
                extra_labels={ACCESS_SHARD_LABEL: name},
                annotations={
                    "nginx.ingress.kubernetes.io/auth-type": "basic",
                    "nginx.ingress.kubernetes.io/auth-secret": name,
                    "nginx.ingress.kubernetes.io/auth-realm": "edgefm remote write",
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
                                    path=site_write_path(site), path_type="Exact", backend=backend
                                )
                                for site in sites
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
