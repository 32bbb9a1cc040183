"""The hub and its access shards under mocks, both flavors: registry hardening, per-site read-only access owned by
the shards, sealed credentials only their site opens, telemetry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pulumi
import pytest
import yaml

from components.hub.in_cluster_model_registry import USERS_TEMPLATE, reconcile_script
from components.hub.site_credential import LIST_ACTIONS, READ_ACTIONS, derive_secret, ssha_entry
from edgefm.model.sealing import SealError, generate_keypair, open_sealed
from edgefm.program import run
from tests.harness import STACKS, Run, is_secret, run_access, run_hub_file, run_program, unwrap

SITES = ["bridge-north", "bridge-south", "harbor-ocp", "viaduct-cpu"]
HUB_FILE = STACKS / "Pulumi.hub.yaml"
KEYS = {s: generate_keypair() for s in SITES}
AWS = {"edgefm:hub": {**yaml.safe_load(HUB_FILE.read_text())["config"]["edgefm:hub"], "flavor": "aws"}}


@pytest.fixture(scope="module")
def datacenter() -> Run:
    return run_hub_file(HUB_FILE)


@pytest.fixture(scope="module")
def aws_hub() -> Run:
    return run_hub_file(HUB_FILE, overrides=AWS)


@pytest.fixture(scope="module")
def shard() -> Run:
    return run_access(HUB_FILE, {s: k.public_key for s, k in KEYS.items()})


@pytest.fixture(scope="module")
def aws_shard() -> Run:
    return run_access(HUB_FILE, {s: k.public_key for s, k in KEYS.items()}, overrides=AWS)


def test_datacenter_graph(datacenter: Run) -> None:
    counts = datacenter.counts()
    assert counts["edgefm:hub:HubCluster"] == 1
    assert counts["edgefm:hub:InClusterModelRegistry"] == 1
    assert counts["edgefm:hub:FleetTelemetry"] == 1
    assert counts["edgefm:cluster:HelmController"] == 1  # hub distribution is plain Kubernetes
    assert counts["kubernetes:helm.cattle.io/v1:HelmChart"] == 3  # MinIO, Prometheus, Grafana
    assert counts["kubernetes:networking.k8s.io/v1:Ingress"] == 2  # registry, Grafana
    assert counts["kubernetes:batch/v1:CronJob"] == 1  # the site-user reconciler
    assert not any(t.startswith("aws:") for t in counts)
    # Nothing on the hub names a site: onboarding one never changes it.
    assert not any("bridge" in r.name or "bridge" in str(r.inputs) for r in datacenter.resources)


def test_datacenter_site_access_is_read_only(datacenter: Run, shard: Run) -> None:
    policy = json.loads(
        unwrap(datacenter.one("kubernetes:core/v1:ConfigMap", "-site-policy").inputs)["data"]["policy.json"]
    )
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions == set(READ_ACTIONS + LIST_ACTIONS)
    assert all("*" not in a for a in actions)
    chart = yaml.safe_load(
        unwrap(datacenter.one("kubernetes:helm.cattle.io/v1:HelmChart", "registry-minio").inputs)["spec"][
            "valuesContent"
        ]
    )
    # MinIO users come from the shards' Secrets through the reconciler, never from the chart's values.
    assert chart["users"] == []
    assert [p["name"] for p in chart["policies"]] == ["edgefm-site-read"]
    assert chart["buckets"] == [
        {
            "name": "edgefm-models",
            "policy": "none",
            "purge": False,
            "versioning": True,
            "objectlocking": False,
        }
    ]
    # One Secret for the shard's sites: each site's registry key (a line for the reconciler) and telemetry login.
    (access,) = shard.kinds("Secret")
    assert is_secret(access.inputs["stringData"])
    files = unwrap(access.inputs)["stringData"]
    assert set(files) == {"users", "auth"}
    assert files["users"] == "".join(
        f"site-{s} {derive_secret('test-edgefm:credentialSeed', f'site:{s}')}\n" for s in sorted(SITES)
    )
    labels = unwrap(access.inputs)["metadata"]["labels"]
    assert labels["edgefm.io/site-access"] == "true" and labels["edgefm.io/access-shard"] == "hub-access-000"


def test_onboarding_a_site_changes_only_its_shards_two_objects() -> None:
    """The shard holds two objects whatever its size: a new site changes their contents, adds no resource, and
    leaves every other site's login, key and write path as they were."""
    before = run_access(HUB_FILE, {s: KEYS[s].public_key for s in SITES[:3]})
    after = run_access(HUB_FILE, {s: KEYS[s].public_key for s in SITES})
    assert [r.name for r in before.resources] == [r.name for r in after.resources]
    assert len(after.kinds("Secret")) == 1 and len(after.kinds("Ingress")) == 1
    old, new = (unwrap(r.kinds("Secret")[0].inputs)["stringData"] for r in (before, after))
    for file in ("users", "auth"):
        assert set(old[file].splitlines()) < set(new[file].splitlines())
    empty = run_access(HUB_FILE, {})
    assert not empty.kinds("Secret") and not empty.kinds("Ingress")


