"""SiteStorage: on-site S3-compatible storage with buckets for datasets, the Triton model repository and
checkpoints. MinIO on k3s/Kubernetes; ObjectBucketClaims (OpenShift Data Foundation) on OpenShift."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components.addons import helm_chart
from components.kube import SYSTEM_NAMESPACE, WORKLOAD_NAMESPACE, labels, meta
from components.secrets import random_secret
from edgefm.profile import StorageSettings

BucketPurpose = Literal["datasets", "models", "checkpoints"]
PURPOSES: tuple[BucketPurpose, ...] = ("datasets", "models", "checkpoints")
ROOT_SECRET = "site-storage-root"
ACCESS_SECRET = "site-storage-access"


@dataclass(frozen=True)
class BucketAccess:
    """How a workload reaches one bucket: its name and the Secret (in the workload namespace) with keys."""

    bucket: str
    secret_name: str
    access_key_field: str
    secret_key_field: str

    def env(self, prefix: str) -> list[k8s.core.v1.EnvVarArgs]:
        def ref(key: str) -> k8s.core.v1.EnvVarSourceArgs:
            return k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=self.secret_name, key=key)
            )

        return [
            k8s.core.v1.EnvVarArgs(name=f"{prefix}_BUCKET", value=self.bucket),
            k8s.core.v1.EnvVarArgs(name=f"{prefix}_ACCESS_KEY_ID", value_from=ref(self.access_key_field)),
            k8s.core.v1.EnvVarArgs(name=f"{prefix}_SECRET_ACCESS_KEY", value_from=ref(self.secret_key_field)),
        ]


@dataclass
class SiteStorageArgs:
    site: str
    distribution: Literal["k3s", "kubernetes", "openshift"]
    settings: StorageSettings
    node_count: int
    workload_namespace: pulumi.Input[str] = WORKLOAD_NAMESPACE
    system_namespace: pulumi.Input[str] = SYSTEM_NAMESPACE


class SiteStorage(pulumi.ComponentResource):
    endpoint: str
    buckets: dict[BucketPurpose, BucketAccess]

    def __init__(self, name: str, args: SiteStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:SiteStorage", name, None, opts)
        self._site = args.site
        names: dict[BucketPurpose, str] = {p: f"{args.site}-{p}" for p in PURPOSES}
        if args.distribution == "openshift":
            self._object_bucket_claims(name, args, names)
        else:
            self._minio(name, args, names)
        self.register_outputs({"endpoint": self.endpoint, "buckets": {p: b.bucket for p, b in self.buckets.items()}})

    def _bucket_annotations(self, bucket: str, purpose: BucketPurpose, retention_days: int | None) -> dict[str, str]:
        # Declarative record of the bucket's guarantees, read by the guardrail policies.
        annotations = {
            "edgefm.io/bucket-name": bucket,
            "edgefm.io/bucket-versioning": "true" if purpose != "checkpoints" else "false",
            "edgefm.io/bucket-encryption": "sse-s3",
            "edgefm.io/bucket-public": "false",
            "edgefm.io/bucket-replication": "none",
        }
        if retention_days is not None:
            annotations["edgefm.io/bucket-expiry-days"] = str(retention_days)
        return annotations

    def _bucket_opts(self, purpose: BucketPurpose, extra: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
        opts = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), extra)
        if purpose == "datasets":
            # Labelled data is the site's own and irreplaceable: the engine refuses to delete or replace it.
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True, retain_on_delete=True))
        return opts

    def _minio(self, name: str, args: SiteStorageArgs, names: Mapping[BucketPurpose, str]) -> None:
        site, comp, s = args.site, "storage", args.settings
        release = f"{name}-minio"
        self.endpoint = f"http://{release}.{SYSTEM_NAMESPACE}.svc:9000"
        child = pulumi.ResourceOptions(parent=self)
        root_password = random_secret(f"{name}-root-password", self)
        kms_key = random_secret(f"{name}-kms-key", self, encoding="base64")
        root = k8s.core.v1.Secret(
            f"{name}-root",
            metadata=meta(ROOT_SECRET, site, comp, args.system_namespace),
            string_data={
                "rootUser": "edgefm-root",
                "rootPassword": root_password,
                # The chart sources `config.env` (extraSecret); MinIO's static KMS key gives SSE-S3
                # encryption at rest without an external KMS.
                "config.env": kms_key.apply(lambda k: f"export MINIO_KMS_SECRET_KEY=edgefm-site-key:{k}\n"),
            },
            opts=child,
        )
        # Workloads live in another namespace and cannot read the root Secret there.
        access = k8s.core.v1.Secret(
            f"{name}-access",
            metadata=meta(ACCESS_SECRET, site, comp, args.workload_namespace),
            string_data={
                "accessKeyId": "edgefm-root",
                "secretAccessKey": root_password,
                "endpoint": self.endpoint,
            },
            opts=child,
        )
        chart = helm_chart(
            release,
            chart=s.minio_chart,
            target_namespace=SYSTEM_NAMESPACE,
            site=site,
            component=comp,
            values={
                "image": {
                    "repository": s.minio_image.rsplit(":", 1)[0],
                    "tag": s.minio_image.rsplit(":", 1)[1],
                },
                "mcImage": {"repository": s.mc_image.rsplit(":", 1)[0], "tag": s.mc_image.rsplit(":", 1)[1]},
                # One MinIO server per appliance node, two drives each: erasure coding survives a node loss.
                "mode": "distributed" if args.node_count >= 2 else "standalone",
                "replicas": args.node_count if args.node_count >= 2 else 1,
                "drivesPerNode": 2,
                "existingSecret": ROOT_SECRET,
                "persistence": {"size": f"{max(1, s.size_gi // max(1, args.node_count * 2))}Gi"},
                "extraSecret": ROOT_SECRET,
                "resources": {
                    "requests": {"cpu": "500m", "memory": "2Gi"},
                    "limits": {"cpu": "2", "memory": "4Gi"},
                },
                "podLabels": labels(site, comp),
                "buckets": [],
                "users": [],
                "policies": [],
                "consoleService": {"type": "ClusterIP"},
                "service": {"type": "ClusterIP"},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[root]),
        )
        self.buckets = {}
        for purpose in PURPOSES:
            bucket = names[purpose]
            retention = s.checkpoint_retention_days if purpose == "checkpoints" else None
            self._bucket_job(name, purpose, bucket, retention, args, [chart, root])
            self.buckets[purpose] = BucketAccess(bucket, ACCESS_SECRET, "accessKeyId", "secretAccessKey")
        self._access_secret = access

    def _bucket_job(
        self,
        name: str,
        purpose: BucketPurpose,
        bucket: str,
        retention_days: int | None,
        args: SiteStorageArgs,
        after: list[pulumi.Resource],
    ) -> k8s.batch.v1.Job:
        """An idempotent provisioning Job: creates the bucket if missing and (re)applies its settings."""
        site, comp = args.site, "storage"
        steps = [
            'mc alias set site "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"',
            f"mc mb --ignore-existing site/{bucket}",
            f"mc anonymous set none site/{bucket}",
            f"mc encrypt set sse-s3 site/{bucket}",
        ]
        if purpose != "checkpoints":
            steps.append(f"mc version enable site/{bucket}")
        if retention_days is not None:
            steps.append(f"mc ilm rule add --expire-days {retention_days} site/{bucket} || true")
        secret = k8s.core.v1.SecretKeySelectorArgs
        env = [
            k8s.core.v1.EnvVarArgs(name="MINIO_URL", value=self.endpoint),
            k8s.core.v1.EnvVarArgs(
                name="MINIO_ROOT_USER",
                value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=secret(name=ROOT_SECRET, key="rootUser")),
            ),
            k8s.core.v1.EnvVarArgs(
                name="MINIO_ROOT_PASSWORD",
                value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=secret(name=ROOT_SECRET, key="rootPassword")),
            ),
        ]
        job_name = f"{name}-bucket-{purpose}"
        return k8s.batch.v1.Job(
            job_name,
            metadata=meta(
                job_name,
                site,
                comp,
                args.system_namespace,
                extra_labels={"edgefm.io/bucket": purpose},
                annotations=self._bucket_annotations(bucket, purpose, retention_days),
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=10,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=meta(job_name, site, comp, extra_labels={"edgefm.io/bucket": purpose}),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="OnFailure",
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="mc",
                                image=args.settings.mc_image,
                                command=["/bin/sh", "-ec", "\n".join(steps)],
                                env=env,
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "50m", "memory": "64Mi"},
                                    limits={"cpu": "500m", "memory": "256Mi"},
                                ),
                            )
                        ],
                    ),
                ),
            ),
            opts=self._bucket_opts(
                purpose,
                pulumi.ResourceOptions(depends_on=after, ignore_changes=["spec"] if purpose == "datasets" else None),
            ),
        )

    def _object_bucket_claims(self, name: str, args: SiteStorageArgs, names: Mapping[BucketPurpose, str]) -> None:
        # ODF's Multicloud Object Gateway encrypts at rest and has no anonymous access; each claim gets its
        # own credentials Secret (named like the claim) in the workload namespace.
        self.endpoint = "https://s3.openshift-storage.svc:443"
        self.buckets = {}
        for purpose in PURPOSES:
            bucket = names[purpose]
            claim = f"{name}-{purpose}"
            retention = args.settings.checkpoint_retention_days if purpose == "checkpoints" else None
            k8s.apiextensions.CustomResource(
                claim,
                api_version="objectbucket.io/v1alpha1",
                kind="ObjectBucketClaim",
                metadata=meta(
                    claim,
                    args.site,
                    "storage",
                    args.workload_namespace,
                    extra_labels={"edgefm.io/bucket": purpose},
                    annotations=self._bucket_annotations(bucket, purpose, retention),
                ),
                spec={"bucketName": bucket, "storageClassName": args.settings.openshift_storage_class},
                opts=self._bucket_opts(purpose, pulumi.ResourceOptions()),
            )
            self.buckets[purpose] = BucketAccess(bucket, claim, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
