"""Every sample site stack under mocks: the resource graph and the properties that matter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edgefm.model.fields import FLOATING_TAGS
from tests.harness import STACKS, Recorded, Run, is_secret, iter_containers, run_site_file, unwrap

SITES = sorted(STACKS.glob("Pulumi.site-*.yaml"))
COMPONENT_TYPES = {
    "edgefm:spoke:SpokeAppliance",
    "edgefm:spoke:ApplianceCluster",
    "edgefm:spoke:SiteStorage",
    "edgefm:spoke:ModelSync",
    "edgefm:spoke:ModelServing",
    "edgefm:spoke:Monitoring",
}

# Expected resource counts per sample site: the graph is part of the contract, as in fabric's tftest lines.
EXPECTED_COUNTS = {
    "site-bridge-north": {
        "edgefm:spoke:GpuOperator": 1,
        "edgefm:spoke:FineTuning": 1,
        "command:remote:Command": 5,
        "kubernetes:batch/v1:Job": 4,
        "kubernetes:helm.cattle.io/v1:HelmChart": 4,
        "kubernetes:batch/v1:CronJob": 1,
        "kubernetes:apps/v1:Deployment": 2,
        "kubernetes:core/v1:Namespace": 4,
        "kubernetes:cert-manager.io/v1:Certificate": 1,
        "kubernetes:cert-manager.io/v1:ClusterIssuer": 1,
    },
    "site-bridge-south": {
        "edgefm:spoke:GpuOperator": 1,
        "edgefm:spoke:FineTuning": 0,
        "command:remote:Command": 5,
        "kubernetes:batch/v1:Job": 3,
        "kubernetes:helm.cattle.io/v1:HelmChart": 4,
        "kubernetes:core/v1:ConfigMap": 4,
    },
    "site-viaduct-cpu": {
        "edgefm:spoke:GpuOperator": 0,
        "edgefm:spoke:FineTuning": 0,
        "command:remote:Command": 5,
        "kubernetes:batch/v1:Job": 3,
        "kubernetes:helm.cattle.io/v1:HelmChart": 3,
        "kubernetes:core/v1:Namespace": 3,
    },
    "site-harbor-ocp": {
        "edgefm:spoke:GpuOperator": 1,
        "edgefm:spoke:FineTuning": 1,
        "command:remote:Command": 0,
        "kubernetes:objectbucket.io/v1alpha1:ObjectBucketClaim": 3,
        "kubernetes:operators.coreos.com/v1alpha1:Subscription": 2,
        "kubernetes:operators.coreos.com/v1:OperatorGroup": 2,
        "kubernetes:nvidia.com/v1:ClusterPolicy": 1,
        "kubernetes:helm.cattle.io/v1:HelmChart": 0,
        "kubernetes:batch/v1:Job": 1,
        "kubernetes:cert-manager.io/v1:Certificate": 0,
    },
}

_RUNS: dict[str, Run] = {}


def run_for(path: Path) -> Run:
    if path.stem not in _RUNS:
        _RUNS[path.stem] = run_site_file(path)
    return _RUNS[path.stem]


def stack_of(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


@pytest.fixture(params=SITES, ids=stack_of)
def site_run(request: pytest.FixtureRequest) -> tuple[str, Run]:
    path: Path = request.param
    return stack_of(path), run_for(path)


def test_sample_fleet_has_the_four_kinds_of_site() -> None:
    assert set(EXPECTED_COUNTS) == {stack_of(p) for p in SITES}


def test_resource_graph(site_run: tuple[str, Run]) -> None:
    stack, run = site_run
    counts = run.counts()
    assert set(counts) >= COMPONENT_TYPES, COMPONENT_TYPES - set(counts)
    for typ, expected in EXPECTED_COUNTS[stack].items():
        assert counts.get(typ, 0) == expected, f"{stack}: {typ} {counts.get(typ, 0)} != {expected}"
    assert counts["pulumi:providers:kubernetes"] == 1


def test_children_are_parented_to_components(site_run: tuple[str, Run]) -> None:
    stack, run = site_run
    for r in run.resources:
        if r.type == "pulumi:pulumi:Stack":
            continue
        if r.type == "edgefm:spoke:SpokeAppliance":
            assert r.parent.endswith(f"pulumi:pulumi:Stack::edgefm-{stack}"), r.parent
        else:
            assert "edgefm:spoke:" in r.parent or "edgefm:cluster:" in r.parent, f"{r.type} {r.name} parent {r.parent}"


def test_names_are_unique_per_type(site_run: tuple[str, Run]) -> None:
    _, run = site_run
    seen = [(r.type, r.name) for r in run.resources]
    assert len(seen) == len(set(seen))
    k8s_names = [
        (r.type, unwrap(r.inputs).get("metadata", {}).get("namespace"), unwrap(r.inputs)["metadata"]["name"])
        for r in run.k8s_objects()
    ]
    assert len(k8s_names) == len(set(k8s_names)), "two Kubernetes objects share kind, namespace and name"


def test_gpu_limits_only_on_gpu_sites(site_run: tuple[str, Run]) -> None:
    stack, run = site_run
    triton = run.one("kubernetes:apps/v1:Deployment", "-triton")
    container = next(c for c in iter_containers(triton) if c["name"] == "triton")
    limits = container["resources"]["limits"]
    if stack == "site-viaduct-cpu":
        assert "nvidia.com/gpu" not in limits
        assert not run.of_type("edgefm:spoke:GpuOperator")
    else:
        assert limits["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["cpu"] == limits["cpu"]


def test_triton_ports_probes_pdb_and_network_policy(site_run: tuple[str, Run]) -> None:
    _, run = site_run
    triton = run.one("kubernetes:apps/v1:Deployment", "-triton")
    container = next(c for c in iter_containers(triton) if c["name"] == "triton")
    assert {p["containerPort"] for p in container["ports"]} == {8000, 8001, 8002}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert any(a.startswith("--model-repository=s3://") for a in container["args"])
    svc = unwrap(run.one("kubernetes:core/v1:Service", "-triton-svc").inputs)
    assert svc["spec"]["type"] == "ClusterIP"
    assert run.one("kubernetes:policy/v1:PodDisruptionBudget", "-triton-pdb")
    netpol = unwrap(run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "-triton-netpol").inputs)
    cidrs = [p["ipBlock"]["cidr"] for rule in netpol["spec"]["ingress"] for p in rule["from"] if "ipBlock" in p]
    facts = unwrap(run.one("kubernetes:core/v1:ConfigMap", "-facts").inputs)
    import json

    assert cidrs == [json.loads(facts["data"]["facts.json"])["network"]]


def test_labels_on_every_object(site_run: tuple[str, Run]) -> None:
    stack, run = site_run
    site = stack.removeprefix("site-")
    for obj in run.k8s_objects():
        if obj.type.endswith("Patch"):
            continue  # a patch sets fields on an object edgefm does not own (a node's MIG label): no ownership labels
        labels = unwrap(obj.inputs)["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "edgefm", obj.name
        assert labels["edgefm.io/site"] == site, obj.name


def test_pod_templates_carry_site_labels(site_run: tuple[str, Run]) -> None:
    stack, run = site_run
    for obj in run.kinds("Deployment") + run.kinds("Job") + run.kinds("CronJob"):
        spec = unwrap(obj.inputs)["spec"]
        template = spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else spec["template"]
        assert template["metadata"]["labels"]["edgefm.io/site"] == stack.removeprefix("site-"), obj.name


_PINNED = re.compile(r"^[a-z0-9.-]+(:\d+)?/[a-z0-9./_-]+(:[\w.-]+|@sha256:[a-f0-9]{64})$")


def test_images_and_charts_are_pinned(site_run: tuple[str, Run]) -> None:
    _, run = site_run
    images = [c["image"] for obj in run.k8s_objects() for c in iter_containers(obj) if "image" in c]
    assert images, "no containers found"
    for image in images:
        assert _PINNED.match(image), image
        assert image.rsplit(":", 1)[-1] not in FLOATING_TAGS, image
    for chart in run.kinds("HelmChart"):
        version = unwrap(chart.inputs)["spec"]["version"]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", version), (chart.name, version)
    for sub in run.kinds("Subscription"):
        spec = unwrap(sub.inputs)["spec"]
        assert spec["installPlanApproval"] == "Manual" and re.search(r"\.v?\d+\.\d+\.\d+", spec["startingCSV"])


def test_containers_declare_requests_and_limits(site_run: tuple[str, Run]) -> None:
    _, run = site_run
    for obj in run.k8s_objects():
        for c in iter_containers(unwrap_record(obj)):
            res = c.get("resources", {})
            assert res.get("requests") and res.get("limits"), f"{obj.name}/{c['name']}"


def unwrap_record(obj: Recorded) -> Recorded:
    return Recorded(
        obj.type,
        obj.name,
        unwrap(obj.inputs),
        obj.custom,
        obj.parent,
        obj.protect,
        obj.retain_on_delete,
        obj.secret_outputs,
    )


def test_secrets_are_secret(site_run: tuple[str, Run]) -> None:
    stack, run = site_run
    for secret in run.kinds("Secret"):
        assert is_secret(secret.inputs.get("stringData")), f"{secret.name} holds plain data"
    assert run.kinds("Secret"), "expected credentials Secrets"
    for cmd in run.of_type("command:remote:Command"):
        assert is_secret(cmd.inputs["connection"]), f"{cmd.name}: SSH key not secret"
        if "EDGEFM_K3S_TOKEN" in str(cmd.inputs.get("environment")):
            assert is_secret(cmd.inputs["environment"]["EDGEFM_K3S_TOKEN"]) or is_secret(cmd.inputs["environment"])
    for cmd in run.of_type("command:remote:Command"):
        if cmd.name.endswith(("-token", "-kubeconfig")):
            assert "stdout" in cmd.secret_outputs, cmd.name
    generated = [r for r in run.resources if r.type.startswith("pulumi-python:dynamic")]
    assert all(set(r.secret_outputs) & {"value", "private_key"} for r in generated)
    provider = run.one("pulumi:providers:kubernetes")
    if "kubeconfig" in provider.inputs:
        assert is_secret(provider.inputs["kubeconfig"])
    # No secret value (the hub's site key, generated passwords, the SSH key) sits in a plain input.
    leaked = [
        (r.type, r.name, text)
        for r in run.resources
        for text in plain_strings(r.inputs)
        if any(marker in text for marker in ("registry-secret-for-", "fake-test-key", *run.generated_secrets))
    ]
    assert not leaked, leaked
    # MinIO sites generate a root password, a KMS key and a CA; OpenShift's ODF needs none of them.
    assert len(run.generated_secrets) == (0 if stack == "site-harbor-ocp" else 3)


def plain_strings(value: object) -> list[str]:
    """Strings in resource inputs that are not wrapped as secrets."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


