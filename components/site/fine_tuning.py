"""FineTuning: the Job that fine-tunes the mirrored foundation model on the site's labelled data and writes
a new model version into the Triton repository. The labelled data never leaves the site bucket."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.k8s.kube import WORKLOAD_NAMESPACE, container_security, meta, pod_security
from components.site.site_storage import BucketAccess, TrustBundle
from edgefm.model.profile import FineTuningSettings, ModelRef

FINETUNED_PREFIX = "finetuned/"
# The unprivileged user edgefm's images run as (images/edgefm-tools, workloads/bridge-defects Dockerfiles).
EDGEFM_UID = 10001


@dataclass
class FineTuningArgs:
    site: str
    settings: FineTuningSettings
    model: ModelRef
    # Where ModelSync mirrors the foundation model inside the models bucket, and the mirror's key prefix.
    base_prefix: str
    mirror_prefix: str
    serving_model_name: str
    storage_endpoint: str
    trust: TrustBundle
    datasets: BucketAccess
    models: BucketAccess
    checkpoints: BucketAccess
    # The edgefm tools image, used to verify the mirrored base model before training starts.
    tools_image: str
    namespace: pulumi.Input[str] = WORKLOAD_NAMESPACE


class FineTuning(pulumi.ComponentResource):
    job_name: str

    def __init__(self, name: str, args: FineTuningArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgefm:spoke:FineTuning", name, None, opts)
        site, comp, s = args.site, "fine-tuning", args.settings
        run = {"settings": s.model_dump(mode="json"), "model": args.model.model_dump(mode="json")}
        # A Job's pod template is immutable: the name carries a digest of its settings, so changing any
        # of them (or the base model) starts a new run rather than failing to patch the old one.
        digest = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:8]
        self.job_name = f"{name}-{digest}"
        endpoint = k8s.core.v1.EnvVarArgs(name="EDGEFM_SITE_S3_ENDPOINT", value=args.storage_endpoint)
        storage_env = [
            endpoint,
            k8s.core.v1.EnvVarArgs(name="EDGEFM_SITE_S3_CA_BUNDLE", value=args.trust.path),
            # The trainer talks to the site store only, so the process-wide bundle is the site CA.
            k8s.core.v1.EnvVarArgs(name="AWS_CA_BUNDLE", value=args.trust.path),
            *args.datasets.env("EDGEFM_DATASETS"),
            *args.models.env("EDGEFM_MODELS"),
            *args.checkpoints.env("EDGEFM_CHECKPOINTS"),
        ]
        resources: dict[str, str] = {"cpu": s.cpu, "memory": s.memory}
        limits = dict(resources)
        if s.gpus:
            limits["nvidia.com/gpu"] = str(s.gpus)
        mount_tmp = [k8s.core.v1.VolumeMountArgs(name="scratch", mount_path="/scratch"), args.trust.mount()]
        # The mirror holds the manifest ModelSync copied last: checking the files against it proves the base
        # model is complete and intact without giving this pod any hub credentials.
        verify = k8s.core.v1.ContainerArgs(
            name="verify-base-model",
            image=args.tools_image,
            args=["models", "verify", args.model.name, args.model.version or ""],
            env=[
                k8s.core.v1.EnvVarArgs(name="EDGEFM_REGISTRY_ENDPOINT_URL", value=args.storage_endpoint),
                k8s.core.v1.EnvVarArgs(name="EDGEFM_REGISTRY_PREFIX", value=args.mirror_prefix),
                k8s.core.v1.EnvVarArgs(name="EDGEFM_REGISTRY_CA_BUNDLE", value=args.trust.path),
                *args.models.env("EDGEFM_REGISTRY"),
            ],
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "250m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}
            ),
            volume_mounts=mount_tmp,
            security_context=container_security(),
        )
        train = k8s.core.v1.ContainerArgs(
            name="finetune",
            image=s.image,
            args=[
                "--base-model",
                args.base_prefix,
                "--dataset-prefix",
                "labelled/",
                "--output-prefix",
                FINETUNED_PREFIX,
                "--model-name",
                args.serving_model_name,
                "--classes",
                ",".join(s.classes),
                "--epochs",
                str(s.epochs),
                "--batch-size",
                str(s.batch_size),
                "--learning-rate",
                str(s.learning_rate),
                "--checkpoint-prefix",
                f"{self.job_name}/",
            ],
            env=storage_env,
            resources=k8s.core.v1.ResourceRequirementsArgs(requests=resources, limits=limits),
            volume_mounts=mount_tmp,
            security_context=container_security(),
        )
        self.job = k8s.batch.v1.Job(
            self.job_name,
            metadata=meta(
                self.job_name,
                site,
                comp,
                args.namespace,
                annotations={
                    "edgefm.io/base-model": f"{args.model.name}@{args.model.version or args.model.channel}",
                    # Training takes hours; `pulumi up` should not wait on it (pulumi-kubernetes awaits Jobs).
                    "pulumi.com/skipAwait": "true",
                },
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=2,
                active_deadline_seconds=s.timeout_minutes * 60,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=meta(self.job_name, site, comp),
                    spec=k8s.core.v1.PodSpecArgs(
                        # Training reads buckets, never the Kubernetes API.
                        automount_service_account_token=False,
                        security_context=pod_security(EDGEFM_UID),
                        restart_policy="Never",
                        init_containers=[verify],
                        containers=[train],
                        volumes=[
                            k8s.core.v1.VolumeArgs(name="scratch", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                            args.trust.volume(),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"jobName": self.job_name, "outputPrefix": FINETUNED_PREFIX})
