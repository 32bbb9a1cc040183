"""The hub stack under mocks, both flavors: registry hardening, per-site read-only access, telemetry."""

from __future__ import annotations

import json

import pytest
import yaml

from components.hub.fleet_telemetry import ssha_entry
from components.hub.site_credential import LIST_ACTIONS, READ_ACTIONS, derive_secret
from tests.harness import STACKS, Run, is_secret, run_hub_file, unwrap

SITES = ["bridge-north", "bridge-south", "harbor-ocp", "viaduct-cpu"]
HUB_FILE = STACKS / "Pulumi.hub.yaml"


@pytest.fixture(scope="module")
def datacenter() -> Run:
    return run_hub_file(HUB_FILE, SITES)


@pytest.fixture(scope="module")
def aws_hub() -> Run:
    doc = yaml.safe_load(HUB_FILE.read_text())["config"]["edgefm:hub"]
    return run_hub_file(HUB_FILE, SITES, overrides={"edgefm:hub": {**doc, "flavor": "aws"}})


def test_datacenter_graph(datacenter: Run) -> None:
    counts = datacenter.counts()
    assert counts["edgefm:hub:HubCluster"] == 1
    assert counts["edgefm:hub:InClusterModelRegistry"] == 1
    assert counts["edgefm:hub:FleetTelemetry"] == 1
    assert counts["edgefm:cluster:HelmController"] == 1  # hub distribution is plain Kubernetes
    assert counts["kubernetes:helm.cattle.io/v1:HelmChart"] == 3  # MinIO, Prometheus, Grafana
    assert counts["kubernetes:networking.k8s.io/v1:Ingress"] == 3
    assert not any(t.startswith("aws:") for t in counts)


def test_datacenter_site_access_is_read_only(datacenter: Run) -> None:
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
    assert {u["accessKey"] for u in chart["users"]} == {f"site-{s}" for s in SITES}
    assert {u["policy"] for u in chart["users"]} == {"edgefm-site-read"}
    assert chart["buckets"] == [
        {
            "name": "edgefm-models",
            "policy": "none",
            "purge": False,
            "versioning": True,
            "objectlocking": False,
        }
    ]
    site_secrets = [r for r in datacenter.kinds("Secret") if "-site-" in r.name]
    assert len(site_secrets) == len(SITES) and all(is_secret(r.inputs["stringData"]) for r in site_secrets)


def test_derived_keys_are_stable_and_distinct() -> None:
    assert derive_secret("seed", "site:a") == derive_secret("seed", "site:a")
    assert derive_secret("seed", "site:a") != derive_secret("seed", "site:b")
    assert derive_secret("seed", "site:a") != derive_secret("other", "site:a")


def test_remote_write_is_authenticated_per_site(datacenter: Run) -> None:
    auth = unwrap(datacenter.one("kubernetes:core/v1:Secret", "-remote-write-auth").inputs)["stringData"]["auth"]
    assert [line.split(":")[0] for line in auth.splitlines()] == [f"site-{s}" for s in SITES]
    assert ssha_entry("u", "p") == ssha_entry("u", "p") and "{SSHA}" in ssha_entry("u", "p")
    ingress = unwrap(datacenter.one("kubernetes:networking.k8s.io/v1:Ingress", "-telemetry-remote-write").inputs)
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    assert ingress["spec"]["tls"][0]["hosts"] == ["telemetry.hub.edgefm.example.net"]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/api/v1/write"


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


def test_aws_site_identities_are_read_only_and_scoped(aws_hub: Run) -> None:
    users = aws_hub.of_type("aws:iam/user:User")
    assert sorted(unwrap(u.inputs)["name"] for u in users) == sorted(f"edgefm-site-{s}" for s in SITES)
    for policy in aws_hub.of_type("aws:iam/userPolicy:UserPolicy"):
        doc = json.loads(unwrap(policy.inputs)["policy"])
        actions = {a for s in doc["Statement"] for a in s["Action"]}
        assert actions == {*READ_ACTIONS, *LIST_ACTIONS, "kms:Decrypt"}
        resources = [r for s in doc["Statement"] for r in s["Resource"]]
        assert all(r.startswith("arn:aws:") and r != "*" for r in resources)
        assert not any(a.endswith("*") for a in actions)
    keys = aws_hub.of_type("aws:iam/accessKey:AccessKey")
    assert len(keys) == len(SITES) and all("secret" in k.secret_outputs for k in keys)
    assert not aws_hub.kinds("Secret") or all(is_secret(s.inputs["stringData"]) for s in aws_hub.kinds("Secret"))


def test_hub_exports_site_credentials_as_a_secret(datacenter: Run) -> None:
    creds, secret = datacenter.exports["siteCredentials"]
    assert secret is True
    assert sorted(creds) == sorted(SITES)
    assert creds["bridge-north"]["accessKeyId"] == "site-bridge-north"
    assert datacenter.exports["remoteWriteUrl"] == ("https://telemetry.hub.edgefm.example.net/api/v1/write", False)
    assert datacenter.exports["registryEndpoint"] == ("https://registry.hub.edgefm.example.net", False)