def test_reconciler_reads_only_site_secrets_and_applies_the_read_policy(datacenter: Run) -> None:
    role = unwrap(datacenter.one("kubernetes:rbac.authorization.k8s.io/v1:Role").inputs)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]
    cron = unwrap(datacenter.one("kubernetes:batch/v1:CronJob").inputs)
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (lister,) = pod["initContainers"]
    assert {e["name"]: e["value"] for e in lister["env"]}["SELECTOR"] == "edgefm.io/site-access=true"
    script = pod["containers"][0]["command"][2]
    assert "mc admin policy attach hub edgefm-site-read" in script and "mc admin user remove" in script
    assert script == reconcile_script("http://hub-registry-minio:9000")
    assert USERS_TEMPLATE == "{{range .items}}{{if .data.users}}{{.data.users | base64decode}}{{end}}{{end}}"
    assert all(c["securityContext"]["readOnlyRootFilesystem"] for c in [lister, *pod["containers"]])


def test_derived_keys_are_stable_and_distinct() -> None:
    assert derive_secret("seed", "site:a") == derive_secret("seed", "site:a")
    assert derive_secret("seed", "site:a") != derive_secret("seed", "site:b")
    assert derive_secret("seed", "site:a") != derive_secret("other", "site:a")


def test_remote_write_is_authenticated_per_site(shard: Run) -> None:
    """Each site has its own login (a line of the shard's htpasswd file) and its own write path."""
    auth = unwrap(shard.one("kubernetes:core/v1:Secret").inputs)["stringData"]["auth"]
    seed = "test-edgefm:credentialSeed"
    assert auth.splitlines() == [ssha_entry(f"site-{s}", derive_secret(seed, f"site:{s}")) for s in sorted(SITES)]
    ingress = unwrap(shard.one("kubernetes:networking.k8s.io/v1:Ingress", "-write").inputs)
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    assert notes["nginx.ingress.kubernetes.io/auth-secret"] == "hub-access-000"
    assert notes["nginx.ingress.kubernetes.io/rewrite-target"] == "/api/v1/write"
    assert ingress["spec"]["tls"][0]["hosts"] == ["telemetry.hub.edgefm.example.net"]
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert [p["path"] for p in paths] == [f"/sites/{s}/api/v1/write" for s in sorted(SITES)]
    assert all(p["pathType"] == "Exact" for p in paths)
    assert all(p["backend"]["service"]["name"] == "hub-telemetry-prometheus" for p in paths)
    assert ssha_entry("u", "p") == ssha_entry("u", "p") and "{SSHA}" in ssha_entry("u", "p")