def test_datasets_bucket_is_protected_and_kept(site_run: tuple[str, Run]) -> None:
    stack, run = site_run
    buckets = [r for r in run.k8s_objects() if unwrap(r.inputs)["metadata"].get("labels", {}).get("edgefm.io/bucket")]
    by_purpose = {unwrap(r.inputs)["metadata"]["labels"]["edgefm.io/bucket"]: r for r in buckets}
    assert set(by_purpose) == {"datasets", "models", "checkpoints"}
    assert by_purpose["datasets"].protect and by_purpose["datasets"].retain_on_delete
    assert not by_purpose["models"].protect
    for purpose, obj in by_purpose.items():
        ann = unwrap(obj.inputs)["metadata"]["annotations"]
        assert ann["edgefm.io/bucket-public"] == "false"
        assert ann["edgefm.io/bucket-encryption"] == "sse-s3"
        assert ann["edgefm.io/bucket-replication"] == "none"
        assert ann["edgefm.io/bucket-versioning"] == ("false" if purpose == "checkpoints" else "true")
        assert ann["edgefm.io/bucket-name"] == f"{stack.removeprefix('site-')}-{purpose}"


def test_minio_bucket_jobs_lock_down_each_bucket() -> None:
    run = run_for(STACKS / "Pulumi.site-bridge-north.yaml")
    (container,) = list(iter_containers(unwrap_record(run.one("kubernetes:batch/v1:Job", "bucket-datasets"))))
    script = container["command"][-1]
    for step in (
        "$MC mb --ignore-existing site/bridge-north-datasets",
        "$MC anonymous set none",
        "$MC encrypt set sse-s3",
        "$MC version enable",
    ):
        assert step in script
    # mc reaches MinIO over TLS and trusts the site CA from its own config directory.
    assert "cp /etc/edgefm/ca/ca.crt /tmp/mc/certs/CAs/" in script
    assert {e["name"]: e.get("value") for e in container["env"]}["MINIO_URL"].startswith("https://")


