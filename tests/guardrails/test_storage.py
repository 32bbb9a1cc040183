from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
import yaml
from edgefm_guardrails import storage
from edgefm_guardrails.config import StorageConfig
from edgefm_guardrails.model import UNKNOWN, NotApplicable, Resource
from edgefm_guardrails.storage import (
    check_aws_buckets,
    check_onsite_bucket,
    check_onsite_buckets,
    check_tls_endpoints,
)

from tests.guardrails.guardrail_builders import (
    HUB,
    SITE_STACK,
    bucket_job,
    container,
    deployment,
    facts,
    helm_chart,
    meta,
    object_bucket_claim,
    resource,
)

with warnings.catch_warnings():
    # pulumi_aws.s3 defines its deprecated V2 aliases at import time, each with a DeprecationWarning.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_aws.s3 as pulumi_aws_s3

    # The SDK loads modules lazily: touch each class while the filter is on.
    SDK_CLASSES = {
        name: getattr(pulumi_aws_s3, name)
        for name in (
            "Bucket",
            "BucketV2",
            "BucketPublicAccessBlock",
            "BucketServerSideEncryptionConfiguration",
            "BucketVersioning",
            "BucketPolicy",
            "BucketAcl",
        )
    }

CFG = StorageConfig()
REGISTRY = "edgefm-models"


def _sdk_type_token(cls: type) -> str:
    """The type token an SDK class registers (set by @pulumi.type_token; no engine needed)."""
    token = getattr(cls, "pulumi_type", None)
    assert isinstance(token, str), f"{cls.__name__} carries no type token"
    return token


@pytest.mark.parametrize(
    ("token", "cls"),
    [
        (storage.BUCKET_TYPES[0], SDK_CLASSES["Bucket"]),
        (storage.BUCKET_TYPES[1], SDK_CLASSES["BucketV2"]),
        (storage.PUBLIC_ACCESS_BLOCK_TYPES[0], SDK_CLASSES["BucketPublicAccessBlock"]),
        (storage.SSE_TYPES[0], SDK_CLASSES["BucketServerSideEncryptionConfiguration"]),
        (storage.VERSIONING_TYPES[0], SDK_CLASSES["BucketVersioning"]),
        (storage.BUCKET_POLICY_TYPES[0], SDK_CLASSES["BucketPolicy"]),
        (storage.ACL_TYPES[0], SDK_CLASSES["BucketAcl"]),
    ],
)
def test_type_tokens_match_the_installed_pulumi_aws(token: str, cls: type) -> None:
    assert _sdk_type_token(cls) == token


def tls_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def aws_bucket_set(
    name: str = REGISTRY,
    *,
    registry: bool = True,
    by_dependency: bool = False,
    skip: tuple[str, ...] = (),
    **over: Any,
) -> list[Resource]:
    """A hardened bucket and its companions, as the hub's AWS flavor would register them."""
    tags = {"edgefm.io/bucket": "models"} if registry else {}
    bucket = resource(
        HUB, storage.BUCKET_TYPES[0], "registry", {"bucket": name, "tags": tags, **over.get("bucket", {})}
    )
    # A new bucket's name is unknown in preview; companions then only match by property dependency.
    ref: Any = UNKNOWN if by_dependency else name
    deps = {"bucket": [bucket.urn]} if by_dependency else None
    companions = {
        "pab": (
            storage.PUBLIC_ACCESS_BLOCK_TYPES[0],
            {
                "bucket": ref,
                "blockPublicAcls": True,
                "blockPublicPolicy": True,
                "ignorePublicAcls": True,
                "restrictPublicBuckets": True,
            },
        ),
        "sse": (
            storage.SSE_TYPES[0],
            {"bucket": ref, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]},
        ),
        "versioning": (
            storage.VERSIONING_TYPES[0],
            {"bucket": ref, "versioningConfiguration": {"status": "Enabled"}},
        ),
        "policy": (storage.BUCKET_POLICY_TYPES[0], {"bucket": ref, "policy": tls_policy(name)}),
    }
    out = [bucket]
    for key, (type_, props) in companions.items():
        if key in skip:
            continue
        out.append(resource(HUB, type_, f"registry-{key}", {**props, **over.get(key, {})}, deps))
    return out


def messages(found: list[Any]) -> list[str]:
    return [v.message for v in found]


@pytest.mark.parametrize("by_dependency", [False, True])
def test_hardened_aws_bucket_passes(by_dependency: bool) -> None:
    assert check_aws_buckets(aws_bucket_set(by_dependency=by_dependency), CFG) == []


