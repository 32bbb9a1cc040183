"""Data sovereignty: a site's labelled data (its datasets bucket) stays on the site.

Checked on site stacks, against the site facts:
  * the datasets bucket's provisioning script sets up no replication or lifecycle transition (MinIO tiers
    and replication targets are remote servers by construction), a declared replication other than `none`
    counts as one, and an ObjectBucketClaim asks for no MCG replication policy;
  * AWS replication or lifecycle transitions of the datasets bucket, should a site stack ever hold one;
  * no container that can read the datasets bucket can also reach a host outside the site: taint analysis
    over everything that configures the container: literal env, env taken from the stack's ConfigMaps and
    Secrets (`valueFrom`, `envFrom`), files of the ConfigMaps and Secrets it mounts, command and args.
    "Reads the datasets bucket" means the bucket's name (or EDGEFM_DATASETS_BUCKET) appears there;
    "reaches off-site" means a URL to a host that is neither the site's storage endpoint nor cluster-local,
    or the hub registry's env variables;
  * the resource that provisions the datasets bucket is protected and retained on delete.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from edgefm_guardrails.config import SovereigntyConfig
from edgefm_guardrails.facts import FactsError, SiteFacts, read_facts
from edgefm_guardrails.kube import (
    Container,
    annotations_of,
    env_values,
    helm_chart_name,
    helm_values,
    is_kind,
    namespace,
    workload_containers,
)
from edgefm_guardrails.model import (
    UNKNOWN,
    NotApplicable,
    Resource,
    Violation,
    as_list,
    as_mapping,
    get,
    is_site_stack,
    stack_of,
)
from edgefm_guardrails.storage import (
    BUCKET_TYPES,
    MINIO_CHART,
    REPLICATION_ANNOTATION,
    bucket_name,
    bucket_purpose,
    is_onsite_bucket,
)

DATASETS: Final = "datasets"
DATASETS_ENV: Final = "EDGEFM_DATASETS_BUCKET"
# Env variables that point a container at the hub (the registry a site mirrors models from).
HUB_ENV_PREFIXES: Final = ("EDGEFM_REGISTRY_", "EDGEFM_HUB_")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
# MinIO client commands that move objects to another server (replication, tiering) for a bucket.
# (`mc` may be missing: the MinIO chart's customCommands are mc subcommands.)
_EXPORTING_COMMANDS: Final = (
    re.compile(r"(?:\bmc\s+|^\s*)replicate\s+(add|update|import)\b"),
    re.compile(r"(?:\bmc\s+|^\s*)(admin\s+)?bucket\s+remote\s+add\b"),
    re.compile(r"(?:\bmc\s+|^\s*)ilm\s+tier\s+add\b"),
    re.compile(r"--transition-(days|date|tier)\b"),
    re.compile(r"\bilm\s+rule\s+add\b.*--transition"),
)
AWS_REPLICATION_TYPES: Final = ("aws:s3/bucketReplicationConfig:BucketReplicationConfig",)
AWS_LIFECYCLE_TYPES: Final = (
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
)


def _texts(c: Container) -> Iterator[str]:
    for key in ("command", "args"):
        for item in as_list(c.spec.get(key)):
            if isinstance(item, str):
                yield item


def _mentions_bucket(text: str, bucket: str) -> bool:
    # Bucket names are DNS-like; match whole names so `x-datasets-archive` is not `x-datasets`.
    return re.search(rf"(?<![A-Za-z0-9.-]){re.escape(bucket)}(?![A-Za-z0-9.-])", text) is not None


def is_site_local(url: str, facts: SiteFacts, cfg: SovereigntyConfig) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return True  # a relative or malformed reference names no server
    if host == facts.storage_host or host in ("localhost", "127.0.0.1", "::1"):
        return True
    if "." not in host and ":" not in host:
        return True  # a bare Service name resolves inside the pod's namespace
    if facts.network is not None:
        try:
            if ipaddress.ip_address(host) in facts.network:
                return True  # an address on the site's own network
        except ValueError:
            pass
    return any(host.endswith(suffix.lower()) for suffix in cfg.cluster_local_suffixes)


COMMAND_LINE: Final = "its command line"


@dataclass(frozen=True)
class Setting:
    """One place a container is configured: where (for messages), the variable it sets (if any), the text."""

    where: str
    var: str | None
    text: str


def config_data(resources: Sequence[Resource]) -> dict[tuple[str, str, str], dict[str, str]]:
    """(kind, namespace, name) → plain data of the stack's ConfigMaps and Secrets (Secret `data` decoded)."""
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in resources:
        kind = "ConfigMap" if is_kind(r, "core", "ConfigMap") else "Secret" if is_kind(r, "core", "Secret") else None
        name = get(r.props, "metadata", "name")
        if kind is None or not isinstance(name, str):
            continue
        entries: dict[str, str] = {}
        for field_name in ("data", "stringData"):
            for key, value in as_mapping(get(r.props, field_name)).items():
                if isinstance(value, str):
                    entries[str(key)] = _b64(value) if kind == "Secret" and field_name == "data" else value
        out[(kind, namespace(r), name)] = entries
    return out


