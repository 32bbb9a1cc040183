"""Constrained value types shared by the config, placement and profile models."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

import pycountry
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StringConstraints


def to_camel(name: str) -> str:
    """snake_case → camelCase, leaving digits alone (pydantic's own turns `k3s` into `k3S`)."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


class Model(BaseModel):
    """Base for every config model: camelCase keys in YAML, unknown keys rejected, immutable, and strict: a
    value has the type the key takes (a count is an integer, never `yes` or "3"); nothing is coerced."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=True)


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# Names end up inside Kubernetes object names and S3 bucket names, so they must be DNS labels with room
# left for suffixes such as `-checkpoints`.
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=30)]

LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
LABEL_VALUE = Annotated[str, StringConstraints(pattern=LABEL_VALUE_PATTERN, max_length=63)]

FLOATING_TAGS = frozenset({"latest", "stable", "main", "master", "edge", "nightly", "dev"})


def _pinned_version(value: str) -> str:
    if value.lower() in FLOATING_TAGS:
        raise ValueError(f"version {value!r} floats; pin an exact version")
    if any(ch in value for ch in "*^~<>=| ") or value.endswith((".x", ".X")):
        raise ValueError(f"version {value!r} is a range; pin an exact version")
    if not re.fullmatch(r"v?\d+(\.\d+){1,3}([-+.][0-9A-Za-z.+-]+)?", value):
        raise ValueError(f"version {value!r} is not an exact version such as 1.2.3 or v25.3.0")
    return value


PinnedVersion = Annotated[str, AfterValidator(_pinned_version)]

_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+)"
    r"(:(?P<tag>[\w][\w.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _pinned_image(value: str) -> str:
    m = _IMAGE.match(value)
    if not m:
        raise ValueError(f"image {value!r} is not a fully qualified image reference (registry/repository:tag)")
    tag, digest = m.group("tag"), m.group("digest")
    if digest is None and (tag is None or tag.lower() in FLOATING_TAGS):
        raise ValueError(f"image {value!r} floats; pin a tag other than {tag or 'latest'!r} or a digest")
    return value


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]


def _jurisdiction(value: str) -> str:
    # ISO 3166-1 alpha-2 country codes, or ISO 3166-2 subdivisions (e.g. US-CA) where law is set below
    # the country level.
    if "-" in value:
        subdivision = pycountry.subdivisions.get(code=value)  # type: ignore[no-untyped-call]
        if subdivision is None:
            raise ValueError(f"unknown jurisdiction {value!r}: not an ISO 3166-2 subdivision code")
    elif len(value) != 2 or not value.isupper() or pycountry.countries.get(alpha_2=value) is None:
        raise ValueError(f"unknown jurisdiction {value!r}: use an ISO 3166-1 alpha-2 code such as DE or US")
    return value


Jurisdiction = Annotated[str, AfterValidator(_jurisdiction)]

REGION = r"^[a-z]{2,}(-[a-z0-9]+)+$"
Region = Annotated[str, StringConstraints(pattern=REGION, max_length=40)]

_CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
CRON = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$"
Cron = Annotated[str, StringConstraints(pattern=CRON)]

# Kubernetes resource quantities, e.g. 500m, 4, 16Gi.
CPU_QUANTITY = r"^\d+(\.\d+)?m?$"
CpuQuantity = Annotated[str, StringConstraints(pattern=CPU_QUANTITY)]
MEMORY_QUANTITY = r"^\d+(Ki|Mi|Gi|Ti)$"
MemoryQuantity = Annotated[str, StringConstraints(pattern=MEMORY_QUANTITY)]
BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
HOST_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"

CHART_REPO = r"^(https|oci)://\S+$"
CHART_NAME = r"^[a-z0-9][-a-z0-9]*$"
OLM_CSV = r"^[a-z0-9.-]+\.v?\d+\.\d+\.\d+[-a-z0-9.]*$"
K3S_VERSION = r"^v\d+\.\d+\.\d+\+k3s\d+$"
HTTP_URL = r"^https?://\S+$"
MIG_PROFILE = r"^(all-)?\d+g\.\d+gb$"
DURATION = r"^\d+[sm]$"

# What each pattern asks for, in words: a problem says this rather than quoting the regular expression.
PATTERN_WORDS: dict[str, str] = {
    DNS_LABEL: "must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit",
    LABEL_VALUE_PATTERN: "must be a label value: letters, digits, '-', '_' and '.', starting and ending with a "
    "letter or digit",
    REGION: "must be a region name such as eu-central-1: lowercase letters, then '-'-separated parts",
    CRON: "must be a cron schedule of five fields (minute hour day month weekday), e.g. '0 2 * * *'",
    CPU_QUANTITY: "must be a CPU quantity such as 4, 0.5 or 500m",
    MEMORY_QUANTITY: "must be a memory quantity such as 512Mi or 16Gi",
    BUCKET_NAME: "must be a bucket name: 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with "
    "a letter or digit",
    HOST_NAME: "must be a host name: lowercase letters, digits, '.' and '-', starting and ending with a letter or "
    "digit",
    CHART_REPO: "must be an https:// or oci:// chart repository URL",
    CHART_NAME: "must be a chart name: lowercase letters, digits and '-', starting with a letter or digit",
    OLM_CSV: "must be an OLM ClusterServiceVersion such as gpu-operator-certified.v25.3.0",
    K3S_VERSION: "must be a k3s release such as v1.31.4+k3s1",
    HTTP_URL: "must be an http:// or https:// URL",
    MIG_PROFILE: "must be a MIG profile such as 1g.10gb or all-1g.10gb",
    DURATION: "must be a duration in seconds or minutes, such as 30s or 1m",
}


def _ip_address(value: Any) -> Any:
    # Strict models take addresses as text only (YAML has no address type); parse it here, with words.
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be an IP address written as text, such as 10.20.0.11, not {value!r}")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (e.g. 10.20.0.11 or fd00::11)") from None


def _ip_network(value: Any) -> Any:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a CIDR block written as text, such as 10.20.0.0/24, not {value!r}")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block (e.g. 10.20.0.0/24): {exc}") from None


IpAddress = Annotated[ipaddress.IPv4Address | ipaddress.IPv6Address, BeforeValidator(_ip_address)]
IpNetwork = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_ip_network)]