@pytest.mark.parametrize(
    ("skip", "fragment"),
    [
        ("pab", "has no BucketPublicAccessBlock"),
        ("sse", "has no BucketServerSideEncryptionConfiguration"),
        ("policy", "has no bucket policy denying requests without TLS"),
        ("versioning", "holds the model registry but versioning is not Enabled"),
    ],
)
def test_missing_companion_is_reported_on_the_bucket(skip: str, fragment: str) -> None:
    resources = aws_bucket_set(skip=(skip,))
    found = check_aws_buckets(resources, CFG)
    assert [v.urn for v in found] == [resources[0].urn]
    assert found[0].message.startswith(f"Bucket 'registry' ({REGISTRY}) {fragment}")


def test_companions_of_another_bucket_do_not_count() -> None:
    other = aws_bucket_set("edgefm-telemetry", registry=False)
    lonely = resource(HUB, storage.BUCKET_TYPES[0], "lonely", {"bucket": "edgefm-lonely"})
    found = check_aws_buckets([*other, lonely], CFG)
    assert {v.urn for v in found} == {lonely.urn}
    assert len(found) == 3  # access block, encryption, TLS policy; no versioning needed off the registry


def test_partial_public_access_block() -> None:
    found = check_aws_buckets(aws_bucket_set(pab={"restrictPublicBuckets": False, "blockPublicAcls": None}), CFG)
    assert messages(found) == [
        f"Bucket 'registry' ({REGISTRY}): BucketPublicAccessBlock 'registry-pab' leaves blockPublicAcls, "
        "restrictPublicBuckets off"
    ]


def test_weak_or_missing_encryption_algorithm() -> None:
    found = check_aws_buckets(aws_bucket_set(sse={"rules": [{"bucketKeyEnabled": True}]}), CFG)
    assert len(found) == 1 and "sets no default encryption" in found[0].message


def test_suspended_versioning_on_the_registry() -> None:
    found = check_aws_buckets(aws_bucket_set(versioning={"versioningConfiguration": {"status": "Suspended"}}), CFG)
    assert len(found) == 1 and "['Suspended']" in found[0].message


def test_registry_named_in_config_needs_versioning_without_tags() -> None:
    resources = aws_bucket_set("edgefm-models-eu", registry=False, skip=("versioning",))
    assert check_aws_buckets(resources, CFG) == []
    cfg = StorageConfig.from_config({"registryBuckets": ["edgefm-models-eu"]})
    assert len(check_aws_buckets(resources, cfg)) == 1


