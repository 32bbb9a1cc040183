"""Object storage: no public access, encryption at rest, versioning on the model registry, TLS-only access.

Two shapes of bucket:
  * AWS (hub, aws flavor): `aws:s3/bucket:Bucket` plus companion resources; checked per stack, because
    pulumi-aws 7 configures a bucket through separate PublicAccessBlock / SSE / Versioning / Policy
    resources and a bucket missing one of them is only visible when the whole stack is seen.
  * On-site / datacenter (MinIO, OpenShift Data Foundation): a bucket Job or ObjectBucketClaim labelled
    `edgefm.io/bucket`, judged by what its MinIO commands do (or what the claim's spec asks for), never by
    annotations beside them; checked per resource.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from edgefm_guardrails.config import StorageConfig
from edgefm_guardrails.facts import FACTS_KEY, FACTS_NAME, FACTS_NAMESPACE, find_facts_resource
from edgefm_guardrails.iam import (
    PolicyDocumentError,
    Statement,
    action_matches,
    covers_bucket,
    load_document,
    principal_is_everyone,
    statements,
)
from edgefm_guardrails.kube import (
    BUCKET_LABEL,
    COMPONENT,
    annotations_of,
    env_values,
    helm_chart_name,
    helm_values,
    is_kind,
    labels_of,
    workload_containers,
)
from edgefm_guardrails.model import (
    HUB_STACK,
    UNKNOWN,
    NotApplicable,
    Resource,
    Violation,
    as_list,
    as_mapping,
    get,
)

# pulumi-aws 7 type tokens (checked against the installed SDK by tests); the V2 names are deprecated
# aliases that still work, so a stack using them is held to the same rules.
BUCKET_TYPES: Final = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK_TYPES: Final = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
SSE_TYPES: Final = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
VERSIONING_TYPES: Final = (
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketVersioningV2:BucketVersioningV2",
)
BUCKET_POLICY_TYPES: Final = ("aws:s3/bucketPolicy:BucketPolicy",)
ACL_TYPES: Final = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
PUBLIC_ACCESS_FLAGS: Final = (
    "blockPublicAcls",
    "blockPublicPolicy",
    "ignorePublicAcls",
    "restrictPublicBuckets",
)
PUBLIC_ACLS: Final = frozenset({"public-read", "public-read-write", "authenticated-read"})

BUCKET_NAME_ANNOTATION: Final = "edgefm.io/bucket-name"
REPLICATION_ANNOTATION: Final = "edgefm.io/bucket-replication"
REGISTRY_PURPOSE: Final = "models"
REGISTRY_COMPONENT: Final = "model-registry"
EDGEFM_COMPONENT_TAG: Final = "edgefm.io/component"
MINIO_CHART: Final = "minio"
# MinIO chart bucket policies other than "none" grant anonymous access.
MINIO_PRIVATE_POLICY: Final = "none"


# --- AWS --------------------------------------------------------------------------------------------


def _bucket_name(bucket: Resource) -> Any:
    return bucket.props.get("bucket")


def companions(bucket: Resource, resources: Sequence[Resource], types: tuple[str, ...]) -> list[Resource]:
    """Resources of `types` configuring this bucket: by property dependency (a new bucket's name is
    unknown in preview, but the companion's `bucket` input still depends on it) or by equal name."""
    name = _bucket_name(bucket)
    out = []
    for r in resources:
        if r.type not in types:
            continue
        target = r.props.get("bucket")
        if bucket.urn in r.property_dependencies.get("bucket", ()) or (
            isinstance(name, str) and name and target == name
        ):
            out.append(r)
    return out


def aws_bucket_is_registry(bucket: Resource, cfg: StorageConfig | None = None) -> bool:
    """The hub's registry bucket: tagged as the model-registry component (or purpose models), or named."""
    name = _bucket_name(bucket)
    tags = as_mapping(bucket.props.get("tags"))
    named = cfg is not None and isinstance(name, str) and name in cfg.registry_buckets
    tagged = tags.get(BUCKET_LABEL) == REGISTRY_PURPOSE or tags.get(EDGEFM_COMPONENT_TAG) == REGISTRY_COMPONENT
    return named or (bucket.stack == HUB_STACK and tagged)


def denies_insecure_transport(st: Statement) -> bool:
    """A Deny for everyone, on every S3 action, when the request did not come over TLS."""
    if st.effect != "Deny" or not principal_is_everyone(st.principal):
        return False
    if not any(action_matches(a, "s3:PutObject") and action_matches(a, "s3:GetObject") for a in st.actions):
        return False
    for op in ("Bool", "BoolIfExists"):
        value = as_mapping(st.condition.get(op)).get("aws:SecureTransport")
        if value in (False, "false", ["false"], [False]):
            return True
    return False


def _bucket_policy_problems(policy: Resource, name: Any) -> tuple[list[str], bool]:
    """(problems, has a TLS-only deny) for one bucket policy."""
    try:
        doc = load_document(policy.props.get("policy"))
    except PolicyDocumentError as exc:
        return [f"{policy.label}: {exc}"], False
    if doc is UNKNOWN:
        return [], True  # computed policy text: judged at update time
    if doc is None or not isinstance(doc, Mapping):
        return [f"{policy.label} has no policy document"], False
    problems: list[str] = []
    tls = False
    for st in statements(doc):
        if denies_insecure_transport(st) and (not isinstance(name, str) or covers_bucket(st, name)):
            tls = True
        if st.effect == "Allow" and principal_is_everyone(st.principal) and not st.condition:
            problems.append(f'{policy.label} {st.label} allows everyone (Principal "*"): the bucket is public')
    return problems, tls


def check_aws_buckets(resources: Sequence[Resource], cfg: StorageConfig) -> list[Violation]:
    buckets = [r for r in resources if r.type in BUCKET_TYPES]
    if not buckets:
        raise NotApplicable("no S3 buckets in this stack")
    out: list[Violation] = []
    for b in buckets:
        name = _bucket_name(b)
        shown = f"{b.label}" + (f" ({name})" if isinstance(name, str) else "")

        acl = b.props.get("acl")
        if isinstance(acl, str) and acl in PUBLIC_ACLS:
            out.append(Violation(f"{shown} has the public ACL {acl!r}", b.urn))
        for acl_res in companions(b, resources, ACL_TYPES):
            acl = acl_res.props.get("acl")
            if isinstance(acl, str) and acl in PUBLIC_ACLS:
                out.append(Violation(f"{shown}: {acl_res.label} sets the public ACL {acl!r}", acl_res.urn))

        blocks = companions(b, resources, PUBLIC_ACCESS_BLOCK_TYPES)
        if not blocks:
            out.append(Violation(f"{shown} has no BucketPublicAccessBlock (all four blocks must be true)", b.urn))
        for blk in blocks:
            off = [f for f in PUBLIC_ACCESS_FLAGS if blk.props.get(f) is not True and blk.props.get(f) is not UNKNOWN]
            if off:
                out.append(Violation(f"{shown}: {blk.label} leaves {', '.join(off)} off", blk.urn))

        sses = companions(b, resources, SSE_TYPES)
        if not sses:
            out.append(Violation(f"{shown} has no BucketServerSideEncryptionConfiguration (encryption at rest)", b.urn))
        for sse in sses:
            rules = as_list(sse.props.get("rules"))
            algos = [get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in rules]
            if UNKNOWN in algos:
                continue
            if not any(a in cfg.sse_algorithms for a in algos):
                out.append(
                    Violation(
                        f"{shown}: {sse.label} sets no default encryption with one of "
                        f"{', '.join(cfg.sse_algorithms)} (has {algos})",
                        sse.urn,
                    )
                )

        policies = companions(b, resources, BUCKET_POLICY_TYPES)
        tls_only = False
        for pol in policies:
            problems, tls = _bucket_policy_problems(pol, name)
            tls_only = tls_only or tls
            out += [Violation(f"{shown}: {p}", pol.urn) for p in problems]
        if not tls_only:
            out.append(
                Violation(
                    f"{shown} has no bucket policy denying requests without TLS "
                    "(Deny s3:* when aws:SecureTransport is false)",
                    b.urn,
                )
            )

        if aws_bucket_is_registry(b, cfg):
            versions = companions(b, resources, VERSIONING_TYPES)
            statuses = [get(v.props, "versioningConfiguration", "status") for v in versions]
            if UNKNOWN not in statuses and "Enabled" not in statuses:
                out.append(
                    Violation(
                        f"{shown} holds the model registry but versioning is not Enabled "
                        f"(BucketVersioning status: {statuses or 'none'})",
                        b.urn,
                    )
                )
    return out


# --- Kubernetes buckets (MinIO Job / ObjectBucketClaim) ----------------------------------------------


def is_onsite_bucket(r: Resource) -> bool:
    return (is_kind(r, "batch", "Job") or is_kind(r, "objectbucket.io", "ObjectBucketClaim")) and isinstance(
        labels_of(r).get(BUCKET_LABEL), str
    )


def bucket_purpose(r: Resource) -> str:
    return str(labels_of(r).get(BUCKET_LABEL))


# MinIO client steps, matched on whole commands whatever the client is called (`mc`, `$MC`, `mcli`).
_MAKE = re.compile(r"\bmb\b(?:\s+-{1,2}[\w-]+)*\s+[\w.-]+/(?P<bucket>[A-Za-z0-9][A-Za-z0-9.-]*)")
_PUBLIC = re.compile(
    r"\b(?:anonymous\s+set\s+(?:download|upload|public)|anonymous\s+set-json|policy\s+set\s+(?:download|upload|public))\b"
)
_ENCRYPT = re.compile(r"\bencrypt\s+set\s+sse-(?:s3|kms)\b")
_DECRYPT = re.compile(r"\bencrypt\s+clear\b")
_VERSION_ON = re.compile(r"\bversion\s+enable\b")
_VERSION_OFF = re.compile(r"\bversion\s+suspend\b")


def script_steps(r: Resource) -> list[str] | None:
    """The shell steps a bucket Job runs (command and args, split at newlines, `;` and `&&`); None when
    they are computed and unknown during preview."""
    steps: list[str] = []
    for _tmpl, c in workload_containers(r):
        for key in ("command", "args"):
            value = c.spec.get(key)
            if value is UNKNOWN:
                return None
            for item in as_list(value):
                if item is UNKNOWN:
                    return None
                if isinstance(item, str):
                    steps += [s.strip() for s in re.split(r"\n|;|&&", item) if s.strip()]
    return steps


def _targets(step: str, bucket: str) -> bool:
    return re.search(rf"[\w.-]+/{re.escape(bucket)}(?![A-Za-z0-9.-])", step) is not None


def created_bucket(r: Resource) -> str | None:
    """The bucket a provisioning Job makes (`mc mb <alias>/<bucket>`), if its script says."""
    for step in script_steps(r) or []:
        m = _MAKE.search(step)
        if m:
            return m.group("bucket")
    return None


def bucket_name(r: Resource) -> Any:
    """A bucket's name as its provisioning shows it: the Job's `mb` target or the claim's bucketName; the
    annotation only where neither says."""
    if is_kind(r, "batch", "Job"):
        made = created_bucket(r)
        if made is not None:
            return made
    elif is_kind(r, "objectbucket.io", "ObjectBucketClaim"):
        name = get(r.props, "spec", "bucketName")
        if name is not None:
            return name
    return annotations_of(r).get(BUCKET_NAME_ANNOTATION)


def onsite_is_registry(r: Resource, cfg: StorageConfig) -> bool:
    name = bucket_name(r)
    return (r.stack == HUB_STACK and bucket_purpose(r) == REGISTRY_PURPOSE) or (
        isinstance(name, str) and name in cfg.registry_buckets
    )


def check_onsite_bucket(r: Resource, cfg: StorageConfig) -> list[Violation]:
    """On-site buckets, judged by what provisions them: a Job's MinIO commands, a claim's spec."""
    if not is_onsite_bucket(r):
        return []
    if is_kind(r, "objectbucket.io", "ObjectBucketClaim"):
        return _claim_problems(r, cfg)
    steps = script_steps(r)
    if steps is None:
        return []  # computed script: judged at update time
    name = created_bucket(r)
    shown = f"{r.label} (purpose {bucket_purpose(r)})"
    if name is None:
        return [Violation(f"{shown} is labelled {BUCKET_LABEL} but its commands create no bucket (`mc mb`)", r.urn)]
    shown = f"{r.label} (bucket {name}, purpose {bucket_purpose(r)})"
    out: list[Violation] = []
    mine = [s for s in steps if _targets(s, name)]
    public = [s for s in mine if _PUBLIC.search(s)]
    if public:
        out.append(
            Violation(f"{shown} runs {public[0]!r}, which opens it to anonymous access; buckets must be private", r.urn)
        )
    encrypted = False
    for step in mine:
        if _ENCRYPT.search(step):
            encrypted = True
        elif _DECRYPT.search(step):
            encrypted = False
    if not encrypted:
        out.append(
            Violation(
                f"{shown} is not encrypted at rest: its commands set no `encrypt set sse-s3|sse-kms` on it", r.urn
            )
        )
    if onsite_is_registry(r, cfg):
        versioned = False
        for step in mine:
            if _VERSION_ON.search(step):
                versioned = True
            elif _VERSION_OFF.search(step):
                versioned = False
        if not versioned:
            out.append(
                Violation(
                    f"{shown} holds the model registry but its commands do not leave versioning enabled "
                    "(`version enable`); registry buckets must be versioned",
                    r.urn,
                )
            )
    return out


def _claim_problems(r: Resource, cfg: StorageConfig) -> list[Violation]:
    """An ObjectBucketClaim: the Multicloud Object Gateway encrypts every bucket and grants no anonymous
    access; versioning is not something a claim can ask for, so a registry cannot be a claim."""
    if onsite_is_registry(r, cfg):
        return [
            Violation(
                f"{r.label} holds the model registry, but an ObjectBucketClaim cannot enable versioning; "
                "serve the registry from a versioned bucket",
                r.urn,
            )
        ]
    return []


def is_registry_chart(r: Resource, cfg: StorageConfig) -> bool:
    """The hub's in-cluster registry: a MinIO chart of the model-registry component in the hub stack."""
    return r.stack == HUB_STACK and labels_of(r).get(COMPONENT) == REGISTRY_COMPONENT


def check_minio_chart_buckets(r: Resource, cfg: StorageConfig) -> list[Violation]:
    """Buckets a MinIO chart creates itself (`buckets:` values): private, encrypted, registry versioned.

    The chart has no encryption switch per bucket; edgefm sets it with `mc encrypt set` in
    `customCommands`, so a bucket without such a command is not encrypted at rest.
    """
    if helm_chart_name(r) != MINIO_CHART:
        return []
    out: list[Violation] = []
    for where, values in helm_values(r):
        commands = " ".join(
            str(get(c, "command") or "") for c in as_list(get(values, "customCommands")) if isinstance(c, Mapping)
        )
        for bucket in as_list(get(values, "buckets")):
            name = get(bucket, "name")
            if not isinstance(name, str):
                continue
            shown = f"{r.label}: {where} bucket {name}"
            policy = get(bucket, "policy")
            if policy not in (None, MINIO_PRIVATE_POLICY):
                out.append(Violation(f"{shown} has anonymous policy {policy!r}; buckets must be private", r.urn))
            if not re.search(rf"\bencrypt\s+set\s+sse-(s3|kms)\b[^;]*/{re.escape(name)}(?![A-Za-z0-9.-])", commands):
                out.append(
                    Violation(
                        f"{shown} is not encrypted at rest (no `encrypt set sse-s3 .../{name}` custom command)",
                        r.urn,
                    )
                )
            registry = is_registry_chart(r, cfg) or name in cfg.registry_buckets
            if registry and get(bucket, "versioning") is not True:
                out.append(
                    Violation(
                        f"{shown} holds the model registry but versioning is "
                        f"{get(bucket, 'versioning')!r}; registry buckets must be versioned",
                        r.urn,
                    )
                )
    return out


def check_onsite_buckets(r: Resource, cfg: StorageConfig) -> list[Violation]:
    return check_onsite_bucket(r, cfg) + check_minio_chart_buckets(r, cfg)


# --- TLS on S3 endpoints ---------------------------------------------------------------------------------


def is_s3_endpoint_variable(name: str) -> bool:
    """Env variables through which edgefm's workloads (and the tools they run) locate S3 servers."""
    return (
        (name.startswith("EDGEFM_") and name.endswith(("_ENDPOINT", "_ENDPOINT_URL")))
        or name.startswith(("AWS_ENDPOINT_URL", "MC_HOST_"))
        or name in ("S3_ENDPOINT", "MINIO_URL", "MINIO_SERVER_URL")
    )


# Triton names a non-AWS S3 server inside its repository path: s3://http://host:port/bucket/prefix.
_S3_WRAPPED_ENDPOINT = re.compile(r"s3://(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://\S+")


def _tls_problem(value: Any) -> str | None:
    if value is UNKNOWN or not isinstance(value, str):
        return None
    if urlsplit(value).scheme.lower() != "https":
        return f"{value!r} is not an https:// URL"
    return None


def check_tls_endpoints(r: Resource) -> list[Violation]:
    out: list[Violation] = []
    for _tmpl, c in workload_containers(r):
        for var, value in env_values(c).items():
            if is_s3_endpoint_variable(var):
                problem = _tls_problem(value)
                if problem:
                    out.append(
                        Violation(
                            f"{r.label}: {c.label} env {var}: {problem}; object storage is reached over TLS only",
                            r.urn,
                        )
                    )
        for key in ("command", "args"):
            for item in as_list(c.spec.get(key)):
                m = _S3_WRAPPED_ENDPOINT.search(item) if isinstance(item, str) else None
                if m and m.group("scheme").lower() != "https":
                    out.append(
                        Violation(
                            f"{r.label}: {c.label} {key} {m.group(0)!r} reaches object storage "
                            f"over {m.group('scheme')}; object storage is reached over TLS only",
                            r.urn,
                        )
                    )
    if is_kind(r, "networking.k8s.io", "Ingress"):
        out += _ingress_tls(r)
    if find_facts_resource([r]) is r:
        raw = get(r.props, "data", FACTS_KEY)
        if isinstance(raw, str):
            try:
                endpoint = as_mapping(json.loads(raw)).get("storageEndpoint")
            except json.JSONDecodeError:
                endpoint = None  # the site-facts policy reports unreadable facts
            problem = _tls_problem(endpoint)
            if problem:
                out.append(
                    Violation(
                        f"ConfigMap {FACTS_NAMESPACE}/{FACTS_NAME}: storageEndpoint {problem}; the "
                        "site's object storage must serve TLS only",
                        r.urn,
                    )
                )
    return out


def _ingress_tls(r: Resource) -> list[Violation]:
    """The hub's registry and telemetry are reached through Ingresses: each host must be served with TLS."""
    hosts = [get(rule, "host") for rule in as_list(get(r.props, "spec", "rules"))]
    tls_hosts: set[Any] = set()
    for entry in as_list(get(r.props, "spec", "tls")):
        tls_hosts.update(as_list(get(entry, "hosts")))
    out: list[Violation] = []
    plain = [h for h in hosts if h is not UNKNOWN and h not in tls_hosts]
    if plain:
        shown = ", ".join(str(h) if h else "<any host>" for h in plain)
        out.append(Violation(f"{r.label} serves {shown} without TLS (not listed under spec.tls)", r.urn))
    if annotations_of(r).get("nginx.ingress.kubernetes.io/ssl-redirect") == "false":
        out.append(Violation(f"{r.label} turns off the HTTPS redirect (ssl-redirect: false)", r.urn))
    return out
