"""SiteStorage: on-site S3-compatible storage with buckets for datasets, the Triton model repository and
checkpoints. MinIO on k3s/Kubernetes; ObjectBucketClaims (OpenShift Data Foundation) on OpenShift."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.addons import helm_chart
from components.k8s.kube import (
    SYSTEM_NAMESPACE,
    WORKLOAD_NAMESPACE,
    container_security,
    labels,
    meta,
    pod_security,
)
from components.k8s.secrets import random_secret
from edgefm.model.profile import StorageSettings

BucketPurpose = Literal["datasets", "models", "checkpoints"]
PURPOSES: tuple[BucketPurpose, ...] = ("datasets", "models", "checkpoints")
ROOT_SECRET = "site-storage-root"
ACCESS_SECRET = "site-storage-access"
TLS_SECRET = "site-storage-tls"
CA_NAME = "site-storage-ca"
CA_DIR = "/etc/edgefm/ca"


@dataclass(frozen=True)
class TrustBundle:
    """The CA that signed the site storage's certificate, as a ConfigMap in the workload namespace."""

    config_map: str
    key: str

    @property
    def path(self) -> str:
        return f"{CA_DIR}/{self.key}"

    def volume(self) -> k8s.core.v1.VolumeArgs:
        return k8s.core.v1.VolumeArgs(
            name="storage-ca", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=self.config_map)
        )

    def mount(self) -> k8s.core.v1.VolumeMountArgs:
        return k8s.core.v1.VolumeMountArgs(name="storage-ca", mount_path=CA_DIR, read_only=True)


@dataclass(frozen=True)
class StorageTls:
    """The site CA (SiteTls) that issues and renews the storage server's certificate."""

    issuer: str
    ca_certificate: pulumi.Input[str]


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
    # Required on k3s/Kubernetes; OpenShift's service CA signs ODF's endpoint instead.
    tls: StorageTls | None = None
    workload_namespace: pulumi.Input[str] = WORKLOAD_NAMESPACE
    system_namespace: pulumi.Input[str] = SYSTEM_NAMESPACE


class SiteStorage(pulumi.ComponentResource):
    endpoint: str
    buckets: dict[BucketPurpose, BucketAccess]
    trust: TrustBundle

    def __init__(self, name: str, args: SiteStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:SiteStorage", name, None, opts)
        self._site = args.site
        names: dict[BucketPurpose, str] = {p: f"{args.site}-{p}" for p in PURPOSES}
        if args.distribution == "openshift":
            self._object_bucket_claims(name, args, names)
        else:
            if args.tls is None:
                raise ValueError(f"{name}: MinIO serves TLS only; pass the site CA (tls)")
            self._minio(name, args, args.tls, names)
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

    def _minio(self, name: str, args: SiteStorageArgs, tls: StorageTls, names: Mapping[BucketPurpose, str]) -> None:
        site, comp, s = args.site, "storage", args.settings
        release = f"{name}-minio"
        self.endpoint = f"https://{release}.{SYSTEM_NAMESPACE}.svc:9000"
        child = pulumi.ResourceOptions(parent=self)
        # MinIO's servers reach each other through the headless service, so those names are in the certificate.
        headless = f"{release}-svc.{SYSTEM_NAMESPACE}.svc"
        certificate = k8s.apiextensions.CustomResource(
            f"{name}-certificate",
            api_version="cert-manager.io/v1",
            kind="Certificate",
            metadata=meta(TLS_SECRET, site, comp, args.system_namespace),
            spec={
                "secretName": TLS_SECRET,
                "commonName": f"{release}.{SYSTEM_NAMESPACE}.svc",
                "dnsNames": [
                    release,
                    f"{release}.{SYSTEM_NAMESPACE}.svc",
                    f"{release}.{SYSTEM_NAMESPACE}.svc.cluster.local",
                    f"*.{headless}",
                    f"*.{headless}.cluster.local",
                ],
                "duration": "2160h",
                "renewBefore": "360h",
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                "issuerRef": {"name": tls.issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
            },
            opts=child,
        )
        # MinIO's trusted-CA directory gets the CA alone (a Secret, as the chart mounts it); clients get a ConfigMap.
        ca_secret = k8s.core.v1.Secret(
            f"{name}-ca",
            metadata=meta(CA_NAME, site, comp, args.system_namespace),
            string_data={"ca.crt": tls.ca_certificate},
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-ca-bundle",
            metadata=meta(CA_NAME, site, comp, args.workload_namespace),
            data={"ca.crt": tls.ca_certificate},
            opts=child,
        )
        self.trust = TrustBundle(CA_NAME, "ca.crt")
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
        k8s.core.v1.Secret(
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
                "tls": {"enabled": True, "certSecret": TLS_SECRET, "publicCrt": "tls.crt", "privateKey": "tls.key"},
                "trustedCertsSecret": CA_NAME,
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
            opts=pulumi.ResourceOptions(parent=self, depends_on=[root, certificate, ca_secret]),
        )
        self.buckets = {}
        for purpose in PURPOSES:
            bucket = names[purpose]
            retention = s.checkpoint_retention_days if purpose == "checkpoints" else None
            self._bucket_job(name, purpose, bucket, retention, args, [chart, root])
            self.buckets[purpose] = BucketAccess(bucket, ACCESS_SECRET, "accessKeyId", "secretAccessKey")

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
            # mc trusts CAs in its config directory; the root filesystem's is not writable.
            f"mkdir -p /tmp/mc/certs/CAs && cp {CA_DIR}/ca.crt /tmp/mc/certs/CAs/site-ca.crt",
            'MC="mc --config-dir /tmp/mc"',
            '$MC alias set site "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"',
            f"$MC mb --ignore-existing site/{bucket}",
            f"$MC anonymous set none site/{bucket}",
            f"$MC encrypt set sse-s3 site/{bucket}",
        ]
        if purpose != "checkpoints":
            steps.append(f"$MC version enable site/{bucket}")
        if retention_days is not None:
            steps.append(f"$MC ilm rule add --expire-days {retention_days} site/{bucket} || true")
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
                        # mc needs no Kubernetes API and no root: its config and CAs live under /tmp.
                        automount_service_account_token=False,
                        security_context=pod_security(65534),
                        restart_policy="OnFailure",
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="ca", secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=CA_NAME)
                            ),
                            k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                        ],
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="mc",
                                image=args.settings.mc_image,
                                command=["/bin/sh", "-ec", "\n".join(steps)],
                                env=env,
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(name="ca", mount_path=CA_DIR, read_only=True),
                                    k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                                ],
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "50m", "memory": "64Mi"},
                                    limits={"cpu": "500m", "memory": "256Mi"},
                                ),
                                security_context=container_security(),
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
        # OpenShift's service CA signs ODF's endpoint; it injects that CA into annotated ConfigMaps.
        k8s.core.v1.ConfigMap(
            f"{name}-ca-bundle",
            metadata=meta(
                CA_NAME,
                args.site,
                "storage",
                args.workload_namespace,
                annotations={"service.beta.openshift.io/inject-cabundle": "true"},
            ),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["data"]),
        )
        self.trust = TrustBundle(CA_NAME, "service-ca.crt")
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
