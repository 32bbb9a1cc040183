from __future__ import annotations

from typing import Any

import pytest
from edgefm_guardrails.config import SovereigntyConfig
from edgefm_guardrails.facts import check_site_facts, parse_facts, read_facts
from edgefm_guardrails.model import NotApplicable, Resource, Violation
from edgefm_guardrails.sovereignty import check_datasets_protected, check_sovereignty

from tests.guardrails.guardrail_builders import (
    BUCKETS,
    ENDPOINT,
    HUB,
    HUB_REGISTRY_ENDPOINT,
    SITE_STACK,
    bucket_job,
    container,
    cronjob,
    deployment,
    facts,
    facts_doc,
    job,
    object_bucket_claim,
    resource,
)

CFG = SovereigntyConfig()
DATASETS = BUCKETS["datasets"]


def fine_tuning(**env: str) -> Resource:
    """The fine-tuning Job as components/fine_tuning.py builds it: datasets in, site endpoint only."""
    storage_env = {
        "EDGEFM_SITE_S3_ENDPOINT": ENDPOINT,
        "EDGEFM_DATASETS_BUCKET": DATASETS,
        "EDGEFM_MODELS_BUCKET": BUCKETS["models"],
        "EDGEFM_CHECKPOINTS_BUCKET": BUCKETS["checkpoints"],
        **env,
    }
    train = container(
        "finetune",
        "ghcr.io/edgefm/vit-finetune:0.1.0",
        env=storage_env,
        args=["--dataset-prefix", "labelled/"],
        gpus=1,
    )
    return job("finetune-3f2a", [train])


def model_sync() -> Resource:
    """ModelSync's CronJob: hub registry in, site models bucket out; no datasets."""
    env = {
        "EDGEFM_REGISTRY_ENDPOINT": HUB_REGISTRY_ENDPOINT,
        "EDGEFM_REGISTRY_BUCKET": "edgefm-models",
        "EDGEFM_MIRROR_ENDPOINT": ENDPOINT,
        "EDGEFM_MIRROR_BUCKET": BUCKETS["models"],
    }
    return cronjob("model-sync", [container("sync", env=env, secret_env=("EDGEFM_REGISTRY_ACCESS_KEY_ID",))])


def site(*extra: Resource) -> list[Resource]:
    buckets = [bucket_job(p) for p in ("datasets", "models", "checkpoints")]
    return [facts(), *buckets, fine_tuning(), model_sync(), *extra]


def only(found: list[Violation]) -> Violation:
    assert len(found) == 1, [v.message for v in found]
    return found[0]


def test_the_program_shaped_site_keeps_its_data() -> None:
    assert check_sovereignty(site(), CFG) == []


def test_replicating_the_datasets_bucket() -> None:
    replicated = bucket_job("datasets", annotations={"edgefm.io/bucket-replication": "s3://hub/backup"})
    v = only(check_sovereignty([facts(), replicated], CFG))
    assert v.urn == replicated.urn
    assert v.message == (
        f"Job 'site-storage-bucket-datasets' in namespace edgefm-system (datasets bucket {DATASETS} of site "
        "bridge-north) replicates to 's3://hub/backup' (edgefm.io/bucket-replication); labelled data must "
        "stay on the site"
    )


def test_replication_of_other_buckets_is_not_a_sovereignty_matter() -> None:
    models = bucket_job("models", annotations={"edgefm.io/bucket-replication": "s3://hub/backup"})
    assert check_sovereignty([facts(), models], CFG) == []


def test_annotations_do_not_vouch_for_the_commands() -> None:
    """What the provisioning commands do counts: no annotation is needed, and none can hide a replication."""
    quiet = bucket_job("datasets", annotations={"edgefm.io/bucket-replication": None})
    assert check_sovereignty([facts(), quiet], CFG) == []
    step = f"mc replicate add site/{DATASETS} --remote-bucket arn:minio:replication::x:backup"
    declared_none = bucket_job("datasets", steps=[step])
    assert "which moves objects to another server" in only(check_sovereignty([facts(), declared_none], CFG)).message


@pytest.mark.parametrize(
    "step",
    [
        f"mc replicate add site/{DATASETS} --remote-bucket https://k:s@hub.example/backup",
        f"mc ilm rule add --transition-days 30 --transition-tier HUBTIER site/{DATASETS}",
        f"mc ilm tier add s3 site HUBTIER --endpoint https://hub.example --bucket {DATASETS}",
    ],
)
def test_provisioning_scripts_that_export_datasets(step: str) -> None:
    job = bucket_job("datasets", steps=[step])
    found = check_sovereignty([facts(), job], CFG)
    # A step that also names the remote server's URL is caught twice: as an export and as off-site reach.
    assert any(f"runs {step!r}, which moves objects to another server" in v.message for v in found)
    assert {v.urn for v in found} == {job.urn}


