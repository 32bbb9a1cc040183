"""ModelSync: a CronJob that mirrors the foundation model version the profile names from the hub registry
into the site's models bucket with the site's read-only credentials, verifying every file's checksum."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.kube import WORKLOAD_NAMESPACE, container_security, meta, pod_security
from components.site.site_storage import BucketAccess, TrustBundle
from edgefm.model.profile import ModelRef, ModelSyncSettings

REGISTRY_SECRET = "hub-registry-read"


@dataclass(frozen=True)
class RegistryAccess:
    """The hub registry as one site sees it: where it is and the site's read-only key."""

    endpoint: pulumi.Input[str]
    bucket: pulumi.Input[str]
    region: pulumi.Input[str]
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]


MIRROR_PREFIX = "foundation"


def mirror_prefix(model: ModelRef) -> str:
    """Where `edgefm models sync` puts a version in the site's models bucket (the registry's own layout
    under the `foundation` prefix). A published version is laid out as a Triton model repository, so
    sites that do not fine-tune serve straight from here."""
    if model.version is None:
        raise ValueError(f"model {model.name} follows channel {model.channel!r}: pin it before building the site")
    return f"{MIRROR_PREFIX}/{model.name}/{model.version}/files/"


@dataclass
class ModelSyncArgs:
    site: str
    model: ModelRef
    settings: ModelSyncSettings
    registry: RegistryAccess
    storage_endpoint: str
    trust: TrustBundle
    models_bucket: BucketAccess
    namespace: pulumi.Input[str] = WORKLOAD_NAMESPACE


class ModelSync(pulumi.ComponentResource):
    prefix: str

    def __init__(self, name: str, args: ModelSyncArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:ModelSync", name, None, opts)
        site, comp = args.site, "model-sync"
        self.prefix = mirror_prefix(args.model)
        child = pulumi.ResourceOptions(parent=self)
        creds = k8s.core.v1.Secret(
            f"{name}-registry",
            metadata=meta(REGISTRY_SECRET, site, comp, args.namespace),
            string_data={
                "accessKeyId": pulumi.Output.secret(args.registry.access_key_id),
                "secretAccessKey": pulumi.Output.secret(args.registry.secret_access_key),
            },
            opts=child,
        )
        secret_ref = k8s.core.v1.SecretKeySelectorArgs

        def from_secret(name: str, key: str) -> k8s.core.v1.EnvVarSourceArgs:
            return k8s.core.v1.EnvVarSourceArgs(secret_key_ref=secret_ref(name=name, key=key))

        mirror = args.models_bucket
        env = [
            k8s.core.v1.EnvVarArgs(name="EDGEFM_MODEL_NAME", value=args.model.name),
            k8s.core.v1.EnvVarArgs(name="EDGEFM_MODEL_VERSION", value=args.model.version),
            k8s.core.v1.EnvVarArgs(name="EDGEFM_REGISTRY_ENDPOINT_URL", value=args.registry.endpoint),
            k8s.core.v1.EnvVarArgs(name="EDGEFM_REGISTRY_BUCKET", value=args.registry.bucket),
            k8s.core.v1.EnvVarArgs(name="EDGEFM_REGISTRY_REGION", value=args.registry.region),
            k8s.core.v1.EnvVarArgs(
                name="EDGEFM_REGISTRY_ACCESS_KEY_ID", value_from=from_secret(REGISTRY_SECRET, "accessKeyId")
            ),
            k8s.core.v1.EnvVarArgs(
                name="EDGEFM_REGISTRY_SECRET_ACCESS_KEY", value_from=from_secret(REGISTRY_SECRET, "secretAccessKey")
            ),
            k8s.core.v1.EnvVarArgs(name="EDGEFM_MIRROR_ENDPOINT_URL", value=args.storage_endpoint),
            k8s.core.v1.EnvVarArgs(name="EDGEFM_MIRROR_BUCKET", value=mirror.bucket),
            k8s.core.v1.EnvVarArgs(name="EDGEFM_MIRROR_PREFIX", value=MIRROR_PREFIX),
            # Only the site mirror uses the site CA; the hub keeps its own (public) trust.
            k8s.core.v1.EnvVarArgs(name="EDGEFM_MIRROR_CA_BUNDLE", value=args.trust.path),
            k8s.core.v1.EnvVarArgs(
                name="EDGEFM_MIRROR_ACCESS_KEY_ID", value_from=from_secret(mirror.secret_name, mirror.access_key_field)
            ),
            k8s.core.v1.EnvVarArgs(
                name="EDGEFM_MIRROR_SECRET_ACCESS_KEY",
                value_from=from_secret(mirror.secret_name, mirror.secret_key_field),
            ),
            k8s.core.v1.EnvVarArgs(name="EDGEFM_RESUME_DIR", value="/tmp/edgefm-resume"),
        ]
        container = k8s.core.v1.ContainerArgs(
            name="sync",
            image=args.settings.image,
            # `models sync` copies only files whose checksum differs, writes the manifest last, then runs
            # the same verification as `edgefm models verify` and exits non-zero on any difference.
            args=["models", "sync"],
            env=env,
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "250m", "memory": "256Mi"}, limits={"cpu": "2", "memory": "1Gi"}
            ),
            # Resume journals and checksum scratch go to /tmp; the root filesystem stays read-only.
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"), args.trust.mount()],
            security_context=container_security(read_only_root=True),
        )
        job_spec = k8s.batch.v1.JobSpecArgs(
            backoff_limit=3,
            # A stalled transfer must not hold the slot past the next run.
            active_deadline_seconds=3 * 3600,
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=meta(f"{name}", site, comp),
                spec=k8s.core.v1.PodSpecArgs(
                    # The sync talks to two S3 endpoints, never the Kubernetes API.
                    automount_service_account_token=False,
                    # The edgefm-tools image's unprivileged user (images/edgefm-tools/Dockerfile).
                    security_context=pod_security(10001),
                    restart_policy="Never",
                    volumes=[
                        k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                        args.trust.volume(),
                    ],
                    containers=[container],
                ),
            ),
        )
        self.cron_job = k8s.batch.v1.CronJob(
            name,
            metadata=meta(name, site, comp, args.namespace, annotations={"edgefm.io/model": f"{args.model.name}"}),
            spec=k8s.batch.v1.CronJobSpecArgs(
                schedule=args.settings.schedule,
                concurrency_policy="Forbid",
                successful_jobs_history_limit=3,
                failed_jobs_history_limit=3,
                job_template=k8s.batch.v1.JobTemplateSpecArgs(metadata=meta(name, site, comp), spec=job_spec),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[creds]),
        )
        self.register_outputs({"prefix": self.prefix, "schedule": args.settings.schedule})
