from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from edgefm_guardrails.config import IdentityConfig
from edgefm_guardrails.identity import check_site_identities, registry_buckets
from edgefm_guardrails.model import UNKNOWN, NotApplicable, Resource

from tests.guardrails.guardrail_builders import HUB, helm_chart, meta, resource

CFG = IdentityConfig()
REGISTRY = "edgefm-models"
ARN = f"arn:aws:s3:::{REGISTRY}"

# components/registry_access.py site_read_statements(), the policy both hub flavors give sites.
READ_STATEMENTS: list[dict[str, Any]] = [
    {
        "Sid": "ReadModels",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:GetObjectVersion"],
        "Resource": [f"{ARN}/*"],
    },
    {
        "Sid": "ListRegistry",
        "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
        "Resource": [ARN],
    },
]
DECRYPT = {
    "Sid": "DecryptRegistryObjects",
    "Effect": "Allow",
    "Action": ["kms:Decrypt"],
    "Resource": ["arn:aws:kms:k"],
}


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def registry_bucket() -> Resource:
    tags = {"edgefm.io/part-of": "edgefm", "edgefm.io/component": "model-registry"}
    return resource(HUB, "aws:s3/bucket:Bucket", "hub-registry-bucket", {"bucket": REGISTRY, "tags": tags})


def site_user(site: str = "bridge-north") -> Resource:
    tags = {"edgefm.io/component": "model-registry", "edgefm.io/site": site}
    return resource(
        HUB,
        "aws:iam/user:User",
        f"hub-registry-site-{site}",
        {"name": f"edgefm-site-{site}", "path": "/edgefm/sites/", "tags": tags},
    )


def user_policy(policy: Any, site: str = "bridge-north", by_dependency: bool = False) -> Resource:
    user = site_user(site)
    props = {"user": UNKNOWN if by_dependency else f"edgefm-site-{site}", "policy": policy}
    deps = {"user": [user.urn]} if by_dependency else None
    return resource(HUB, "aws:iam/userPolicy:UserPolicy", f"hub-registry-site-{site}-read", props, deps)


def aws_hub(policy: Any, **kw: Any) -> list[Resource]:
    return [registry_bucket(), site_user(), user_policy(policy, **kw)]


@pytest.mark.parametrize("by_dependency", [False, True])
def test_the_programs_read_only_site_policy_passes(by_dependency: bool) -> None:
    assert check_site_identities(aws_hub(doc(*READ_STATEMENTS, DECRYPT), by_dependency=by_dependency), CFG) == []