def test_expiry_rules_are_fine() -> None:
    checkpoints = bucket_job("checkpoints", steps=[f"mc ilm rule add --expire-days 7 site/{BUCKETS['checkpoints']}"])
    assert check_sovereignty([facts(), checkpoints], CFG) == []


def test_object_bucket_claim_replication_policy() -> None:
    obc = object_bucket_claim("datasets", additionalConfig={"replicationPolicy": '{"rules":[]}'})
    assert "MCG replication policy" in only(check_sovereignty([facts(), obc], CFG)).message
    assert check_sovereignty([facts(), object_bucket_claim("datasets")], CFG) == []


def test_a_job_that_reads_datasets_and_has_the_hub() -> None:
    leaky = fine_tuning(EDGEFM_REGISTRY_ENDPOINT=HUB_REGISTRY_ENDPOINT)
    v = only(check_sovereignty([facts(), leaky], CFG))
    assert v.urn == leaky.urn
    assert v.message == (
        f"Job 'finetune-3f2a' in namespace edgefm: container 'finetune' can read the datasets bucket "
        f"{DATASETS} (env EDGEFM_DATASETS_BUCKET) and reach outside site bridge-north "
        "(env EDGEFM_REGISTRY_ENDPOINT (the hub registry)); labelled data must stay on the site"
    )


def test_hub_credentials_from_a_secret_also_count() -> None:
    c = container("sync", env={"EDGEFM_DATASETS_BUCKET": DATASETS}, secret_env=("EDGEFM_REGISTRY_SECRET_ACCESS_KEY",))
    assert (
        "EDGEFM_REGISTRY_SECRET_ACCESS_KEY (the hub registry)"
        in only(check_sovereignty([facts(), deployment("x", [c])], CFG)).message
    )


def test_a_mirror_script_to_an_off_site_server() -> None:
    script = f"mc alias set hub https://hub.example.net k s && mc mirror site/{DATASETS} hub/sink"
    c = container("mirror", "quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z", command=["/bin/sh", "-c", script])
    v = only(check_sovereignty([facts(), cronjob("exfil", [c])], CFG))
    assert "(its command line)" in v.message and "argument https://hub.example.net" in v.message


def test_off_site_url_in_env() -> None:
    c = container("x", env={"SOURCE": f"s3://{DATASETS}/labelled", "MC_HOST_backup": "https://k:s@203.0.113.7:9000"})
    v = only(check_sovereignty([facts(), deployment("x", [c])], CFG))
    assert "env MC_HOST_backup=https://k:s@203.0.113.7:9000" in v.message


@pytest.mark.parametrize(
    "url",
    [
        ENDPOINT,
        "http://minio:9000",
        "https://s3.openshift-storage.svc:443",
        "https://minio.edgefm-system.svc.cluster.local:9000",
        "https://10.20.0.11:9000",  # a node on the site's own network (facts.network)
        "http://localhost:8080",
    ],
)
def test_site_local_urls_are_not_off_site(url: str) -> None:
    c = container("x", env={"EDGEFM_DATASETS_BUCKET": DATASETS, "OTHER_ENDPOINT": url})
    assert check_sovereignty([facts(), deployment("x", [c])], CFG) == []


def test_bucket_names_match_whole_names_only() -> None:
    c = container("x", env={"ARCHIVE": f"{DATASETS}-archive", "TARGET": "https://hub.example.net"})
    assert check_sovereignty([facts(), deployment("x", [c])], CFG) == []


def test_cluster_local_suffixes_are_configurable() -> None:
    c = container("x", env={"EDGEFM_DATASETS_BUCKET": DATASETS, "T": "https://minio.site.internal"})
    resources = [facts(), deployment("x", [c])]
    assert len(check_sovereignty(resources, CFG)) == 1
    assert (
        check_sovereignty(resources, SovereigntyConfig.from_config({"clusterLocalSuffixes": [".site.internal"]})) == []
    )


def test_aws_replication_or_transition_of_datasets() -> None:
    repl = resource(SITE_STACK, "aws:s3/bucketReplicationConfig:BucketReplicationConfig", "r", {"bucket": DATASETS})
    life = resource(
        SITE_STACK,
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "l",
        {"bucket": DATASETS, "rules": [{"transitions": [{"days": 30, "storageClass": "GLACIER"}]}]},
    )
    expiry = resource(
        SITE_STACK,
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "e",
        {"bucket": DATASETS, "rules": [{"expiration": {"days": 30}}]},
    )
    found = check_sovereignty([facts(), repl, life, expiry], CFG)
    assert [v.urn for v in found] == [repl.urn, life.urn]