def test_storage_is_tls_only_with_the_site_ca() -> None:
    run = run_for(STACKS / "Pulumi.site-bridge-north.yaml")
    chart = yaml.safe_load(
        unwrap(run.one("kubernetes:helm.cattle.io/v1:HelmChart", "storage-minio").inputs)["spec"]["valuesContent"]
    )
    assert chart["tls"] == {
        "enabled": True,
        "certSecret": "site-storage-tls",
        "publicCrt": "tls.crt",
        "privateKey": "tls.key",
    }
    cert = unwrap(run.one("kubernetes:cert-manager.io/v1:Certificate").inputs)["spec"]
    assert (
        cert["issuerRef"]["name"] == "edgefm-site-ca"
        and "*.bridge-north-storage-minio-svc.edgefm-system.svc" in cert["dnsNames"]
    )
    issuer = unwrap(run.one("kubernetes:cert-manager.io/v1:ClusterIssuer").inputs)
    assert issuer["spec"] == {"ca": {"secretName": "edgefm-site-ca"}}
    ca_key = run.one("kubernetes:core/v1:Secret", "-tls-ca-secret")
    assert is_secret(ca_key.inputs["stringData"])
    bundle = unwrap(run.one("kubernetes:core/v1:ConfigMap", "storage-ca-bundle").inputs)
    assert "BEGIN CERTIFICATE" in bundle["data"]["ca.crt"] and "PRIVATE KEY" not in bundle["data"]["ca.crt"]
    # Every client of the store mounts that CA and is told where it is.
    sync = unwrap(run.one("kubernetes:batch/v1:CronJob").inputs)
    (container,) = sync["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EDGEFM_MIRROR_CA_BUNDLE"] == "/etc/edgefm/ca/ca.crt" and "EDGEFM_REGISTRY_CA_BUNDLE" not in env
    triton = unwrap(run.one("kubernetes:apps/v1:Deployment", "-triton").inputs)["spec"]["template"]["spec"]
    assert triton["initContainers"][0]["name"] == "trust-site-ca"
    mounts = {m["mountPath"] for m in triton["containers"][0]["volumeMounts"]}
    assert "/etc/ssl/certs/ca-certificates.crt" in mounts


