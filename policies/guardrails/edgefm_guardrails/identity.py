"""Identity: a site's credentials may read the model registry, never write it, and never hold wildcard
actions. A site that is compromised must not be able to poison the model every other site mirrors.

Identities checked:
  * AWS flavor: IAM users tagged `edgefm.io/site=<site>` (not `hub`), through their inline UserPolicies,
    managed Policies attached with UserPolicyAttachment/PolicyAttachment, and AWS-managed policy ARNs
    (whose text the pack cannot see, so they are refused);
  * datacenter flavor: the MinIO chart's `users` whose credentials Secret is labelled
    `edgefm.io/for-site` (or whose access key is `site-<site>`), through the chart's `policies` or MinIO's
    built-in policies; and the policy JSON the hub keeps as data for auditors (ConfigMap/Secret whose
    `policyName` a site user holds, or annotated `edgefm.io/minio-policy-site`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edgefm_guardrails.config import IdentityConfig
from edgefm_guardrails.iam import (
    PolicyDocumentError,
    Statement,
    action_matches,
    covers_bucket,
    is_wildcard,
    load_document,
    statements,
)
from edgefm_guardrails.kube import (
    BUCKET_LABEL,
    COMPONENT,
    SITE_LABEL,
    annotations_of,
    helm_chart_name,
    helm_values,
    is_kind,
    labels_of,
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
from edgefm_guardrails.storage import (
    BUCKET_TYPES,
    MINIO_CHART,
    REGISTRY_COMPONENT,
    REGISTRY_PURPOSE,
    aws_bucket_is_registry,
    bucket_name,
    is_onsite_bucket,
)

USER_TYPE: Final = "aws:iam/user:User"
USER_POLICY_TYPE: Final = "aws:iam/userPolicy:UserPolicy"
USER_POLICY_ATTACHMENT_TYPE: Final = "aws:iam/userPolicyAttachment:UserPolicyAttachment"
POLICY_ATTACHMENT_TYPE: Final = "aws:iam/policyAttachment:PolicyAttachment"
POLICY_TYPE: Final = "aws:iam/policy:Policy"
# A ConfigMap/Secret holding a MinIO policy for one site carries this annotation with the site's name.
MINIO_POLICY_SITE_ANNOTATION: Final = "edgefm.io/minio-policy-site"


@dataclass(frozen=True)
class Document:
    """A policy document some site identity holds, and where it came from (for messages)."""

    site: str
    source: Resource
    where: str
    body: Any  # JSON text, a mapping, or UNKNOWN


def registry_buckets(resources: Sequence[Resource], cfg: IdentityConfig) -> set[str]:
    names = set(cfg.registry_buckets)
    for r in resources:
        if r.stack != HUB_STACK:
            continue
        found: list[Any] = []
        if r.type in BUCKET_TYPES and aws_bucket_is_registry(r):
            found.append(r.get("bucket"))
        elif is_onsite_bucket(r) and labels_of(r).get(BUCKET_LABEL) == REGISTRY_PURPOSE:
            found.append(bucket_name(r))
        elif helm_chart_name(r) == MINIO_CHART and labels_of(r).get(COMPONENT) == REGISTRY_COMPONENT:
            found += [get(b, "name") for _w, values in helm_values(r) for b in as_list(get(values, "buckets"))]
        names.update(n for n in found if isinstance(n, str))
    return names


def statement_problems(st: Statement, registry: set[str], cfg: IdentityConfig) -> list[str]:
    if st.effect != "Allow":
        return []  # a Deny only ever narrows what the identity may do
    problems: list[str] = []
    if st.not_actions:
        problems.append(f"{st.label} uses NotAction (allows every action but {', '.join(st.not_actions)})")
    wild = [a for a in st.actions if is_wildcard(a)]
    if wild:
        problems.append(f"{st.label} allows wildcard actions {', '.join(wild)}")
    writes = [
        a for a in st.actions
        if not is_wildcard(a) and a.lower().startswith("s3:")
        and not any(action_matches(ro, a) for ro in cfg.read_only_actions)
    ]  # fmt: skip
    if writes:
        if not registry:
            # Without a known registry bucket every write might land there.
            problems.append(f"{st.label} allows write actions {', '.join(writes)} and the registry bucket is unknown")
        else:
            hit = sorted(b for b in registry if covers_bucket(st, b))
            if hit:
                problems.append(f"{st.label} allows {', '.join(writes)} on the model registry {', '.join(hit)}")
    return problems


def document_problems(doc: Document, registry: set[str], cfg: IdentityConfig) -> list[str]:
    try:
        body = load_document(doc.body)
    except PolicyDocumentError as exc:
        return [str(exc)]
    if body is UNKNOWN or body is None or not isinstance(body, Mapping):
        return []  # computed at preview; judged again at update time
    return [p for st in statements(body) for p in statement_problems(st, registry, cfg)]


def _site_users(resources: Sequence[Resource]) -> dict[str, tuple[Resource, str]]:
    """URN → (user, site) for IAM users tagged with a site other than the hub."""
    out: dict[str, tuple[Resource, str]] = {}
    for r in resources:
        if r.type != USER_TYPE:
            continue
        site = as_mapping(r.get("tags")).get(SITE_LABEL)
        if isinstance(site, str) and site and site != HUB_STACK:
            out[r.urn] = (r, site)
    return out


def _user_of(r: Resource, prop: str, users: Mapping[str, tuple[Resource, str]]) -> Iterator[tuple[Resource, str]]:
    value = r.get(prop)
    targets = as_list(value) if isinstance(value, list) else [value]
    for urn, (user, site) in users.items():
        name = user.get("name")
        if urn in r.property_dependencies.get(prop, ()) or (isinstance(name, str) and name in targets):
            yield user, site


def aws_site_documents(resources: Sequence[Resource]) -> tuple[list[Document], list[Violation]]:
    users = _site_users(resources)
    docs: list[Document] = []
    unverifiable: list[Violation] = []
    policies = {r.urn: r for r in resources if r.type == POLICY_TYPE}

    def attached(att: Resource, user: Resource, site: str) -> None:
        arn = att.get("policyArn")
        found = [p for urn, p in policies.items() if urn in att.property_dependencies.get("policyArn", ())]
        found += [p for p in policies.values() if isinstance(arn, str) and p.get("arn") == arn and p not in found]
        if found:
            docs.extend(Document(site, p, f"{p.label} attached by {att.label}", p.get("policy")) for p in found)
        elif arn is not UNKNOWN:
            unverifiable.append(
                Violation(
                    f"{att.label} attaches {arn!r} to site {site}'s {user.label}; its text is not in the "
                    "stack, so the pack cannot show it is read-only: use an inline UserPolicy or a Policy "
                    "from this stack",
                    att.urn,
                )
            )

    for r in resources:
        if r.type == USER_POLICY_TYPE:
            for user, site in _user_of(r, "user", users):
                docs.append(Document(site, r, f"{r.label} on {user.label}", r.get("policy")))
        elif r.type == USER_POLICY_ATTACHMENT_TYPE:
            for user, site in _user_of(r, "user", users):
                attached(r, user, site)
        elif r.type == POLICY_ATTACHMENT_TYPE:
            for user, site in _user_of(r, "users", users):
                attached(r, user, site)
    return docs, unverifiable


_ANY_BUCKET: Final = "arn:aws:s3:::*"
# MinIO's built-in policies, as MinIO defines them; a site user holding any but readonly can write.
MINIO_BUILTIN_POLICIES: Final[dict[str, list[dict[str, Any]]]] = {
    "readonly": [
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:GetObject"], "Resource": [_ANY_BUCKET]}
    ],
    "writeonly": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [_ANY_BUCKET]}],
    "readwrite": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": [_ANY_BUCKET]}],
    "consoleAdmin": [
        {"Effect": "Allow", "Action": ["admin:*"]},
        {"Effect": "Allow", "Action": ["kms:*"]},
        {"Effect": "Allow", "Action": ["s3:*"], "Resource": [_ANY_BUCKET]},
    ],
}  # fmt: skip
FOR_SITE_LABEL: Final = "edgefm.io/for-site"
SITE_ACCESS_KEY_PREFIX: Final = "site-"


def _secret_sites(resources: Sequence[Resource]) -> dict[str, str]:
    """Secret name → site, for the per-site credential Secrets (labelled edgefm.io/for-site)."""
    out: dict[str, str] = {}
    for r in resources:
        site = labels_of(r).get(FOR_SITE_LABEL)
        name = get(r.props, "metadata", "name")
        if is_kind(r, "core", "Secret") and isinstance(site, str) and isinstance(name, str):
            out[name] = site
    return out


def _chart_statement(st: Any) -> dict[str, Any]:
    """A MinIO chart `policies[].statements[]` entry in IAM form."""
    doc: dict[str, Any] = {
        "Effect": str(get(st, "effect") or "Allow"),
        "Action": as_list(get(st, "actions")),
        "Resource": as_list(get(st, "resources")),
    }
    if get(st, "conditions") is not None:
        doc["Condition"] = get(st, "conditions")
    return doc


def minio_chart_site_documents(
    resources: Sequence[Resource],
) -> tuple[list[Document], list[Violation], dict[str, set[str]]]:
    """Policies the MinIO chart gives site users (`users[].policy` → `policies[]` or a built-in).

    Returns the documents, users whose policy cannot be seen, and policy name → sites holding it.
    """
    secret_sites = _secret_sites(resources)
    docs: list[Document] = []
    out: list[Violation] = []
    held: dict[str, set[str]] = {}
    for r in resources:
        if helm_chart_name(r) != MINIO_CHART:
            continue
        for where, values in helm_values(r):
            policies = {get(p, "name"): as_list(get(p, "statements")) for p in as_list(get(values, "policies"))}
            for user in as_list(get(values, "users")):
                key = get(user, "accessKey")
                site = secret_sites.get(str(get(user, "existingSecret")))
                if site is None and isinstance(key, str) and key.startswith(SITE_ACCESS_KEY_PREFIX):
                    site = key.removeprefix(SITE_ACCESS_KEY_PREFIX)
                if site is None or site == HUB_STACK:
                    continue
                for name in str(get(user, "policy") or "").split(","):
                    name = name.strip()
                    held.setdefault(name, set()).add(site)
                    shown = f"{r.label}: {where} user {key} holds policy {name!r}"
                    if name in policies:
                        body = {"Statement": [_chart_statement(st) for st in policies[name]]}
                        docs.append(Document(site, r, shown, body))
                    elif name in MINIO_BUILTIN_POLICIES:
                        docs.append(
                            Document(
                                site,
                                r,
                                f"{shown} (MinIO built-in)",
                                {"Statement": MINIO_BUILTIN_POLICIES[name]},
                            )
                        )
                    else:
                        out.append(
                            Violation(
                                f"site {site}'s identity: {shown}, which the stack does not define, "
                                "so the pack cannot show it is read-only",
                                r.urn,
                            )
                        )
    return docs, out, held


def minio_policy_documents(resources: Sequence[Resource], held: Mapping[str, set[str]]) -> list[Document]:
    """MinIO policy JSON kept as data: in a ConfigMap/Secret annotated `edgefm.io/minio-policy-site: <site>`,
    or one whose `policyName` key names a policy the MinIO chart gives site users."""
    docs: list[Document] = []
    for r in resources:
        if not (is_kind(r, "core", "ConfigMap") or is_kind(r, "core", "Secret")):
            continue
        annotated = annotations_of(r).get(MINIO_POLICY_SITE_ANNOTATION)
        for field_name in ("data", "stringData"):
            data = get(r.props, field_name)
            if data is UNKNOWN:
                continue
            entries = dict(as_mapping(data))
            if field_name == "data" and is_kind(r, "core", "Secret"):
                entries = {k: _b64_text(v) if isinstance(v, str) else v for k, v in entries.items()}
            named = held.get(str(entries.get("policyName")), set())
            sites = sorted(named | ({annotated} if isinstance(annotated, str) and annotated != HUB_STACK else set()))
            if not sites:
                continue
            for key, value in entries.items():
                if isinstance(value, str) and '"Statement"' in value:
                    docs.append(Document(", ".join(sites), r, f"{r.label} {field_name}.{key}", value))
    return docs


def _b64_text(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


BUCKET_POLICY_TYPE: Final = "aws:s3/bucketPolicy:BucketPolicy"


def _principal_strings(principal: Any) -> list[Any]:
    if isinstance(principal, Mapping):
        return [v for value in principal.values() for v in (value if isinstance(value, list) else [value])]
    return principal if isinstance(principal, list) else [principal]


def _names_user(principal: str, arn: Any, name: Any) -> bool:
    """An IAM user ARN names the user whatever its path: `arn:aws:iam::<account>:user[/<path>]/<name>`."""
    if isinstance(arn, str) and principal == arn:
        return True
    return isinstance(name, str) and re.search(rf":user/(?:[^*?]*/)?{re.escape(name)}$", principal) is not None


def _grantees(policy: Resource, st: Statement, users: Mapping[str, tuple[Resource, str]]) -> list[tuple[Resource, str]]:
    """Site users a bucket-policy statement names as principal: by ARN, by `user/<name>`, or (when the
    principal is computed from the user's ARN, unknown in preview) by the policy's dependency on the user."""
    principals = _principal_strings(st.principal)
    depends = policy.property_dependencies.get("policy", ())
    out = []
    for urn, (user, site) in users.items():
        arn, name = user.get("arn"), user.get("name")
        named = any(isinstance(p, str) and _names_user(p, arn, name) for p in principals)
        computed = urn in depends and any(p is UNKNOWN or not isinstance(p, str) for p in principals)
        if named or computed or (urn in depends and not principals):
            out.append((user, site))
    return out


def bucket_policy_documents(resources: Sequence[Resource]) -> list[Document]:
    """Grants to site users written into bucket policies rather than the users' own policies."""
    users = _site_users(resources)
    docs: list[Document] = []
    for r in resources:
        if r.type != BUCKET_POLICY_TYPE:
            continue
        try:
            body = load_document(r.get("policy"))
        except PolicyDocumentError:
            continue  # the storage policy reports unreadable bucket policies
        if not isinstance(body, Mapping):
            continue
        for st in statements(body):
            for user, site in _grantees(r, st, users):
                raw = {
                    "Sid": st.sid,
                    "Effect": st.effect,
                    "Action": list(st.actions),
                    "NotAction": list(st.not_actions),
                    "Resource": list(st.resources),
                    "NotResource": list(st.not_resources),
                }
                docs.append(Document(site, r, f"{r.label} grants {user.label}", {"Statement": [raw]}))
    return docs


def check_site_identities(resources: Sequence[Resource], cfg: IdentityConfig) -> list[Violation]:
    aws_docs, out = aws_site_documents(resources)
    aws_docs += bucket_policy_documents(resources)
    chart_docs, unseen, held = minio_chart_site_documents(resources)
    docs = aws_docs + chart_docs + minio_policy_documents(resources, held)
    out += unseen
    if not docs and not out:
        raise NotApplicable("no site identities in this stack")
    registry = registry_buckets(resources, cfg)
    for doc in docs:
        for p in document_problems(doc, registry, cfg):
            out.append(Violation(f"site {doc.site}'s identity: {doc.where}: {p}", doc.source.urn))
    return out