def test_sovereignty_is_a_site_check() -> None:
    with pytest.raises(NotApplicable):
        check_sovereignty([resource(HUB, "kubernetes:core/v1:Namespace", "ns", {})], CFG)
    with pytest.raises(NotApplicable, match="site-facts"):
        check_sovereignty([fine_tuning()], CFG)


# --- site facts -------------------------------------------------------------------------------------


def test_facts_parse_what_the_program_publishes() -> None:
    parsed = read_facts([facts()])
    assert parsed.site == "bridge-north" and parsed.gpu_capacity == 3 and parsed.buckets["datasets"] == DATASETS
    assert parsed.storage_host == "site-storage-minio.edgefm-system.svc"
    assert str(parsed.network) == "10.20.0.0/24"
    assert check_site_facts([facts()]) == []


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"gpuCapacity": "3"}, "gpuCapacity must be int"),
        ({"gpuCapacity": True}, "gpuCapacity must be int"),
        ({"allowExternalServices": "no"}, "allowExternalServices must be bool"),
        ({"buckets": {"datasets": "d", "models": "m"}}, "buckets.checkpoints must name a bucket"),
        ({"network": "not-a-cidr"}, "network must be a CIDR block"),
    ],
)
def test_bad_facts_are_reported(over: dict[str, Any], fragment: str) -> None:
    found = check_site_facts([facts(**over)])
    assert len(found) == 1 and fragment in found[0].message
    assert found[0].message.startswith("site stack site-bridge-north: ")


def test_missing_or_unreadable_facts() -> None:
    assert "no ConfigMap edgefm-system/edgefm-site-facts" in only(check_site_facts([fine_tuning()])).message
    assert "is not JSON" in only(check_site_facts([facts(raw="{oops")])).message


def test_facts_of_another_site() -> None:
    v = only(check_site_facts([facts(site="bridge-south")]))
    assert v.message == (
        "ConfigMap edgefm-system/edgefm-site-facts names site 'bridge-south', but the stack is site-bridge-north"
    )


def test_site_facts_do_not_apply_to_the_hub() -> None:
    with pytest.raises(NotApplicable):
        check_site_facts([resource(HUB, "kubernetes:core/v1:Namespace", "ns", {})])


def test_parse_facts_collects_every_problem() -> None:
    doc = facts_doc()
    del doc["site"], doc["storageEndpoint"]
    with pytest.raises(ValueError, match=r"site must be str.*storageEndpoint must be str"):
        parse_facts(doc)


# --- destinations wherever they are configured ---------------------------------------------------------


def config_map(name: str, data: dict[str, str], kind: str = "ConfigMap") -> Resource:
    field = "stringData" if kind == "Secret" else "data"
    props = {"metadata": {"name": name, "namespace": "edgefm", "labels": {}}, field: data}
    return resource(SITE_STACK, f"kubernetes:core/v1:{kind}", name, props)


