"""InClusterModelRegistry: the hub's model registry on its own Kubernetes cluster (MinIO), versioned and
encrypted, reached over TLS through the hub ingress. Site users are not listed here: each access shard keeps
one labelled Secret per site, and a reconciler CronJob makes MinIO's read-only site users match those Secrets,
so adding a site never changes this component."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.hub.site_credential import SITE_ACCESS_LABEL, derive_secret, site_read_statements
from components.k8s.addons import helm_chart
from components.k8s.kube import container_security, ingress_rule, meta, pod_security
from edgefm.model.profile import ChartRef
from edgefm.model.stacks import HUB_STACK

SITE_POLICY = "edgefm-site-read"
POLICY_CONFIGMAP = "edgefm-registry-site-policy"


@dataclass
class InClusterModelRegistryArgs:
    bucket: str
    host: str
    namespace: pulumi.Input[str]
    credential_seed: pulumi.Input[str]
    chart: ChartRef
    image: str
    # The reconciler: kubectl lists the site Secrets, mc applies them to MinIO.
    kubectl_image: str
    mc_image: str
    size_gi: int
    noncurrent_version_days: int
    tls_secret: str = "edgefm-hub-tls"


def site_policy_document(bucket: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": site_read_statements(f"arn:aws:s3:::{bucket}")}


def reconcile_script(server: str) -> str:
    """Adds (or re-keys) a read-only MinIO user for every site Secret and removes site users with none left."""
    return f"""set -eu
mc alias set hub {server} "$ROOT_USER" "$ROOT_PASSWORD" >/dev/null
while read -r key secret; do
  mc admin user add hub "$key" "$secret" >/dev/null
  mc admin policy attach hub {SITE_POLICY} --user "$key" >/dev/null 2>&1 || true  # already attached
done < /work/users
mc admin user list hub --json | sed -n 's/.*"accessKey":"\\(site-[^"]*\\)".*/\\1/p' | while read -r key; do
  grep -q "^$key " /work/users || mc admin user remove hub "$key"
done
"""


# The access shards' Secrets → their "<accessKey> <secretKey>" lines (each shard's `users` file), decoded by
# kubectl itself.
USERS_TEMPLATE = "{{range .items}}{{if .data.users}}{{.data.users | base64decode}}{{end}}{{end}}"


class InClusterModelRegistry(pulumi.ComponentResource):
    endpoint: str

    def __init__(self, name: str, args: InClusterModelRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:hub:InClusterModelRegistry", name, None, opts)
        comp = "model-registry"
        child = pulumi.ResourceOptions(parent=self)
        seed = pulumi.Output.secret(args.credential_seed)
        release = f"{name}-minio"
        self.endpoint = f"https://{args.host}"

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
                "users": [],
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
        self._reconciler(name, args, release, root)
        self.register_outputs({"endpoint": self.endpoint})

    def _reconciler(self, name: str, args: InClusterModelRegistryArgs, release: str, root: k8s.core.v1.Secret) -> None:
        comp, child = "model-registry", pulumi.ResourceOptions(parent=self)
        account = f"{name}-site-users"
        sa = k8s.core.v1.ServiceAccount(
            account, metadata=meta("registry-site-users", HUB_STACK, comp, args.namespace), opts=child
        )
        # Read the site Secrets of this namespace and nothing else.
        role = k8s.rbac.v1.Role(
            f"{account}-read",
            metadata=meta("registry-site-users", HUB_STACK, comp, args.namespace),
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["secrets"], verbs=["list"])],
            opts=child,
        )
        k8s.rbac.v1.RoleBinding(
            f"{account}-read",
            metadata=meta("registry-site-users", HUB_STACK, comp, args.namespace),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name="registry-site-users"
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="registry-site-users", namespace=args.namespace)
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, sa]),
        )
        env = k8s.core.v1.EnvVarArgs
        root_ref = k8s.core.v1.SecretKeySelectorArgs
        hardened = container_security(read_only_root=True)
        work = k8s.core.v1.VolumeMountArgs(name="work", mount_path="/work")
        small = k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
        )
        pod = k8s.core.v1.PodSpecArgs(
            service_account_name="registry-site-users",
            restart_policy="Never",
            # Pod Security `restricted`; 65534 (nobody) as for the site's other mc and kubectl pods.
            security_context=pod_security(65534),
            volumes=[
                # The decoded keys live in memory only, for the life of the pod.
                k8s.core.v1.VolumeArgs(name="work", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory")),
                k8s.core.v1.VolumeArgs(name="mc", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            ],
            init_containers=[
                k8s.core.v1.ContainerArgs(
                    name="list-sites",
                    image=args.kubectl_image,
                    command=["sh", "-c", 'kubectl get secrets -l "$SELECTOR" -o go-template="$TEMPLATE" > /work/users'],
                    env=[
                        env(name="SELECTOR", value=f"{SITE_ACCESS_LABEL}=true"),
                        env(name="TEMPLATE", value=USERS_TEMPLATE),
                    ],
                    volume_mounts=[work],
                    resources=small,
                    security_context=hardened,
                )
            ],
            containers=[
                k8s.core.v1.ContainerArgs(
                    name="apply-users",
                    image=args.mc_image,
                    command=["sh", "-c", reconcile_script(f"http://{release}:9000")],
                    env=[
                        env(name="MC_CONFIG_DIR", value="/mc"),
                        env(
                            name="ROOT_USER",
                            value_from=k8s.core.v1.EnvVarSourceArgs(
                                secret_key_ref=root_ref(name="registry-root", key="rootUser")
                            ),
                        ),
                        env(
                            name="ROOT_PASSWORD",
                            value_from=k8s.core.v1.EnvVarSourceArgs(
                                secret_key_ref=root_ref(name="registry-root", key="rootPassword")
                            ),
                        ),
                    ],
                    volume_mounts=[work, k8s.core.v1.VolumeMountArgs(name="mc", mount_path="/mc")],
                    resources=small,
                    security_context=hardened,
                )
            ],
        )
        k8s.batch.v1.CronJob(
            account,
            metadata=meta("registry-site-users", HUB_STACK, comp, args.namespace),
            spec=k8s.batch.v1.CronJobSpecArgs(
                # A new site can read the registry within two minutes of its access shard's update.
                schedule="*/2 * * * *",
                concurrency_policy="Forbid",
                successful_jobs_history_limit=1,
                failed_jobs_history_limit=3,
                job_template=k8s.batch.v1.JobTemplateSpecArgs(
                    spec=k8s.batch.v1.JobSpecArgs(
                        backoff_limit=2,
                        active_deadline_seconds=600,
                        template=k8s.core.v1.PodTemplateSpecArgs(
                            metadata=meta("registry-site-users", HUB_STACK, comp), spec=pod
                        ),
                    )
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[root]),
        )