def _b64(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


def settings(
    r: Resource, c: Container, spec: Mapping[str, Any], data: Mapping[tuple[str, str, str], dict[str, str]]
) -> list[Setting]:
    """Everything that configures a container: literal env, env taken from the stack's ConfigMaps and
    Secrets (one key or all of them), files of ConfigMaps/Secrets it mounts, command and args."""
    ns = namespace(r)
    out = [Setting(f"env {var}", var, value) for var, value in env_values(c).items() if isinstance(value, str)]
    for e in as_list(c.spec.get("env")):
        var = get(e, "name")
        for kind, ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            name, key = get(e, "valueFrom", ref, "name"), get(e, "valueFrom", ref, "key")
            value = data.get((kind, ns, str(name)), {}).get(str(key))
            if isinstance(var, str) and value is not None:
                out.append(Setting(f"env {var} (from {kind} {name})", var, value))
    for src in as_list(c.spec.get("envFrom")):
        prefix = str(get(src, "prefix") or "")
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            name = get(src, ref, "name")
            for key, value in data.get((kind, ns, str(name)), {}).items():
                out.append(Setting(f"env {prefix}{key} (from {kind} {name})", f"{prefix}{key}", value))
    mounted = {get(m, "name") for m in as_list(c.spec.get("volumeMounts"))}
    for vol in as_list(spec.get("volumes")):
        if get(vol, "name") not in mounted:
            continue
        refs = [("ConfigMap", get(vol, "configMap", "name")), ("Secret", get(vol, "secret", "secretName"))]
        for source in as_list(get(vol, "projected", "sources")):
            refs += [("ConfigMap", get(source, "configMap", "name")), ("Secret", get(source, "secret", "name"))]
        for kind, name in refs:
            for key, value in data.get((kind, ns, str(name)), {}).items():
                out.append(Setting(f"file {key} of {kind} {name}", None, value))
    out += [Setting(COMMAND_LINE, None, text) for text in _texts(c)]
    return out


def _offsite_reach(c: Container, found: Sequence[Setting], facts: SiteFacts, cfg: SovereigntyConfig) -> list[str]:
    reasons: list[str] = []
    for s in found:
        if s.var is not None and s.var.startswith(HUB_ENV_PREFIXES):
            reasons.append(f"{s.where} (the hub registry)")
            continue
        for url in _URL.findall(s.text):
            # s3://<endpoint>/bucket wraps the real endpoint URL (Triton's form); judge the inner one.
            inner = url[len("s3://") :] if url.startswith("s3://") and "://" in url[len("s3://") :] else url
            if inner.startswith("s3://"):
                continue  # plain s3://bucket/key: the bucket check covers it
            if not is_site_local(inner, facts, cfg):
                if s.var is not None:
                    reasons.append(f"{s.where}={url}")
                else:
                    reasons.append(f"argument {url}" if s.where == COMMAND_LINE else f"{s.where}: {url}")
    seen = {s.var for s in found}
    reasons += [f"env {var} (the hub registry)" for var in _value_from_hub_env(c) if var not in seen]
    return reasons


def _value_from_hub_env(c: Container) -> list[str]:
    """Hub variables set from a Secret (no literal value) still give the container the hub."""
    out = []
    for e in as_list(c.spec.get("env")):
        name = get(e, "name")
        if isinstance(name, str) and name.startswith(HUB_ENV_PREFIXES) and get(e, "value") is None:
            out.append(name)
    return out


def _reads_datasets(found: Sequence[Setting], datasets: str) -> list[str]:
    reasons: list[str] = []
    for s in found:
        if (s.var == DATASETS_ENV or _mentions_bucket(s.text, datasets)) and s.where not in reasons:
            reasons.append(s.where)
    return reasons


def _datasets_bucket_problems(r: Resource, datasets: str) -> list[str]:
    problems: list[str] = []
    ann = annotations_of(r)
    replication = ann.get(REPLICATION_ANNOTATION)
    # What the commands do is what counts; a declared replication target is still a stated intent to copy.
    if replication not in (None, UNKNOWN, "none"):
        problems.append(f"replicates to {replication!r} ({REPLICATION_ANNOTATION})")
    for _tmpl, c in workload_containers(r):
        for text in _texts(c):
            for line in re.split(r"[\n;]|&&", text):
                if _mentions_bucket(line, datasets) and any(p.search(line) for p in _EXPORTING_COMMANDS):
                    problems.append(f"{c.label} runs {line.strip()!r}, which moves objects to another server")
    if is_kind(r, "objectbucket.io", "ObjectBucketClaim"):
        policy = get(r.props, "spec", "additionalConfig", "replicationPolicy")
        if policy not in (None, "", UNKNOWN):
            problems.append("asks for an MCG replication policy (spec.additionalConfig.replicationPolicy)")
    return problems


def _aws_problems(resources: Sequence[Resource], datasets: str) -> list[Violation]:
    out: list[Violation] = []
    for r in resources:
        if r.get("bucket") != datasets:
            continue
        if r.type in AWS_REPLICATION_TYPES:
            out.append(Violation(f"{r.label} replicates the datasets bucket {datasets}", r.urn))
        elif r.type in AWS_LIFECYCLE_TYPES:
            for rule in as_list(r.get("rules")):
                if as_list(get(rule, "transitions")) or as_list(get(rule, "noncurrentVersionTransitions")):
                    out.append(Violation(f"{r.label} transitions objects of the datasets bucket {datasets}", r.urn))
                    break
    return out


def check_sovereignty(resources: Sequence[Resource], cfg: SovereigntyConfig) -> list[Violation]:
    stack = stack_of(resources)
    if not is_site_stack(stack):
        raise NotApplicable("data sovereignty is checked on site stacks")
    try:
        facts = read_facts(resources)
    except FactsError as exc:
        raise NotApplicable(f"site facts unavailable ({exc}); see policy site-facts") from None
    datasets = facts.buckets[DATASETS]
    data = config_data(resources)
    out: list[Violation] = []
    for r in resources:
        if is_onsite_bucket(r) and (bucket_purpose(r) == DATASETS or bucket_name(r) == datasets):
            for p in _datasets_bucket_problems(r, datasets):
                out.append(
                    Violation(
                        f"{r.label} (datasets bucket {datasets} of site {facts.site}) {p}; labelled "
                        f"data must stay on the site",
                        r.urn,
                    )
                )
        for tmpl, c in workload_containers(r):
            found = settings(r, c, tmpl.spec, data)
            reads = _reads_datasets(found, datasets)
            if not reads:
                continue
            reach = _offsite_reach(c, found, facts, cfg)
            if reach:
                out.append(
                    Violation(
                        f"{r.label}: {c.label} can read the datasets bucket {datasets} ({', '.join(reads)}) "
                        f"and reach outside site {facts.site} ({', '.join(reach)}); labelled data must stay "
                        "on the site",
                        r.urn,
                    )
                )
    out += _aws_problems(resources, datasets)
    out += _storage_server_problems(resources, datasets, facts, cfg)
    return out


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, Mapping):
        for key, child in node.items():
            yield from _strings(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _strings(child, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def _storage_server_problems(
    resources: Sequence[Resource], datasets: str, facts: SiteFacts, cfg: SovereigntyConfig
) -> list[Violation]:
    """The site's object storage server holds the datasets: its chart values name no off-site destination
    (bucket notification webhooks, site replication, remote tiers) and run no exporting command."""
    out: list[Violation] = []
    for r in resources:
        if helm_chart_name(r) != MINIO_CHART:
            continue
        for where, values in helm_values(r):
            for path, text in _strings(values, ""):
                offsite = [url for url in _URL.findall(text) if not is_site_local(url, facts, cfg)]
                exports = _mentions_bucket(text, datasets) and any(p.search(text) for p in _EXPORTING_COMMANDS)
                if offsite or exports:
                    what = f"reaches {', '.join(offsite)}" if offsite else "runs a command that exports it"
                    out.append(
                        Violation(
                            f"{r.label}: {where} {path} {what}; the storage server holds the datasets bucket "
                            f"{datasets} of site {facts.site}, whose labelled data must stay on the site",
                            r.urn,
                        )
                    )
    return out


def check_datasets_protected(resources: Sequence[Resource]) -> list[Violation]:
    """The resource that provisions a site's datasets bucket carries `protect` (the engine refuses to delete or
    replace it) and `retainOnDelete` (removing it from the program leaves the bucket and its data in place).

    Judged from the resource options: the analyzer receives `protect`; `retainOnDelete` is judged where the
    caller supplies it (the fleet reads it from the engine's step events), and skipped where it is None.
    """
    stack = stack_of(resources)
    if not is_site_stack(stack):
        raise NotApplicable("datasets buckets are provisioned by site stacks")
    try:
        facts = read_facts(resources)
    except FactsError as exc:
        raise NotApplicable(f"site facts unavailable ({exc}); see policy site-facts") from None
    datasets = facts.buckets[DATASETS]
    found = [
        r
        for r in resources
        if (is_onsite_bucket(r) and (bucket_purpose(r) == DATASETS or bucket_name(r) == datasets))
        or (r.type in BUCKET_TYPES and r.get("bucket") == datasets)
    ]
    if not found:
        return [
            Violation(
                f"site {facts.site}: no resource provisions the datasets bucket {datasets} (a Job or "
                "ObjectBucketClaim labelled edgefm.io/bucket=datasets), so its protection cannot be shown",
                facts.urn,
            )
        ]
    out: list[Violation] = []
    for r in found:
        missing = [
            option
            for option, value in (("protect", r.protect), ("retainOnDelete", r.retain_on_delete))
            if value is False
        ]
        if missing:
            out.append(
                Violation(
                    f"{r.label} provisions the datasets bucket {datasets} of site {facts.site} without "
                    f"{' and '.join(missing)}; labelled data must survive a destroy or a replacement",
                    r.urn,
                )
            )
    return out