def test_public_acl_and_public_policy() -> None:
    public_policy = json.dumps(
        {
            "Statement": [
                json.loads(tls_policy(REGISTRY))["Statement"][0],
                {
                    "Sid": "Everyone",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{REGISTRY}/*",
                },
            ]
        }
    )
    found = check_aws_buckets(aws_bucket_set(bucket={"acl": "public-read"}, policy={"policy": public_policy}), CFG)
    assert messages(found) == [
        f"Bucket 'registry' ({REGISTRY}) has the public ACL 'public-read'",
        f"Bucket 'registry' ({REGISTRY}): BucketPolicy 'registry-policy' statement 'Everyone' allows "
        'everyone (Principal "*"): the bucket is public',
    ]


def test_tls_deny_must_cover_this_bucket() -> None:
    found = check_aws_buckets(aws_bucket_set(policy={"policy": tls_policy("some-other-bucket")}), CFG)
    assert len(found) == 1 and "denying requests without TLS" in found[0].message


def test_unknown_policy_text_is_judged_at_update_time() -> None:
    assert check_aws_buckets(aws_bucket_set(policy={"policy": UNKNOWN}), CFG) == []


def test_no_buckets_is_not_applicable() -> None:
    with pytest.raises(NotApplicable):
        check_aws_buckets([facts()], CFG)


# --- on-site buckets --------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["datasets", "models", "checkpoints"])
def test_onsite_buckets_as_the_program_declares_them(purpose: str) -> None:
    assert check_onsite_bucket(bucket_job(purpose), CFG) == []
    assert check_onsite_bucket(object_bucket_claim(purpose), CFG) == []


SHOWN = "Job 'site-storage-bucket-models' in namespace edgefm-system (bucket bridge-north-models, purpose models)"


@pytest.mark.parametrize("mode", ["download", "upload", "public"])
def test_a_job_that_opens_its_bucket_is_public_whatever_it_declares(mode: str) -> None:
    step = f"mc anonymous set {mode} site/bridge-north-models"
    job = bucket_job("models", steps=[step])
    assert job.props["metadata"]["annotations"]["edgefm.io/bucket-public"] == "false"
    assert messages(check_onsite_bucket(job, CFG)) == [
        f"{SHOWN} runs {step!r}, which opens it to anonymous access; buckets must be private"
    ]


def test_a_job_that_never_encrypts_its_bucket_is_unencrypted_whatever_it_declares() -> None:
    job = bucket_job("models")
    script = job.props["spec"]["template"]["spec"]["containers"][0]["command"]
    script[2] = script[2].replace("mc encrypt set sse-s3 site/bridge-north-models", "true")
    assert job.props["metadata"]["annotations"]["edgefm.io/bucket-encryption"] == "sse-s3"
    assert messages(check_onsite_bucket(job, CFG)) == [
        f"{SHOWN} is not encrypted at rest: its commands set no `encrypt set sse-s3|sse-kms` on it"
    ]
    cleared = bucket_job("models", steps=["mc encrypt clear site/bridge-north-models"])
    assert "not encrypted at rest" in messages(check_onsite_bucket(cleared, CFG))[0]
    # Encrypting another bucket does not count.
    other = bucket_job("models")
    other_script = other.props["spec"]["template"]["spec"]["containers"][0]["command"]
    other_script[2] = other_script[2].replace(
        "encrypt set sse-s3 site/bridge-north-models", "encrypt set sse-s3 site/x"
    )
    assert "not encrypted at rest" in messages(check_onsite_bucket(other, CFG))[0]


def test_a_job_that_creates_no_bucket() -> None:
    job = bucket_job("models")
    job.props["spec"]["template"]["spec"]["containers"][0]["command"] = ["/bin/sh", "-ec", "echo nothing"]
    assert messages(check_onsite_bucket(job, CFG)) == [
        "Job 'site-storage-bucket-models' in namespace edgefm-system (purpose models) is labelled edgefm.io/bucket "
        "but its commands create no bucket (`mc mb`)"
    ]


def test_a_computed_script_is_judged_at_update_time() -> None:
    job = bucket_job("models")
    job.props["spec"]["template"]["spec"]["containers"][0]["command"] = UNKNOWN
    assert check_onsite_bucket(job, CFG) == []


def test_hub_registry_bucket_must_be_versioned() -> None:
    registry = bucket_job("models", stack=HUB, name=REGISTRY, steps=[f"mc version enable site/{REGISTRY}"])
    assert check_onsite_bucket(registry, CFG) == []
    unversioned = bucket_job("models", stack=HUB, name=REGISTRY)
    found = check_onsite_bucket(unversioned, CFG)
    assert len(found) == 1 and "holds the model registry" in found[0].message
    suspended = bucket_job(
        "models",
        stack=HUB,
        name=REGISTRY,
        steps=[f"mc version enable site/{REGISTRY}", f"mc version suspend site/{REGISTRY}"],
    )
    assert len(check_onsite_bucket(suspended, CFG)) == 1
    # A site's models bucket is a mirror, not the registry.
    assert check_onsite_bucket(bucket_job("models"), CFG) == []


def test_a_claim_cannot_hold_the_registry() -> None:
    claim = object_bucket_claim("models", stack=HUB)
    found = check_onsite_bucket(claim, CFG)
    assert len(found) == 1 and "cannot enable versioning" in found[0].message


def test_unlabelled_jobs_are_not_buckets() -> None:
    assert check_onsite_bucket(deployment("x", [container()]), CFG) == []


# --- TLS --------------------------------------------------------------------------------------------


def test_https_endpoints_pass() -> None:
    env = {"EDGEFM_SITE_S3_ENDPOINT": "https://minio.edgefm-system.svc:9000"}
    d = deployment("triton", [container(env=env, args=["--model-repository=s3://https://minio:9000/b/p"])])
    assert check_tls_endpoints(d) == []
    assert check_tls_endpoints(facts()) == []


def test_plain_http_endpoints_are_refused() -> None:
    http = "http://site-storage-minio.edgefm-system.svc:9000"
    env = {"MINIO_URL": http, "EDGEFM_REGISTRY_ENDPOINT": "hub:9000"}
    d = deployment("triton", [container("triton", env=env, args=[f"--model-repository=s3://{http}/models/x"])])
    where = "Deployment 'triton' in namespace edgefm: container 'triton'"
    tls = "object storage is reached over TLS only"
    assert messages(check_tls_endpoints(d)) == [
        f"{where} env MINIO_URL: '{http}' is not an https:// URL; {tls}",
        f"{where} env EDGEFM_REGISTRY_ENDPOINT: 'hub:9000' is not an https:// URL; {tls}",
        f"{where} args 's3://{http}/models/x' reaches object storage over http; {tls}",
    ]


def test_facts_storage_endpoint_must_be_https() -> None:
    found = check_tls_endpoints(facts(storageEndpoint="http://minio:9000"))
    assert len(found) == 1 and "storageEndpoint 'http://minio:9000' is not an https:// URL" in found[0].message


def test_unrelated_urls_are_not_storage_endpoints() -> None:
    d = deployment("x", [container(env={"GRAFANA_URL": "http://grafana", "EDGEFM_LOG_LEVEL": "info"})])
    assert check_tls_endpoints(d) == []
    assert SITE_STACK  # builders default to the site stack


# --- buckets a MinIO chart creates (hub, datacenter flavor) ----------------------------------------


def registry_chart(
    bucket: dict[str, Any], commands: list[str] | None = None, component: str = "model-registry"
) -> Resource:
    values = {
        "buckets": [bucket],
        "customCommands": [
            {"command": c}
            for c in (
                commands
                if commands is not None
                else [
                    f"ilm rule add --noncurrent-expire-days 90 myminio/{REGISTRY}",
                    f"encrypt set sse-s3 myminio/{REGISTRY}",
                ]
            )
        ],
    }
    chart = helm_chart("hub-registry-minio", yaml.safe_dump(values), stack=HUB)
    chart.props["metadata"]["labels"]["app.kubernetes.io/component"] = component
    return chart


HARDENED = {"name": REGISTRY, "policy": "none", "purge": False, "versioning": True, "objectlocking": False}


def test_hub_minio_registry_as_the_program_declares_it() -> None:
    assert check_onsite_buckets(registry_chart(HARDENED), CFG) == []


def test_hub_minio_registry_problems() -> None:
    chart = registry_chart({**HARDENED, "policy": "download", "versioning": False}, commands=[])
    where = "HelmChart 'hub-registry-minio' in namespace kube-system: spec.valuesContent bucket edgefm-models"
    assert messages(check_onsite_buckets(chart, CFG)) == [
        f"{where} has anonymous policy 'download'; buckets must be private",
        f"{where} is not encrypted at rest (no `encrypt set sse-s3 .../edgefm-models` custom command)",
        f"{where} holds the model registry but versioning is False; registry buckets must be versioned",
    ]


def test_encryption_command_must_name_this_bucket() -> None:
    chart = registry_chart(HARDENED, commands=["encrypt set sse-s3 myminio/edgefm-models-old"])
    assert len(check_onsite_buckets(chart, CFG)) == 1


def test_other_minio_buckets_need_no_versioning() -> None:
    chart = registry_chart({**HARDENED, "versioning": False}, component="telemetry")
    assert check_onsite_buckets(chart, CFG) == []


# --- Ingress TLS ------------------------------------------------------------------------------------


def ingress(tls_hosts: list[str], annotations: dict[str, str] | None = None) -> Resource:
    props = {
        "metadata": {**meta("registry", HUB, "model-registry"), "annotations": annotations or {}},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": tls_hosts, "secretName": "edgefm-hub-tls"}],
            "rules": [{"host": "registry.hub.example.net", "http": {"paths": []}}],
        },
    }
    return resource(HUB, "kubernetes:networking.k8s.io/v1:Ingress", "hub-registry-ingress", props)


def test_ingress_with_tls_passes() -> None:
    assert (
        check_tls_endpoints(ingress(["registry.hub.example.net"], {"nginx.ingress.kubernetes.io/ssl-redirect": "true"}))
        == []
    )


def test_ingress_without_tls_for_a_host() -> None:
    found = messages(check_tls_endpoints(ingress([], {"nginx.ingress.kubernetes.io/ssl-redirect": "false"})))
    where = "Ingress 'hub-registry-ingress' in namespace edgefm"
    assert found == [
        f"{where} serves registry.hub.example.net without TLS (not listed under spec.tls)",
        f"{where} turns off the HTTPS redirect (ssl-redirect: false)",
    ]