def test_write_to_the_registry() -> None:
    put = {
        "Sid": "Publish",
        "Effect": "Allow",
        "Action": ["s3:PutObject", "s3:GetObject"],
        "Resource": [f"{ARN}/*"],
    }
    resources = aws_hub(doc(*READ_STATEMENTS, put))
    found = check_site_identities(resources, CFG)
    assert [(v.message, v.urn) for v in found] == [
        (
            "site bridge-north's identity: UserPolicy 'hub-registry-site-bridge-north-read' on User "
            "'hub-registry-site-bridge-north': statement 'Publish' allows s3:PutObject on the model registry "
            f"{REGISTRY}",
            resources[2].urn,
        )
    ]


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, "allows wildcard actions s3:*"),
        (
            {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": [f"{ARN}/*"]},
            "allows wildcard actions s3:Get*",
        ),
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, "allows wildcard actions *"),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "uses NotAction"),
        (
            {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::edgefm-*"},
            "s3:DeleteObject on",
        ),
        (
            {"Effect": "Allow", "Action": "s3:PutObject", "NotResource": "arn:aws:s3:::other/*"},
            "s3:PutObject on",
        ),
    ],
)
def test_wildcards_and_writes(statement: dict[str, Any], fragment: str) -> None:
    found = check_site_identities(aws_hub(doc(*READ_STATEMENTS, statement)), CFG)
    assert len(found) == 1 and fragment in found[0].message, [v.message for v in found]


def test_writes_elsewhere_are_allowed_and_denies_never_count() -> None:
    other = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bridge-north-telemetry/*"}
    deny = {"Effect": "Deny", "Action": "*", "Resource": "*"}
    assert check_site_identities(aws_hub(doc(*READ_STATEMENTS, other, deny)), CFG) == []


def test_writes_with_no_known_registry_are_refused() -> None:
    other = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bridge-north-telemetry/*"}
    found = check_site_identities([site_user(), user_policy(doc(other))], CFG)
    assert len(found) == 1 and "the registry bucket is unknown" in found[0].message
    named = IdentityConfig.from_config({"registryBuckets": [REGISTRY]})
    assert check_site_identities([site_user(), user_policy(doc(other))], named) == []


def test_hub_users_are_not_site_identities() -> None:
    publisher = resource(
        HUB, "aws:iam/user:User", "publisher", {"name": "edgefm-publisher", "tags": {"edgefm.io/site": "hub"}}
    )
    pol = resource(
        HUB,
        "aws:iam/userPolicy:UserPolicy",
        "publisher-write",
        {"user": "edgefm-publisher", "policy": doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})},
    )
    with pytest.raises(NotApplicable):
        check_site_identities([registry_bucket(), publisher, pol], CFG)


def test_managed_policies() -> None:
    user = site_user()
    managed = resource(
        HUB,
        "aws:iam/userPolicyAttachment:UserPolicyAttachment",
        "attach",
        {"user": "edgefm-site-bridge-north", "policyArn": "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"},
    )
    found = check_site_identities([registry_bucket(), user, managed], CFG)
    assert len(found) == 1 and "its text is not in the stack" in found[0].message and found[0].urn == managed.urn

    own = resource(
        HUB,
        "aws:iam/policy:Policy",
        "site-rw",
        {
            "arn": "arn:aws:iam::1:policy/site-rw",
            "policy": doc({"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{ARN}/*"}),
        },
    )
    attach = resource(
        HUB,
        "aws:iam/policyAttachment:PolicyAttachment",
        "attach-own",
        {"users": ["edgefm-site-bridge-north"], "policyArn": "arn:aws:iam::1:policy/site-rw"},
    )
    found = check_site_identities([registry_bucket(), user, own, attach], CFG)
    assert len(found) == 1 and "Policy 'site-rw' attached by PolicyAttachment 'attach-own'" in found[0].message


def test_unparseable_policy() -> None:
    found = check_site_identities(aws_hub("{not json"), CFG)
    assert len(found) == 1 and "policy is not valid JSON" in found[0].message


def test_unknown_policy_text_waits_for_update() -> None:
    assert check_site_identities(aws_hub(UNKNOWN), CFG) == []


# --- datacenter flavor: MinIO -----------------------------------------------------------------------


def minio_registry(users: list[dict[str, Any]], policies: list[dict[str, Any]] | None = None) -> Resource:
    """components/in_cluster_model_registry.py's HelmChart values."""
    stmts = [{"resources": s["Resource"], "actions": s["Action"]} for s in READ_STATEMENTS]
    values = {
        "buckets": [{"name": REGISTRY, "policy": "none", "versioning": True}],
        "policies": policies if policies is not None else [{"name": "edgefm-site-read", "statements": stmts}],
        "users": users,
        "customCommands": [{"command": f"encrypt set sse-s3 myminio/{REGISTRY}"}],
    }
    chart = helm_chart("hub-registry-minio", yaml.safe_dump(values), stack=HUB)
    chart.props["metadata"]["labels"]["app.kubernetes.io/component"] = "model-registry"
    return chart


def site_secret(site: str) -> Resource:
    props = {
        "metadata": meta(f"registry-site-{site}", HUB, "model-registry", labels={"edgefm.io/for-site": site}),
        "stringData": {"secretKey": "x"},
    }
    return resource(HUB, "kubernetes:core/v1:Secret", f"hub-registry-site-{site}", props)


def site_user_entry(site: str, policy: str = "edgefm-site-read") -> dict[str, Any]:
    return {"accessKey": f"site-{site}", "existingSecret": f"registry-site-{site}", "policy": policy}


def policy_configmap(document: str, policy_name: str = "edgefm-site-read") -> Resource:
    props = {
        "metadata": meta("edgefm-registry-site-policy", HUB, "model-registry"),
        "data": {"policy.json": document, "policyName": policy_name},
    }
    return resource(HUB, "kubernetes:core/v1:ConfigMap", "hub-registry-site-policy", props)


def test_registry_buckets_from_both_flavors() -> None:
    chart = minio_registry([])
    assert registry_buckets([registry_bucket(), chart], CFG) == {REGISTRY}


def test_datacenter_read_only_sites_pass() -> None:
    resources = [
        minio_registry([site_user_entry("bridge-north")]),
        site_secret("bridge-north"),
        policy_configmap(doc(*READ_STATEMENTS)),
    ]
    assert check_site_identities(resources, CFG) == []


def test_datacenter_site_with_a_write_policy() -> None:
    rw = [{"name": "edgefm-site-rw", "statements": [{"resources": [f"{ARN}/*"], "actions": ["s3:PutObject"]}]}]
    chart = minio_registry([site_user_entry("bridge-north", "edgefm-site-rw")], rw)
    found = check_site_identities([chart, site_secret("bridge-north")], CFG)
    assert len(found) == 1 and found[0].urn == chart.urn
    assert found[0].message.startswith(
        "site bridge-north's identity: HelmChart 'hub-registry-minio' in namespace kube-system: "
        "spec.valuesContent user site-bridge-north holds policy 'edgefm-site-rw': "
    )
    assert "allows s3:PutObject on the model registry edgefm-models" in found[0].message


@pytest.mark.parametrize(("builtin", "bad"), [("readonly", False), ("readwrite", True), ("consoleAdmin", True)])
def test_minio_builtin_policies(builtin: str, bad: bool) -> None:
    chart = minio_registry([site_user_entry("bridge-north", builtin)], [])
    found = check_site_identities([chart, site_secret("bridge-north")], CFG)
    assert bool(found) is bad


def test_undefined_minio_policy_cannot_be_verified() -> None:
    chart = minio_registry([site_user_entry("bridge-north", "mystery")], [])
    found = check_site_identities([chart, site_secret("bridge-north")], CFG)
    assert len(found) == 1 and "which the stack does not define" in found[0].message


def test_site_users_found_by_access_key_without_a_labelled_secret() -> None:
    chart = minio_registry([{"accessKey": "site-viaduct-cpu", "policy": "readwrite"}], [])
    assert "site viaduct-cpu's identity" in check_site_identities([chart], CFG)[0].message


def test_policy_kept_as_data_is_checked_too() -> None:
    write = {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{ARN}/*"]}
    cm = policy_configmap(doc(*READ_STATEMENTS, write))
    resources = [minio_registry([site_user_entry("bridge-north")]), site_secret("bridge-north"), cm]
    found = check_site_identities(resources, CFG)
    assert [v.urn for v in found] == [cm.urn]
    assert "ConfigMap 'hub-registry-site-policy' in namespace edgefm data.policy.json" in found[0].message


def test_annotated_secret_policy_base64() -> None:
    write = doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    props = {
        "metadata": meta("p", HUB, annotations={"edgefm.io/minio-policy-site": "bridge-north"}),
        "data": {"policy.json": base64.b64encode(write.encode()).decode()},
    }
    secret = resource(HUB, "kubernetes:core/v1:Secret", "p", props)
    found = check_site_identities([secret], CFG)
    assert len(found) == 1 and "allows wildcard actions s3:*" in found[0].message


# --- grants however they are written -------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource_arn", [f"{ARN}/sites/bridge-north/*", f"{ARN}/incoming/model.onnx", "arn:aws:s3:::edgefm-*/uploads/*"]
)
def test_a_write_on_a_key_prefix_reaches_the_registry(resource_arn: str) -> None:
    prefix_write = {"Sid": "Upload", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [resource_arn]}
    found = check_site_identities(aws_hub(doc(*READ_STATEMENTS, prefix_write)), CFG)
    assert len(found) == 1
    assert "statement 'Upload' allows s3:PutObject on the model registry edgefm-models" in found[0].message


def test_a_prefix_of_another_bucket_is_not_the_registry() -> None:
    elsewhere = {
        "Sid": "Scratch",
        "Effect": "Allow",
        "Action": ["s3:PutObject"],
        "Resource": ["arn:aws:s3:::scratch/x/*"],
    }
    assert check_site_identities(aws_hub(doc(*READ_STATEMENTS, elsewhere)), CFG) == []


def bucket_policy(statement: dict[str, Any], depends_on_user: bool = False) -> Resource:
    user = site_user()
    deps = {"policy": [user.urn], "bucket": [registry_bucket().urn]} if depends_on_user else None
    props = {"bucket": REGISTRY, "policy": doc(statement)}
    return resource(HUB, "aws:s3/bucketPolicy:BucketPolicy", "hub-registry-grants", props, deps)


@pytest.mark.parametrize(
    "principal",
    [
        {"AWS": "arn:aws:iam::123456789012:user/edgefm/sites/edgefm-site-bridge-north"},
        {"AWS": ["arn:aws:iam::123456789012:role/publisher", "arn:aws:iam::1:user/edgefm-site-bridge-north"]},
    ],
)
def test_a_bucket_policy_that_lets_a_site_write(principal: dict[str, Any]) -> None:
    grant = {"Sid": "SiteUpload", "Effect": "Allow", "Principal": principal, "Action": "s3:PutObject",
             "Resource": f"{ARN}/*"}  # fmt: skip
    policy = bucket_policy(grant)
    found = check_site_identities([*aws_hub(doc(*READ_STATEMENTS)), policy], CFG)
    assert [(v.urn, "allows s3:PutObject on the model registry" in v.message) for v in found] == [(policy.urn, True)]
    assert found[0].message.startswith(
        "site bridge-north's identity: BucketPolicy 'hub-registry-grants' grants User 'hub-registry-site-bridge-north'"
    )


def test_a_bucket_policy_whose_principal_is_computed_from_the_site_user() -> None:
    grant = {"Effect": "Allow", "Principal": {"AWS": UNKNOWN}, "Action": ["s3:*"], "Resource": [f"{ARN}/*"]}
    body = {"Version": "2012-10-17", "Statement": [grant]}
    user = site_user()
    policy = resource(
        HUB, "aws:s3/bucketPolicy:BucketPolicy", "grants", {"bucket": REGISTRY, "policy": body}, {"policy": [user.urn]}
    )
    found = check_site_identities([*aws_hub(doc(*READ_STATEMENTS)), policy], CFG)
    assert len(found) == 1 and "allows wildcard actions s3:*" in found[0].message


def test_bucket_policies_that_grant_sites_only_reads_or_grant_others_pass() -> None:
    read = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:user/edgefm-site-bridge-north"},
            "Action": ["s3:GetObject"], "Resource": [f"{ARN}/*"]}  # fmt: skip
    publisher = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/publisher"}, "Action": ["s3:PutObject"],
                 "Resource": [f"{ARN}/*"]}  # fmt: skip
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [f"{ARN}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}  # fmt: skip
    stack = [*aws_hub(doc(*READ_STATEMENTS)), bucket_policy(read), bucket_policy(publisher), bucket_policy(deny)]
    assert check_site_identities(stack, CFG) == []
