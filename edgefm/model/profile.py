"""The resolved site profile: every component setting a site gets once placement has run."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from edgefm.model.fields import (
    CHART_NAME,
    CHART_REPO,
    DURATION,
    HTTP_URL,
    K3S_VERSION,
    MIG_PROFILE,
    OLM_CSV,
    CpuQuantity,
    Cron,
    DnsLabel,
    MemoryQuantity,
    Model,
    PinnedImage,
    PinnedVersion,
)

Url = str  # kept as text: rendered into manifests verbatim


class ChartRef(Model):
    """A Helm chart the site's cluster pulls itself (k3s helm-controller)."""

    repo: Url = Field(pattern=CHART_REPO)
    chart: str = Field(pattern=CHART_NAME)
    version: PinnedVersion


class OlmRef(Model):
    """An operator installed through OLM on OpenShift."""

    package: str
    channel: str
    source: str = "certified-operators"
    starting_csv: str = Field(pattern=OLM_CSV)


class K3sSettings(Model):
    version: str = Field(pattern=K3S_VERSION)
    # Air-gapped sites point these at a mirror on the site network.
    install_script_url: Url = Field(pattern=HTTP_URL)
    artifact_url: Url | None = Field(default=None, pattern=HTTP_URL)
    # Extra SANs let clients reach the API through a VIP or DNS name as well as the first node.
    tls_san: list[str] = Field(default_factory=list)


class ClusterSettings(Model):
    k3s: K3sSettings
    # Plain Kubernetes lacks k3s's built-in helm-controller; edgefm installs the same controller there.
    helm_controller_image: PinnedImage


class StorageSettings(Model):
    minio_chart: ChartRef
    # cert-manager issues and renews the storage certificate from the site CA (k3s/Kubernetes).
    cert_manager_chart: ChartRef
    minio_image: PinnedImage
    mc_image: PinnedImage
    size_gi: int = Field(ge=10, le=100_000)
    # Checkpoints are scratch: keep a few days of them.
    checkpoint_retention_days: int = Field(ge=1, le=365)
    openshift_storage_class: str = "openshift-storage.noobaa.io"


class GpuSharing(Model):
    mode: Literal["none", "time-slicing", "mig"] = "none"
    # Schedulable slices per physical GPU: time-slicing replicas, or MIG instances per GPU.
    replicas: int = Field(default=1, ge=1, le=48)
    mig_profile: str | None = Field(default=None, pattern=MIG_PROFILE)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode == "none" and self.replicas != 1:
            raise ValueError("replicas > 1 needs mode time-slicing or mig")
        if self.mode == "mig" and self.mig_profile is None:
            raise ValueError("mode mig needs migProfile, e.g. all-1g.10gb")
        if self.mode != "mig" and self.mig_profile is not None:
            raise ValueError("migProfile is only used with mode mig")
        return self


class GpuDriver(Model):
    # Appliances with a preinstalled host driver turn the operator's driver container off.
    enabled: bool = True
    version: PinnedVersion


class GpuOperatorSettings(Model):
    enabled: bool
    chart: ChartRef
    olm: OlmRef
    driver: GpuDriver
    toolkit_enabled: bool = True
    sharing: GpuSharing = GpuSharing()


class ModelRef(Model):
    """The foundation model a site mirrors: a pinned version, or a registry channel it follows."""

    name: DnsLabel
    version: PinnedVersion | None = None
    channel: DnsLabel | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.version is None) == (self.channel is None):
            raise ValueError("set exactly one of model.version and model.channel")
        return self


class ModelSyncSettings(Model):
    schedule: Cron
    image: PinnedImage


class FineTuningSettings(Model):
    enabled: bool
    image: PinnedImage
    gpus: int = Field(ge=0, le=16)
    cpu: CpuQuantity
    memory: MemoryQuantity
    epochs: int = Field(ge=1, le=1000)
    batch_size: int = Field(ge=1, le=4096)
    learning_rate: float = Field(gt=0, lt=1)
    classes: list[str] = Field(min_length=2, max_length=1000)
    # Deadline so a stuck run frees the appliance's GPUs.
    timeout_minutes: int = Field(ge=5, le=7 * 24 * 60)


class ServingSettings(Model):
    image: PinnedImage
    replicas: int = Field(ge=1, le=20)
    gpus_per_replica: int = Field(ge=0, le=16)
    cpu: CpuQuantity
    memory: MemoryQuantity
    # Name of the model in the Triton repository that fine-tuning writes.
    model_name: DnsLabel
    # Sites may expose Triton outside the cluster (LoadBalancer) only when allowed.
    expose: Literal["cluster", "loadbalancer"] = "cluster"


class MonitoringSettings(Model):
    prometheus_image: PinnedImage
    node_exporter_chart: ChartRef
    scrape_interval: str = Field(pattern=DURATION)


class SiteProfile(Model):
    cluster: ClusterSettings
    storage: StorageSettings
    gpu_operator: GpuOperatorSettings
    model: ModelRef
    model_sync: ModelSyncSettings
    fine_tuning: FineTuningSettings
    serving: ServingSettings
    monitoring: MonitoringSettings


class HubProfile(Model):
    """Pinned versions of what the hub runs; lives in the placement file beside the site profiles."""

    minio_chart: ChartRef
    minio_image: PinnedImage
    prometheus_chart: ChartRef
    grafana_chart: ChartRef
    helm_controller_image: PinnedImage
    # The registry's site-user reconciler (datacenter flavor).
    kubectl_image: PinnedImage
    mc_image: PinnedImage