def test_grafana_gets_the_fleet_dashboard(datacenter: Run) -> None:
    dash = unwrap(datacenter.one("kubernetes:core/v1:ConfigMap", "-telemetry-dashboard").inputs)
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dash["data"]["edgefm-fleet.json"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    assert "DCGM_FI_DEV_GPU_UTIL" in exprs and "nv_inference_request_success" in exprs and "by (site)" in exprs
    prom = yaml.safe_load(
        unwrap(datacenter.one("kubernetes:helm.cattle.io/v1:HelmChart", "-telemetry-prometheus").inputs)["spec"][
            "valuesContent"
        ]
    )
    assert "web.enable-remote-write-receiver" in prom["server"]["extraFlags"]


def test_aws_registry_is_hardened(aws_hub: Run) -> None:
    bucket = aws_hub.one("aws:s3/bucket:Bucket")
    assert bucket.protect
    assert unwrap(bucket.inputs)["forceDestroy"] is False
    versioning = unwrap(aws_hub.one("aws:s3/bucketVersioning:BucketVersioning").inputs)
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    sse = unwrap(
        aws_hub.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs
    )
    rule = sse["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms" and rule["bucketKeyEnabled"]
    assert unwrap(aws_hub.one("aws:kms/key:Key").inputs)["enableKeyRotation"] is True
    block = unwrap(aws_hub.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs)
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    policy = json.loads(unwrap(aws_hub.one("aws:s3/bucketPolicy:BucketPolicy").inputs)["policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    lifecycle = unwrap(aws_hub.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs)
    assert lifecycle["rules"][0]["noncurrentVersionExpiration"]["noncurrentDays"] == 90


def test_aws_site_identities_are_read_only_and_scoped(aws_hub: Run, aws_shard: Run) -> None:
    assert not aws_hub.of_type("aws:iam/user:User")  # identities belong to the shards
    users = aws_shard.of_type("aws:iam/user:User")
    assert sorted(unwrap(u.inputs)["name"] for u in users) == sorted(f"edgefm-site-{s}" for s in SITES)
    for policy in aws_shard.of_type("aws:iam/userPolicy:UserPolicy"):
        doc = json.loads(unwrap(policy.inputs)["policy"])
        actions = {a for s in doc["Statement"] for a in s["Action"]}
        assert actions == {*READ_ACTIONS, *LIST_ACTIONS, "kms:Decrypt"}
        resources = [r for s in doc["Statement"] for r in s["Resource"]]
        assert all(r.startswith("arn:aws:") and r != "*" for r in resources)
        assert not any(a.endswith("*") for a in actions)
    keys = aws_shard.of_type("aws:iam/accessKey:AccessKey")
    assert len(keys) == len(SITES) and all("secret" in k.secret_outputs for k in keys)
    # No registry key on the hub cluster for the aws flavor: only the telemetry logins.
    (secret,) = aws_shard.kinds("Secret")
    assert set(unwrap(secret.inputs)["stringData"]) == {"auth"}


def test_hub_exports_no_site_credential(datacenter: Run) -> None:
    assert "siteCredentials" not in datacenter.exports and "sites" not in datacenter.exports
    assert datacenter.exports["telemetryHost"] == ("telemetry.hub.edgefm.example.net", False)
    assert datacenter.exports["registryEndpoint"] == ("https://registry.hub.edgefm.example.net", False)


def test_each_sealed_credential_opens_with_its_own_site_key_only(shard: Run) -> None:
    """Site A's key opens A's credential and none of the others, though every stack can read them all."""
    exported, secret = shard.exports["sites"]
    assert secret is False and sorted(exported) == SITES
    for site, keys in KEYS.items():
        own = open_sealed(keys.private_key, exported[site]["sealed"])
        assert own == {
            "site": site,
            "accessKeyId": f"site-{site}",
            "secretAccessKey": derive_secret("test-edgefm:credentialSeed", f"site:{site}"),
        }
        assert exported[site]["remoteWriteUrl"] == f"https://telemetry.hub.edgefm.example.net/sites/{site}/api/v1/write"
        for other in SITES:
            if other != site:
                with pytest.raises(SealError, match="sealed to another site's public key"):
                    open_sealed(keys.private_key, exported[other]["sealed"])
        # The plain secret appears nowhere in what the shard exports.
        assert own["secretAccessKey"] not in json.dumps(exported)


def test_hub_program_reads_no_site_file(tmp_path: Path) -> None:
    """The hub stack does not depend on the sites: a fleet whose only site file is broken still builds the hub
    (the site's own stack and its shard report the file)."""
    (tmp_path / "stacks").mkdir()
    (tmp_path / "policies").mkdir()
    shutil.copy2(HUB_FILE, tmp_path / "stacks" / "Pulumi.hub.yaml")
    shutil.copy2(STACKS.parent / "policies" / "placement.yaml", tmp_path / "policies" / "placement.yaml")
    (tmp_path / "stacks" / "Pulumi.site-broken.yaml").write_text("config:\n  edgefm:site: {name: 5}\n")
    hub = yaml.safe_load(HUB_FILE.read_text())["config"]["edgefm:hub"]
    config = {
        "edgefm:hub": json.dumps(hub),
        "edgefm:credentialSeed": "seed",
        "edgefm:grafanaAdminPassword": "pw",
        "edgefm:renderDir": str(tmp_path / "out"),
    }
    pulumi.runtime.set_all_config(config, secret_keys=["edgefm:credentialSeed", "edgefm:grafanaAdminPassword"])
    try:
        recorded = run_program(lambda: run("hub", tmp_path), "hub")
    finally:
        pulumi.runtime.set_all_config({}, secret_keys=[])
    assert recorded.counts()["edgefm:hub:HubCluster"] == 1