def test_an_off_site_destination_in_a_config_map_taken_as_env() -> None:
    ft = fine_tuning()
    ft.props["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "upload"}}]
    cm = config_map("upload", {"RESULTS_URL": "https://collector.example.com/upload"})
    v = only(check_sovereignty([*site(ft), cm], CFG))
    assert v.urn == ft.urn
    assert "env RESULTS_URL (from ConfigMap upload)=https://collector.example.com/upload" in v.message


def test_an_off_site_destination_from_one_secret_key() -> None:
    ft = fine_tuning()
    ft.props["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "SINK", "valueFrom": {"secretKeyRef": {"name": "sink", "key": "url"}}}
    )
    secret = config_map("sink", {"url": "https://203.0.113.9:9000/bucket"}, kind="Secret")
    assert (
        "env SINK (from Secret sink)=https://203.0.113.9:9000/bucket"
        in only(check_sovereignty([*site(ft), secret], CFG)).message
    )


def test_an_off_site_destination_in_a_mounted_config_file() -> None:
    ft = fine_tuning()
    pod = ft.props["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "cfg", "configMap": {"name": "trainer"}}]
    pod["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/trainer"}]
    cm = config_map("trainer", {"trainer.yaml": "report:\n  endpoint: https://wandb.example.io\n"})
    v = only(check_sovereignty([*site(ft), cm], CFG))
    assert "file trainer.yaml of ConfigMap trainer: https://wandb.example.io" in v.message
    # The same ConfigMap, not mounted by the container, configures nothing.
    del pod["containers"][0]["volumeMounts"]
    assert check_sovereignty([*site(ft), cm], CFG) == []


def test_reading_the_datasets_can_be_configured_through_a_config_map_too() -> None:
    c = container("exporter", env={"TARGET": "https://backup.example.net"})
    c["envFrom"] = [{"configMapRef": {"name": "source"}}]
    cm = config_map("source", {"SOURCE_BUCKET": DATASETS})
    v = only(check_sovereignty([*site(deployment("exporter", [c])), cm], CFG))
    assert "(env SOURCE_BUCKET (from ConfigMap source))" in v.message
    # Site-local destinations in config maps are fine.
    local = config_map("source", {"SOURCE_BUCKET": DATASETS, "ENDPOINT": ENDPOINT})
    c2 = container("reader")
    c2["envFrom"] = [{"configMapRef": {"name": "source"}}]
    assert check_sovereignty([*site(deployment("reader", [c2])), local], CFG) == []


# --- the datasets bucket's resource options ------------------------------------------------------------


def with_options(r: Resource, protect: bool | None, retain: bool | None) -> Resource:
    return Resource(r.urn, r.type, r.name, r.props, r.property_dependencies, r.dependencies, protect, retain)


def test_the_datasets_bucket_is_protected_and_retained() -> None:
    datasets = with_options(bucket_job("datasets"), True, True)
    assert check_datasets_protected([facts(), datasets, bucket_job("models")]) == []
    # The analyzer does not send retainOnDelete: None is not judged.
    assert check_datasets_protected([facts(), with_options(bucket_job("datasets"), True, None)]) == []


@pytest.mark.parametrize(
    ("protect", "retain", "missing"),
    [(False, True, "protect"), (True, False, "retainOnDelete"), (False, False, "protect and retainOnDelete")],
)
def test_an_unprotected_datasets_bucket(protect: bool, retain: bool, missing: str) -> None:
    datasets = with_options(bucket_job("datasets"), protect, retain)
    v = only(check_datasets_protected([facts(), datasets]))
    assert v.urn == datasets.urn
    assert v.message == (
        f"Job 'site-storage-bucket-datasets' in namespace edgefm-system provisions the datasets bucket {DATASETS} "
        f"of site bridge-north without {missing}; labelled data must survive a destroy or a replacement"
    )


def test_a_claim_or_an_s3_bucket_can_hold_the_datasets() -> None:
    claim = with_options(object_bucket_claim("datasets"), False, None)
    assert "without protect" in only(check_datasets_protected([facts(), claim])).message
    s3 = resource(SITE_STACK, "aws:s3/bucket:Bucket", "datasets", {"bucket": DATASETS})
    assert "without protect" in only(check_datasets_protected([facts(), with_options(s3, False, None)])).message


def test_no_resource_provisions_the_datasets_bucket() -> None:
    assert "no resource provisions the datasets bucket" in only(check_datasets_protected([facts()])).message
    with pytest.raises(NotApplicable):
        check_datasets_protected([bucket_job("datasets", stack=HUB)])


def site_minio(values: dict[str, Any]) -> Resource:
    import yaml

    props = {
        "metadata": {"name": "storage-minio", "namespace": "kube-system", "labels": {}},
        "spec": {"chart": "minio", "version": "5.4.0", "valuesContent": yaml.safe_dump(values)},
    }
    return resource(SITE_STACK, "kubernetes:helm.cattle.io/v1:HelmChart", "storage-minio", props)


def test_the_site_storage_server_as_the_program_configures_it() -> None:
    values = {"mode": "distributed", "tls": {"enabled": True, "certSecret": "site-storage-tls"}, "buckets": []}
    assert check_sovereignty([*site(), site_minio(values)], CFG) == []


def test_a_storage_server_that_notifies_or_replicates_off_site() -> None:
    webhook = site_minio({"environment": {"MINIO_NOTIFY_WEBHOOK_ENDPOINT_hub": "https://events.hub.example.net/minio"}})
    v = only(check_sovereignty([*site(), webhook], CFG))
    assert v.urn == webhook.urn
    assert (
        "spec.valuesContent environment.MINIO_NOTIFY_WEBHOOK_ENDPOINT_hub reaches https://events.hub.example.net"
        in (v.message)
    )
    replicate = site_minio({"customCommands": [{"command": f"replicate add myminio/{DATASETS} --remote-bucket x"}]})
    assert "runs a command that exports it" in only(check_sovereignty([*site(), replicate], CFG)).message