def test_openshift_storage_trusts_the_service_ca() -> None:
    run = run_for(STACKS / "Pulumi.site-harbor-ocp.yaml")
    bundle = unwrap(run.one("kubernetes:core/v1:ConfigMap", "storage-ca-bundle").inputs)
    assert bundle["metadata"]["annotations"] == {"service.beta.openshift.io/inject-cabundle": "true"}
    assert not run.of_type("edgefm:spoke:SiteTls")


def test_model_sync_uses_site_read_credentials_and_the_profile_version() -> None:
    run = run_for(STACKS / "Pulumi.site-bridge-south.yaml")
    cron = unwrap(run.one("kubernetes:batch/v1:CronJob").inputs)
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["models", "sync"]
    env = {e["name"]: e for e in container["env"]}
    assert env["EDGEFM_MODEL_NAME"]["value"] == "bridge-defect-vit"
    assert env["EDGEFM_MODEL_VERSION"]["value"] == "1.1.0"  # the canary profile's version
    assert env["EDGEFM_REGISTRY_ENDPOINT_URL"]["value"] == "https://registry.hub.example.test"
    assert env["EDGEFM_MIRROR_PREFIX"]["value"] == "foundation"
    assert env["EDGEFM_REGISTRY_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "hub-registry-read"
    assert env["EDGEFM_MIRROR_BUCKET"]["value"] == "bridge-south-models"
    secret = run.one("kubernetes:core/v1:Secret", "-model-sync-registry")
    assert unwrap(secret.inputs)["stringData"]["accessKeyId"] == "site-bridge-south"


def test_gpu_sharing_settings_reach_the_operator() -> None:
    south = run_for(STACKS / "Pulumi.site-bridge-south.yaml")
    sharing = unwrap(south.one("kubernetes:core/v1:ConfigMap", "-gpu-sharing").inputs)
    assert "replicas: 4" in sharing["data"]["any"]
    chart = unwrap(south.one("kubernetes:helm.cattle.io/v1:HelmChart", "-gpu-chart").inputs)
    assert "CONTAINERD_SOCKET" in chart["spec"]["valuesContent"]  # k3s's containerd
    harbor = run_for(STACKS / "Pulumi.site-harbor-ocp.yaml")
    policy = unwrap(harbor.one("kubernetes:nvidia.com/v1:ClusterPolicy").inputs)
    # The layout itself is each GPU node's `nvidia.com/mig.config` label (the operator's schema refuses it as the
    # default; found by applying to a cluster with the operator's own CRD).
    assert policy["spec"]["migManager"] == {"enabled": True, "config": {"default": "all-disabled"}}
    nodes = {unwrap(p.inputs)["metadata"]["name"] for p in harbor.kinds("NodePatch")}
    assert nodes == {"ocp-a", "ocp-b", "ocp-c"}


def test_fine_tuning_job_reads_site_data_and_skips_await() -> None:
    run = run_for(STACKS / "Pulumi.site-bridge-north.yaml")
    job = unwrap(next(r for r in run.kinds("Job") if "finetune" in r.name).inputs)
    assert job["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    (train,) = job["spec"]["template"]["spec"]["containers"]
    assert train["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"] for e in train["env"]}
    assert {"EDGEFM_DATASETS_BUCKET", "EDGEFM_MODELS_BUCKET", "EDGEFM_SITE_S3_ENDPOINT"} <= env
    assert not any(name.startswith("EDGEFM_REGISTRY") for name in env), "training must not reach the hub"
    assert "crack" in train["args"][train["args"].index("--classes") + 1]


def test_render_mode_bootstraps_nothing(tmp_path: Path) -> None:
    run = run_site_file(STACKS / "Pulumi.site-bridge-north.yaml", render_dir=str(tmp_path))
    assert not run.of_type("command:remote:Command")
    provider = run.one("pulumi:providers:kubernetes")
    assert unwrap(provider.inputs)["renderYamlToDirectory"] == str(tmp_path / "site-bridge-north")


def test_monitoring_labels_and_scrapes() -> None:
    import yaml

    for stack, dcgm in (("site-bridge-north", True), ("site-viaduct-cpu", False)):
        run = run_for(STACKS / f"Pulumi.{stack}.yaml")
        config = yaml.safe_load(
            unwrap(run.one("kubernetes:core/v1:ConfigMap", "-monitoring-config").inputs)["data"]["prometheus.yml"]
        )
        assert config["global"]["external_labels"]["site"] == stack.removeprefix("site-")
        assert {"site", "region", "tier"} <= set(config["global"]["external_labels"])
        # Each site writes to its own path, behind its own login (see SiteAccessShard).
        assert config["remote_write"][0]["url"] == f"https://telemetry.hub.example.test/sites/{stack[5:]}/api/v1/write"
        jobs = {j["job_name"] for j in config["scrape_configs"]}
        assert ("dcgm-exporter" in jobs) is dcgm
        (agent,) = list(iter_containers(unwrap_record(run.one("kubernetes:apps/v1:Deployment", "-monitoring-agent"))))
        assert "--agent" in agent["args"]


def test_stack_exports() -> None:
    run = run_for(STACKS / "Pulumi.site-bridge-north.yaml")
    assert run.exports["kubeconfig"][1] is True, "kubeconfig must be a secret output"
    assert run.exports["matchedProfiles"] == (["gpu", "finetune", "production"], False)
    assert run.exports["profile"][0]["serving"]["replicas"] == 2  # so a preview diffs the resolved profile
    assert run.exports["modelRepository"][0].startswith(
        "s3://https://bridge-north-storage-minio.edgefm-system.svc:9000/"
    )


def test_mig_layout_is_a_label_on_each_gpu_node(site_run: tuple[str, Run]) -> None:
    """The GPU operator's schema allows only `all-disabled` or "" as the default MIG layout; the layout a site's
    profile asks for goes on each GPU node as `nvidia.com/mig.config`."""
    stack, run = site_run
    patches = run.kinds("NodePatch")
    if stack != "site-harbor-ocp":
        assert patches == []
        return
    policy = unwrap(run.one("kubernetes:nvidia.com/v1:ClusterPolicy", "-cluster-policy").inputs)
    assert policy["spec"]["migManager"]["config"]["default"] == "all-disabled"
    labels = {unwrap(p.inputs)["metadata"]["name"]: unwrap(p.inputs)["metadata"]["labels"] for p in patches}
    assert labels and all(v == {"nvidia.com/mig.config": "all-1g.10gb"} for v in labels.values()), labels
